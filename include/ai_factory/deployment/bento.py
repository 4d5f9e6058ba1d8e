"""``bentoml build`` of ``bentos/`` for one registry version (one Bento per version).

The version is baked in as a Bento argument (``--arg model_tag=<name:version>``, read by
``bentos/service.py`` through ``bentoml.use_arguments``) and as labels, so the Bento serves
that version wherever it runs and ``bentoml list`` shows which version each Bento holds.
The model files are packed in through the service's ``BentoModel`` attribute.

For an image (the ``kubernetes`` target): ``bentoml containerize <bento tag> --image-tag
<registry>/ai-factory-model:<model version>`` needs a Docker/BuildKit engine (not available on
the embedded machine), then push the image where the cluster pulls from. The image must also
get the ``ai-factory`` package: :func:`build_bento` with ``wheel=True`` builds the project's
wheel and lists it in the Bento's ``python.wheels``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

BENTO_DIR = "bentos"


class BuildError(RuntimeError):
    """``bentoml build`` failed; the message carries its output."""


def _env(model_store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BENTOML_HOME"] = str(model_store)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.pop("AI_FACTORY_MODEL_TAG", None)
    return env


def build_project_wheel(home: Path, out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of the project; returns the wheel path."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out_dir), str(home)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BuildError(f"building the ai-factory wheel failed:\n{proc.stderr[-3000:]}")
    wheels = sorted(out_dir.glob("ai_factory-*.whl"))
    if not wheels:
        raise BuildError(f"pip wheel produced no ai_factory wheel in {out_dir}")
    return wheels[-1]


def build_bento(model_tag: str, *, home: Path | None = None, model_store: Path | None = None,
                wheel: bool = False, timeout: float = 600) -> str:
    """Build the service Bento for ``model_tag`` (``name:version``); returns the Bento tag."""
    from ai_factory.settings import get_settings

    settings = get_settings()
    home = home or settings.home
    model_store = model_store or settings.model_store
    ctx = home / BENTO_DIR
    name, _, version = model_tag.partition(":")
    config = yaml.safe_load((ctx / "bentofile.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="aif-bento-") as tmp:
        if wheel:
            whl = build_project_wheel(home, Path(tmp))
            config.setdefault("python", {})["wheels"] = [os.path.relpath(whl, ctx)]
        bentofile = Path(tmp) / "bentofile.yaml"
        bentofile.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [sys.executable, "-m", "bentoml", "build", str(ctx), "-f", str(bentofile),
               "--arg", f"model_tag={model_tag}", "--label", f"model_name={name}",
               "--label", f"model_version={version}", "--output", "tag"]
        log.info("building the Bento for %s: %s", model_tag, " ".join(cmd[2:]))
        proc = subprocess.run(cmd, cwd=str(ctx), env=_env(model_store), capture_output=True, text=True,
                              timeout=timeout)
    if proc.returncode != 0:
        raise BuildError(f"bentoml build for {model_tag} failed (exit {proc.returncode}):\n"
                         f"{(proc.stderr or proc.stdout)[-4000:]}")
    tags = [line.removeprefix("__tag__:").strip() for line in proc.stdout.splitlines()
            if line.startswith("__tag__:")]
    if not tags:
        raise BuildError(f"bentoml build for {model_tag} printed no tag:\n{proc.stdout[-2000:]}")
    log.info("built Bento %s for %s", tags[-1], model_tag)
    return tags[-1]

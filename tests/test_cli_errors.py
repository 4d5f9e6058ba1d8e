"""A user's mistake gets one line naming the file, the key and the fix, and exit code 2, through the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """\
name: bank
target: {name: y, task: binary, classes: ["No", "Yes"]}
features:
  - {name: age, dtype: int, min: 18, max: 100}
  - {name: housing, dtype: category, categories: ["no", "yes"]}
"""

MISTAKES = {
    "yaml_boolean_classes": (
        GOOD.replace('classes: ["No", "Yes"]', "classes: [No, Yes]"),
        "key 'target.classes': [false, true] holds YAML booleans",
        'quote the labels as they appear in the data, e.g. classes: ["No", "Yes"]',
    ),
    "yaml_boolean_categories": (
        GOOD.replace('categories: ["no", "yes"]', "categories: [no, yes]"),
        "key 'features[1] (housing).categories': [false, true] holds YAML booleans",
        'e.g. categories: ["No", "Yes"]',
    ),
    "missing_target": (
        GOOD.replace('target: {name: y, task: binary, classes: ["No", "Yes"]}\n', ""),
        "key 'target': required key is missing", "",
    ),
    "unknown_key": (GOOD + "colour: blue\n", "key 'colour': unknown key", "check its spelling"),
    "bad_dtype": (
        GOOD.replace("dtype: int", "dtype: integer"),
        "key 'features[0] (age).dtype': Input should be 'int', 'float', 'category' or 'bool'", "",
    ),
    "bad_feature_not_blamed_on_the_list": (
        GOOD.replace("  - {name: housing, dtype: category, categories: [\"no\", \"yes\"]}\n", "")
        .replace("dtype: int,", "dtype: decimal,"),
        "key 'features[0] (age).dtype'", "",
    ),
    "invalid_yaml": (GOOD.replace("features:", "features: [", 1), "not valid YAML", ""),
}


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ai-factory", path=str(Path(sys.executable).parent)) or "ai-factory"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_spec_mistake_is_one_line_and_exit_2(tmp_path: Path, mistake: str):
    text, problem, fix = MISTAKES[mistake]
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    (tmp_path / "day.csv").write_text("age,housing,y\n30,no,Yes\n")
    proc = _cli("data", "land", str(tmp_path / "day.csv"), "--spec", str(spec), "--ds", "2026-01-01",
                "--root", str(tmp_path / "lake"))
    assert proc.returncode == 2, proc.stderr
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"ai-factory data: error: {spec}: ")
    assert problem in lines[0] and fix in lines[0]
    assert "Tuple should have at least 1 item" not in lines[0]
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("command", [["quality", "validate", "--ds", "2026-01-01"], ["drift", "check", "--ds", "2026-01-01"]])
def test_quality_and_drift_no_longer_print_a_traceback_for_a_bad_spec(tmp_path: Path, command: list[str]):
    spec = tmp_path / "spec.yaml"
    spec.write_text(MISTAKES["yaml_boolean_classes"][0])
    env = {"AI_FACTORY_SPEC": str(spec), "AI_FACTORY_DATA_ROOT": str(tmp_path / "lake")}
    proc = _cli(*command, env=env)
    assert proc.returncode == 2, proc.stderr
    (line,) = _error_lines(proc.stderr)
    assert line.startswith(f"ai-factory {command[0]}: error: {spec}: invalid dataset spec: key 'target.classes'")

    verbose = _cli("-v", *command, env=env)
    assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr


def test_file_mistakes_of_infer_and_land_are_one_line(tmp_path: Path):
    (tmp_path / "day.csv").write_text("age,housing,y,leak\n30,no,Yes,1\n")
    proc = _cli("spec", "infer", str(tmp_path / "day.csv"), "--target", "label", "-o", str(tmp_path / "s.yaml"))
    assert proc.returncode == 2
    (line,) = _error_lines(proc.stderr)
    assert line.startswith(f"ai-factory spec: error: {tmp_path / 'day.csv'}: --target 'label' is not a column")

    (tmp_path / "spec.yaml").write_text(GOOD)
    proc = _cli("data", "land", str(tmp_path / "day.csv"), "--spec", str(tmp_path / "spec.yaml"), "--ds",
                "2026-01-01", "--root", str(tmp_path / "lake"))
    assert proc.returncode == 2
    (line,) = _error_lines(proc.stderr)
    assert "column(s) leak are not in the spec: list them under `ignore:`" in line


def test_library_info_chatter_is_off_unless_verbose(tmp_path: Path):
    """About 210 of 243 lines of one `quality validate` were Great Expectations INFO lines."""
    from ai_factory.quality.project import init_project
    from ai_factory.settings import get_settings, reset_settings
    from ai_factory.spec import load_spec

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "gx").mkdir()
    shutil.copy(repo / "great_expectations" / "great_expectations.yml", tmp_path / "gx")
    (tmp_path / "spec.yaml").write_text(GOOD)
    (tmp_path / "day.csv").write_text("age,housing,y\n30,no,Yes\n41,yes,No\n")
    env = {"AI_FACTORY_GX_ROOT": str(tmp_path / "gx"), "AI_FACTORY_DATA_ROOT": str(tmp_path / "lake"),
           "AI_FACTORY_SPEC": str(tmp_path / "spec.yaml")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        reset_settings()
        init_project(load_spec(tmp_path / "spec.yaml"), None, get_settings())
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()
    assert _cli("data", "land", str(tmp_path / "day.csv"), "--ds", "2026-01-01", env=env).returncode == 0

    quiet = _cli("quality", "validate", "--ds", "2026-01-01", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert " INFO great_expectations" not in quiet.stderr
    assert "ds=2026-01-01: passed" in quiet.stderr  # the command's own INFO lines stay
    verbose = _cli("-v", "quality", "validate", "--ds", "2026-01-01", env=env)
    assert " INFO great_expectations" in verbose.stderr

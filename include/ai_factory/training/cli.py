"""``ai-factory train …`` and ``ai-factory models …``: the training container's command and the registry CLI.

Every ``train`` sub-command takes its inputs and outputs as URIs (a local path, ``file://``
or any fsspec URL), prints its result JSON on stdout, writes it to ``--output`` when given
and to ``/airflow/xcom/return.json`` when that directory exists (the KubernetesPodOperator
XCom sidecar). Known input errors exit with status 2 and a one-line message naming the
file, key or column at fault.

Only ``argparse`` is imported here; torch, optuna and bentoml load inside the commands.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import Any

from ai_factory.cliutil import emit as _emit
from ai_factory.cliutil import iso_date as _date
from ai_factory.cliutil import positive_int as _positive

log = logging.getLogger("ai_factory.training")

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Arguments that parse but do not make sense together."""


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object, e.g. '{\"learning_rate\": 0.001}'")
    return parsed


def _known_errors() -> tuple[type[BaseException], ...]:
    from ai_factory.registry import RegistryError
    from ai_factory.spec import SpecError
    from ai_factory.training.artifacts import ModelFormatError
    from ai_factory.training.config import ConfigError
    from ai_factory.training.preprocess import InputError
    from ai_factory.training.tuning import TuningError
    from ai_factory.training.window import WindowError

    return (ConfigError, InputError, ModelFormatError, RegistryError, SpecError, TuningError, WindowError,
            UsageError, FileNotFoundError)


def _run(fn: Callable[[argparse.Namespace], dict[str, Any]], result_to_output: bool = True,
         ) -> Callable[[argparse.Namespace], int]:
    """Run a command, write its result (stdout, --output, XCom sidecar); bad input → exit 2."""

    def command(args: argparse.Namespace) -> int:
        from ai_factory.training.io import write_result

        known = _known_errors()
        try:
            result = fn(args)
        except known as exc:
            log.error("%s", exc)
            return EXIT_BAD_INPUT
        write_result(result, getattr(args, "output", None) if result_to_output else None)
        _emit(result)
        return 0

    return command


# -- train --------------------------------------------------------------------------------------
def _window(args: argparse.Namespace) -> dict[str, Any]:
    from ai_factory.training.steps import make_window

    return make_window(args.output, days=args.days, end=args.end, validation_days=args.validation_days,
                       data_root=args.data_root, spec_path=args.spec, reuse=not args.rebuild)


def _tune(args: argparse.Namespace) -> dict[str, Any]:
    from ai_factory.training.steps import tune_worker

    return tune_worker(args.window, args.study, args.storage, n_trials=args.trials, workers=args.workers,
                       worker=args.worker, search_space=args.search_space, data_root=args.data_root,
                       spec_path=args.spec, timeout_seconds=args.timeout, threads=args.threads)


def _fit(args: argparse.Namespace) -> dict[str, Any]:
    from ai_factory.training.steps import fit

    return fit(args.window, args.model, study=args.study, storage=args.storage, params_override=args.params,
               checkpoint_uri=args.checkpoint, search_space=args.search_space, data_root=args.data_root,
               spec_path=args.spec, threads=args.threads)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from ai_factory.training.steps import evaluate

    return evaluate(args.window, args.model, data_root=args.data_root)


def _register_version(args: argparse.Namespace) -> dict[str, Any]:
    from ai_factory.training.steps import register

    return register(args.window, args.model, args.evaluation, run_key=args.run_key, data_root=args.data_root,
                    reference_rows=args.reference_rows)


def _common(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("--data-root", help="data root URI (default: AI_FACTORY_DATA_ROOT)")
    p.add_argument("--spec", help="dataset spec file (default: AI_FACTORY_SPEC)")
    if output:
        p.add_argument("--output", help="also write the result JSON to this URI")


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="training window, Optuna tuning, final fit, evaluation, registration")
    tsub = p.add_subparsers(dest="train_cmd", required=True)

    w = tsub.add_parser("window", help="pick the last K validated partitions and split them by time")
    w.add_argument("--output", required=True, help="where to write window.json (URI)")
    w.add_argument("--days", type=_positive, default=7, help="number of validated partitions (K)")
    w.add_argument("--end", type=_date, help="newest partition to consider (default: the newest there is)")
    w.add_argument("--validation-days", type=_positive, default=1)
    w.add_argument("--rebuild", action="store_true", help="rebuild even if --output already holds a window")
    w.add_argument("--data-root", help="data root URI (default: AI_FACTORY_DATA_ROOT)")
    w.add_argument("--spec", help="dataset spec file (default: AI_FACTORY_SPEC)")
    # --output is the window manifest itself, not a copy of the result.
    w.set_defaults(func=_run(_window, result_to_output=False))

    t = tsub.add_parser("tune", help="run one Optuna worker on the run's shared study")
    t.add_argument("--window", required=True, help="window.json URI")
    t.add_argument("--study", required=True, help="study name (one per training run)")
    t.add_argument("--storage", help="Optuna RDB URL (default: AI_FACTORY_OPTUNA_STORAGE)")
    t.add_argument("--trials", type=_positive, required=True, help="finished trials wanted for the whole study")
    t.add_argument("--workers", type=_positive, default=1, help="number of workers sharing the study")
    t.add_argument("--worker", type=int, default=0, help="this worker's index (0-based)")
    t.add_argument("--search-space", help="search-space YAML (default: AI_FACTORY_SEARCH_SPACE or the packaged one)")
    t.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    t.add_argument("--threads", type=_positive, help="torch CPU threads (default: AI_FACTORY_TORCH_THREADS or all cores)")
    _common(t)
    t.set_defaults(func=_run(_tune))

    f = tsub.add_parser("fit", help="train the final model (best trial's parameters), resuming from a checkpoint")
    f.add_argument("--window", required=True, help="window.json URI")
    f.add_argument("--model", required=True, help="output model directory URI")
    f.add_argument("--study", help="take parameters from this study's best trial")
    f.add_argument("--storage", help="Optuna RDB URL (default: AI_FACTORY_OPTUNA_STORAGE)")
    f.add_argument("--params", type=_json_object, help="JSON object of parameter overrides")
    f.add_argument("--checkpoint", help="checkpoint directory URI (resume from it if present)")
    f.add_argument("--search-space", help="search-space YAML (for its fixed parameters)")
    f.add_argument("--threads", type=_positive, help="torch CPU threads")
    _common(f)
    f.set_defaults(func=_run(_fit))

    e = tsub.add_parser("evaluate", help="holdout metrics of a model next to a trivial baseline")
    e.add_argument("--window", required=True, help="window.json URI")
    e.add_argument("--model", required=True, help="model directory URI")
    _common(e)
    e.set_defaults(func=_run(_evaluate))

    r = tsub.add_parser("register", help="store an evaluated model as a new registry version")
    r.add_argument("--window", required=True, help="window.json URI")
    r.add_argument("--model", required=True, help="model directory URI")
    r.add_argument("--evaluation", required=True, help="evaluation result JSON URI")
    r.add_argument("--run-key", required=True, help="the training run (registering it twice is a no-op)")
    r.add_argument("--reference-rows", type=_positive, help="rows in the drift reference sample (default 5000)")
    _common(r)
    r.set_defaults(func=_run(_register_version))


# -- models ------------------------------------------------------------------------------------------
def _registry(args: argparse.Namespace) -> Any:
    from ai_factory.registry import ModelRegistry

    return ModelRegistry.from_settings(model_name=args.name)


def _models_list(args: argparse.Namespace) -> dict[str, Any]:
    reg = _registry(args)
    champion = reg.champion()
    return {"model": reg.name, "champion": champion.version if champion else None,
            "versions": [v.summary() for v in reg.list_versions()]}


def _models_show(args: argparse.Namespace) -> dict[str, Any]:
    reg = _registry(args)
    v = reg.get(args.version)
    return {**v.summary(), "path": str(v.path), "labels": v.labels, "metadata": v.metadata,
            "decisions": reg.decisions(v.version)}


def _models_compare(args: argparse.Namespace) -> dict[str, Any]:
    return _registry(args).compare(args.a, args.b)


def _models_champion(args: argparse.Namespace) -> dict[str, Any]:
    reg = _registry(args)
    if args.set:
        if not args.reason:
            raise UsageError("models champion --set needs --reason (it is recorded in the alias history)")
        return reg.set_champion(args.set, reason=args.reason, actor=args.actor)
    current = reg.champion()
    return {"champion": current.summary() if current else None, "history": reg.champion_history()}


def register_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the model registry: versions, comparison, champion")
    p.add_argument("--name", help="model name (default: the spec's name)")
    msub = p.add_subparsers(dest="models_cmd", required=True)
    msub.add_parser("list", help="registered versions, newest first").set_defaults(func=_run(_models_list))
    s = msub.add_parser("show", help="one version's metadata and gate decisions")
    s.add_argument("version", help="version id, name:version, latest or champion")
    s.set_defaults(func=_run(_models_show))
    c = msub.add_parser("compare", help="metrics of two versions side by side")
    c.add_argument("a")
    c.add_argument("b")
    c.set_defaults(func=_run(_models_compare))
    ch = msub.add_parser("champion", help="show the champion, or move it with --set")
    ch.add_argument("--set", metavar="VERSION", help="make this version the champion")
    ch.add_argument("--reason", help="why (recorded in the alias history)")
    ch.add_argument("--actor", default="cli")
    ch.set_defaults(func=_run(_models_champion))


def register(sub: argparse._SubParsersAction) -> None:
    """Entry for :data:`ai_factory.cli_extensions.REGISTRARS`."""
    register_train(sub)
    register_models(sub)

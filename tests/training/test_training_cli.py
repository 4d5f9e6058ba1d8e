"""``ai-factory train …`` / ``ai-factory models …``: results on stdout, --output and the XCom sidecar file."""

from __future__ import annotations

import json

import pytest

from ai_factory.cli import main

from training_helpers import SMALL_PARAMS


def _run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_window_fit_evaluate_register_and_models_commands(demo_lake, tmp_path, monkeypatch, capsys, caplog):
    xcom = tmp_path / "airflow-xcom"
    xcom.mkdir()
    monkeypatch.setenv("AI_FACTORY_XCOM_DIR", str(xcom))
    run = tmp_path / "run"

    code, window, _ = _run(capsys, "train", "window", "--output", str(run / "window.json"), "--days", "5")
    assert code == 0 and window["holdout"] == ["2026-03-05"] and len(window["train"]) == 3
    assert json.loads((run / "window.json").read_text())["validation"] == ["2026-03-04"]

    code, fitted, _ = _run(capsys, "train", "fit", "--window", str(run / "window.json"), "--model",
                           f"file://{run / 'model'}", "--params", json.dumps(SMALL_PARAMS),
                           "--output", str(run / "fit.json"))
    assert code == 0 and fitted["epochs_run"] >= 1 and fitted["params"]["hidden_size"] == 32
    assert json.loads((run / "fit.json").read_text()) == fitted
    assert json.loads((xcom / "return.json").read_text()) == fitted  # what the KPO sidecar would read

    code, scores, _ = _run(capsys, "train", "evaluate", "--window", str(run / "window.json"), "--model",
                           str(run / "model"), "--output", str(run / "evaluation.json"))
    assert code == 0 and scores["beats_baseline"] is True
    assert set(scores["holdout"]) >= {"roc_auc", "log_loss", "accuracy", "f1", "ece"}

    code, reg, _ = _run(capsys, "train", "register", "--window", str(run / "window.json"), "--model",
                        str(run / "model"), "--evaluation", str(run / "evaluation.json"), "--run-key", "cli-run")
    assert code == 0 and reg["tag"] == f"credit_default:{reg['version']}"

    code, listing, _ = _run(capsys, "models", "list")
    assert code == 0 and [v["version"] for v in listing["versions"]] == [reg["version"]]
    code, _, _ = _run(capsys, "models", "champion", "--set", reg["version"])
    assert code == 2 and "--reason" in caplog.text
    code, moved, _ = _run(capsys, "models", "champion", "--set", reg["version"], "--reason", "first")
    assert code == 0 and moved["version"] == reg["version"]
    code, shown, _ = _run(capsys, "models", "show", "champion")
    assert code == 0 and shown["version"] == reg["version"] and shown["metadata"]["run_key"] == "cli-run"


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "window", "--days", "9"], "need at least 3 validated partitions"),
    (["train", "fit", "--model", "M", "--params", '{"hidden_sise": 3}'], "unknown training parameter(s): hidden_sise"),
    (["train", "evaluate", "--model", "/nonexistent/model"], "not a model directory (model.json is missing)"),
    (["models", "show", "doesnotexist"], "is not registered"),
])
def test_bad_input_exits_2_with_a_message_naming_the_problem(train_env, tmp_path, capsys, caplog, argv, message):
    window = tmp_path / "window.json"
    if argv[1] != "window":
        window.write_text(json.dumps({"spec_name": "credit_default", "spec_fingerprint": "x", "train": ["2026-03-01"],
                                      "validation": ["2026-03-02"], "holdout": ["2026-03-03"]}))
    extra = ["--output", str(window)] if argv[1] == "window" else (["--window", str(window)] if argv[0] == "train"
                                                                   else [])
    code, _, _ = _run(capsys, *argv, *extra)
    assert code == 2
    assert message in caplog.text

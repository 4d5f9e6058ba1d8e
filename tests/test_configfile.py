"""One YAML loader and one error style for every config file; typed hand-offs that reject a misspelt key."""

from __future__ import annotations

import pytest

from ai_factory.deployment.flow import DeploymentPlan
from ai_factory.gating import GateError, load_gate_config
from ai_factory.serving.config import ServingConfigError, load_serving_config
from ai_factory.training.plan import TrainingPlan


@pytest.mark.parametrize(("loader", "error"), [(load_gate_config, GateError),
                                               (load_serving_config, ServingConfigError)])
def test_broken_yaml_is_one_line_naming_the_file(tmp_path, loader, error):
    bad = tmp_path / "conf.yaml"
    bad.write_text("holdout_days: [1,\n  nope: {\n")
    with pytest.raises(error) as err:
        loader(bad)
    text = str(err.value)
    assert text.startswith(f"{bad}: not valid YAML") and "\n" not in text


def test_an_unknown_gate_key_is_named_as_unknown(tmp_path):
    bad = tmp_path / "gate.yaml"
    bad.write_text("holdout_dayz: 1\n")
    with pytest.raises(GateError, match=r"invalid gate config: .*key 'holdout_dayz': unknown key"):
        load_gate_config(bad)


def test_a_missing_gate_file_names_the_file(tmp_path):
    with pytest.raises(GateError, match=rf"^{tmp_path}/none.yaml: cannot read gate config: No such file"):
        load_gate_config(tmp_path / "none.yaml")


PLAN = {"action": "deploy", "version": "v2", "tag": "m:v2", "previous": None, "target": "local", "reason": "r"}


def test_the_deployment_plan_travels_as_json_and_rejects_a_misspelt_key():
    plan = DeploymentPlan.model_validate(PLAN)
    assert DeploymentPlan.model_validate(plan.model_dump(mode="json")) == plan
    with pytest.raises(ValueError, match="versoin"):
        DeploymentPlan.model_validate({**PLAN, "versoin": "v3"})
    with pytest.raises(ValueError, match="target"):
        DeploymentPlan.model_validate({**PLAN, "target": "moon"})


def test_the_training_plan_travels_as_json():
    raw = {"run_key": "k", "study": "s", "compute": "local", "gpus": 0, "trials": 3, "workers": [0, 1],
           "n_workers": 2, "threads": 1, "data_root": "/d", "window": "/d/w.json", "model": "/d/m",
           "checkpoints": "/d/c", "evaluation": "/d/e.json",
           "partitions": {"train": ["2026-01-01"], "validation": ["2026-01-02"], "holdout": ["2026-01-03"]}}
    plan = TrainingPlan.model_validate(raw)
    assert plan.partitions.holdout[-1] == "2026-01-03" and plan.workers == (0, 1)
    assert plan.model_dump(mode="json") == {**raw, "tune_commands": [], "fit_command": []}

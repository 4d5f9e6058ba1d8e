"""Kubernetes pods for tune/fit, rendered by the provider's own code (no cluster needed).

``build_pod_request_obj(context, dry_run=True)`` is what KubernetesPodOperator sends to the
API server; ``ApiClient.sanitize_for_serialization`` turns it into the JSON body.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from kubernetes.client import ApiClient
from training_helpers import write_validated

from ai_factory.orchestration.training_pods import TrainingPodOperator, training_pod_kwargs
from ai_factory.settings import get_settings, reset_settings
from ai_factory.training.plan import RunOptions, plan_run


@pytest.fixture(autouse=True)
def _no_kube_connection_lookup(monkeypatch):
    # The hook reads the sidecar image from the connection; give it one through the environment.
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", '{"conn_type": "kubernetes", "extra": {}}')


def _context(gpus: int, task_id: str = "kubernetes.fit", map_index: int = -1) -> dict:
    ti = SimpleNamespace(dag_id="training", task_id=task_id, map_index=map_index, try_number=1)
    return {"ti": ti, "run_id": "manual__2026-03-05", "dag": SimpleNamespace(dag_id="training"),
            "params": {"gpus": gpus}}


def _render(op: TrainingPodOperator, gpus: int) -> dict:
    ctx = _context(gpus)
    op.render_template_fields(ctx)
    pod = op.build_pod_request_obj(ctx, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def _main(body: dict) -> dict:
    return next(c for c in body["spec"]["containers"] if c["name"] == "base")


COMMAND = ["train", "fit", "--window", "/data/training/runs/r1/window.json", "--study", "credit_default.r1",
           "--model", "/data/training/runs/r1/fit/model"]


def test_gpu_pod_carries_limit_tolerations_node_selector_mounts_command_env_and_sidecar():
    op = TrainingPodOperator(task_id="fit", name="ai-factory-fit", arguments=COMMAND,
                             **training_pod_kwargs(gpus="{{ params.gpus }}"))
    body = _render(op, gpus=2)
    spec, main = body["spec"], _main(body)
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert main["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"ai-factory/pool": "gpu"}
    assert main["command"] == ["ai-factory"] and main["args"] == COMMAND
    assert main["image"] == "ai-factory-train:0.1.0"
    assert {"name": "ai-factory-data", "mountPath": "/data"} in main["volumeMounts"]
    assert {"name": "ai-factory-data", "persistentVolumeClaim": {"claimName": "ai-factory-data"}} in spec["volumes"]
    env = {e["name"]: e for e in main["env"]}
    assert env["AI_FACTORY_DATA_ROOT"]["value"] == "/data"
    assert env["AI_FACTORY_TORCH_THREADS"]["value"] == "2"  # the CPU request, not the node's core count
    assert env["AI_FACTORY_OPTUNA_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "ai-factory-optuna", "key": "url"}
    assert spec["serviceAccountName"] == "ai-factory-trainer" and spec["restartPolicy"] == "Never"
    assert body["metadata"]["namespace"] == "ai-factory"
    assert body["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    # do_xcom_push: the sidecar shares /airflow/xcom with the main container.
    assert {c["name"] for c in spec["containers"]} == {"base", "airflow-xcom-sidecar"}
    assert any(m["mountPath"] == "/airflow/xcom" for m in main["volumeMounts"])
    assert op.on_finish_action.value == "delete_succeeded_pod"
    assert op.startup_timeout_seconds == 600 and op.schedule_timeout_seconds == 900

    # Rendering twice (a retry) does not stack tolerations.
    again = _render(op, gpus=2)
    assert again["spec"]["tolerations"] == spec["tolerations"]


def test_cpu_pod_has_no_gpu_scheduling():
    op = TrainingPodOperator(task_id="fit", name="ai-factory-fit", arguments=COMMAND,
                             **training_pod_kwargs(gpus="{{ params.gpus }}"))
    body = _render(op, gpus=0)
    assert "nvidia.com/gpu" not in _main(body)["resources"]["limits"]
    assert not body["spec"].get("tolerations") and not body["spec"].get("nodeSelector")
    fresh = TrainingPodOperator(task_id="fit", name="ai-factory-fit", arguments=COMMAND,
                                **training_pod_kwargs(gpus="{{ params.gpus }}"))
    with pytest.raises(ValueError, match="gpus must be >= 0, got -1"):
        _render(fresh, gpus=-1)


def test_pod_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("AI_FACTORY_K8S_NAMESPACE", "ml")
    monkeypatch.setenv("AI_FACTORY_K8S_IMAGE", "registry.example.com/ai-factory-train:1.2.3")
    monkeypatch.setenv("AI_FACTORY_K8S_GPU_NODE_SELECTOR", "cloud.google.com/gke-accelerator=nvidia-l4")
    monkeypatch.setenv("AI_FACTORY_K8S_GPU_TOLERATION_KEY", "gpu-pool")
    monkeypatch.setenv("AI_FACTORY_K8S_DATA_PVC", "lake")
    monkeypatch.setenv("AI_FACTORY_K8S_DATA_MOUNT_PATH", "/mnt/lake")
    monkeypatch.setenv("AI_FACTORY_K8S_CPU_REQUEST", "7500m")
    reset_settings()
    try:
        op = TrainingPodOperator(task_id="fit", name="ai-factory-fit", arguments=COMMAND,
                                 **training_pod_kwargs(gpus=1))
        body = _render(op, gpus=1)
    finally:
        reset_settings()
    main = _main(body)
    assert body["metadata"]["namespace"] == "ml"
    assert main["image"] == "registry.example.com/ai-factory-train:1.2.3"
    assert body["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert body["spec"]["tolerations"][0]["key"] == "gpu-pool"
    assert {"name": "ai-factory-data", "mountPath": "/mnt/lake"} in main["volumeMounts"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["AI_FACTORY_DATA_ROOT"] == "/mnt/lake" and env["AI_FACTORY_TORCH_THREADS"] == "7"
    assert main["resources"]["requests"]["cpu"] == "7500m"


def test_training_dag_pod_tasks_render_gpu_pods(dagbag):
    dag = dagbag.dags["training"]
    fit_task = dag.get_task("kubernetes.fit")
    assert isinstance(fit_task, TrainingPodOperator) and fit_task.do_xcom_push
    op = copy.copy(fit_task)
    op.arguments = COMMAND  # in a run this is the plan task's XCom
    body = _render(op, gpus=3)
    assert _main(body)["resources"]["limits"]["nvidia.com/gpu"] == "3"
    tune = dag.get_task("kubernetes.tune")
    assert tune.operator_class is TrainingPodOperator or tune.operator_class.__name__ == "TrainingPodOperator"
    assert tune.partial_kwargs["gpus"] == "{{ params.gpus }}"
    assert tune.partial_kwargs["do_xcom_push"] is True
    assert "arguments" in tune.expand_input.value


def test_plan_gives_each_pod_its_worker_command_on_the_mounted_volume(train_env):
    write_validated(train_env, days=4, rows=200)
    plan = plan_run("manual__2026-03-05T00:00:00+00:00", RunOptions(window_days=4, trials=12, workers=3,
                                                                    compute="kubernetes", gpus=1))
    root = get_settings().data_root
    key = plan["run_key"]
    assert key == "manual__2026-03-05T00-00-00-00-00" and plan["window"] == f"{root}/training/runs/{key}/window.json"
    pod_run = f"/data/training/runs/{key}"
    assert len(plan["tune_commands"]) == 3
    for i, cmd in enumerate(plan["tune_commands"]):
        assert cmd[:2] == ["train", "tune"]
        opts = dict(zip(cmd[2::2], cmd[3::2], strict=True))
        assert opts == {"--window": f"{pod_run}/window.json", "--study": plan["study"], "--trials": "12",
                        "--workers": "3", "--worker": str(i), "--data-root": "/data",
                        "--output": f"{pod_run}/tune/worker-{i}.json"}
    fit_opts = dict(zip(plan["fit_command"][2::2], plan["fit_command"][3::2], strict=True))
    assert fit_opts["--checkpoint"] == f"{pod_run}/fit/checkpoints" and fit_opts["--model"] == f"{pod_run}/fit/model"
    local = plan_run("manual__2026-03-05T00:00:00+00:00", RunOptions(window_days=4, compute="local"))
    assert local["tune_commands"] == [] and local["window"] == plan["window"]  # same run → same window

"""Kubernetes pods for tune/fit, rendered by the provider's own code (no cluster needed).

``build_pod_request_obj(context, dry_run=True)`` is what KubernetesPodOperator sends to the
API server; ``ApiClient.sanitize_for_serialization`` turns it into the JSON body. The DAG holds
light ``TrainingPod`` tasks that build that operator only when a pod is needed; the tests at the
end check that a run is delegated to it (execute, deferral and re-entry, on_kill) with the
cluster calls replaced by fakes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from ai_factory.orchestration.training_pod_operator import TrainingPodOperator
from ai_factory.orchestration.training_pods import TrainingPod, training_pod_kwargs
from ai_factory.settings import get_settings, reset_settings
from ai_factory.training.plan import RunOptions, plan_run

from training_helpers import write_validated

REPO = Path(__file__).resolve().parents[2]
COMMAND = ["train", "fit", "--window", "/data/training/runs/r1/window.json", "--study", "credit_default.r1",
           "--model", "/data/training/runs/r1/fit/model"]
TUNE_COMMANDS = [["train", "tune", "--worker", "0"], ["train", "tune", "--worker", "1"]]


@pytest.fixture(autouse=True)
def _no_kube_connection_lookup(monkeypatch):
    # The hook reads the sidecar image from the connection; give it one through the environment.
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", '{"conn_type": "kubernetes", "extra": {}}')


class FakeTI:
    """Just what templating, XComArg resolution and the provider read off a task instance."""

    def __init__(self, task_id: str, map_index: int = -1, xcoms: dict[tuple[str, str], Any] | None = None):
        self.dag_id, self.task_id, self.map_index, self.try_number = "training", task_id, map_index, 1
        self.start_date = datetime.now(UTC)
        self._upstream_map_indexes: dict[str, int] = {}
        self.xcoms = dict(xcoms or {})
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms[(task_ids, key)]

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _context(gpus: int, task_id: str = "kubernetes.fit", map_index: int = -1, **ti: Any) -> dict:
    return {"ti": FakeTI(task_id, map_index, **ti), "run_id": "manual__2026-03-05",
            "dag": SimpleNamespace(dag_id="training"), "params": {"gpus": gpus}}


def _render(op: TrainingPod, gpus: int) -> dict:
    ctx = _context(gpus)
    op.render_template_fields(ctx)
    pod = op.build_pod_request_obj(ctx, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def _main(body: dict) -> dict:
    return next(c for c in body["spec"]["containers"] if c["name"] == "base")


def _fit(**overrides: Any) -> TrainingPod:
    kwargs = {**training_pod_kwargs(gpus="{{ params.gpus }}"), "arguments": COMMAND, **overrides}
    return TrainingPod(task_id="fit", name="ai-factory-fit", **kwargs)


def test_gpu_pod_carries_limit_tolerations_node_selector_mounts_command_env_and_sidecar():
    op = _fit()
    body = _render(op, gpus=2)
    spec, main = body["spec"], _main(body)
    assert main["resources"]["limits"] == {"memory": "16Gi", "nvidia.com/gpu": "2"}
    assert main["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"ai-factory/pool": "gpu"}
    assert main["command"] == ["ai-factory"] and main["args"] == COMMAND
    assert main["image"] == "ai-factory-train:0.1.0" and main["imagePullPolicy"] == "IfNotPresent"
    assert {"name": "ai-factory-data", "mountPath": "/data"} in main["volumeMounts"]
    assert {"name": "ai-factory-data", "persistentVolumeClaim": {"claimName": "ai-factory-data"}} in spec["volumes"]
    env = {e["name"]: e for e in main["env"]}
    assert env["AI_FACTORY_DATA_ROOT"]["value"] == "/data" and env["AI_FACTORY_COMPUTE"]["value"] == "kubernetes"
    assert env["AI_FACTORY_TORCH_THREADS"]["value"] == "2"  # the CPU request, not the node's core count
    assert env["AI_FACTORY_OPTUNA_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "ai-factory-optuna", "key": "url"}
    assert spec["serviceAccountName"] == "ai-factory-trainer" and spec["restartPolicy"] == "Never"
    assert body["metadata"]["namespace"] == "ai-factory"
    assert body["metadata"]["name"].startswith("ai-factory-fit-")  # the provider's random suffix
    labels = body["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "training"
    assert labels["dag_id"] == "training" and labels["task_id"] == "kubernetes.fit"  # how a retry finds its pod
    # do_xcom_push: the sidecar shares /airflow/xcom with the main container.
    assert {c["name"] for c in spec["containers"]} == {"base", "airflow-xcom-sidecar"}
    assert any(m["mountPath"] == "/airflow/xcom" for m in main["volumeMounts"])
    kpo = op.pod_operator()
    assert isinstance(kpo, TrainingPodOperator) and kpo.do_xcom_push
    assert kpo.on_finish_action.value == "delete_succeeded_pod" and kpo.log_events_on_failure
    assert kpo.startup_timeout_seconds == 600 and kpo.schedule_timeout_seconds == 900
    assert kpo.in_cluster is True and kpo.durable  # a retry reattaches to a still-running pod

    # Rendering twice (a retry) does not stack tolerations.
    again = _render(op, gpus=2)
    assert again["spec"]["tolerations"] == spec["tolerations"]


def test_cpu_pod_has_no_gpu_scheduling():
    body = _render(_fit(), gpus=0)
    assert "nvidia.com/gpu" not in _main(body)["resources"]["limits"]
    assert not body["spec"].get("tolerations") and not body["spec"].get("nodeSelector")
    with pytest.raises(ValueError, match="gpus must be >= 0, got -1"):
        _render(_fit(), gpus=-1)
    with pytest.raises(ValueError, match="gpus must be an integer, got 'two'"):
        _render(_fit(gpus="two"), gpus=0)


def test_pod_fields_are_templated_on_the_light_task():
    op = _fit(image="registry.example.com/train:{{ params.tag }}", arguments=["train", "fit", "--ds", "{{ ds }}"],
              env_vars={"RUN": "{{ run_id }}"})
    ctx = {**_context(gpus=1), "ds": "2026-03-05"}
    ctx["params"]["tag"] = "1.2.3"
    op.render_template_fields(ctx)
    main = _main(ApiClient().sanitize_for_serialization(op.build_pod_request_obj(ctx, dry_run=True)))
    assert main["image"] == "registry.example.com/train:1.2.3"
    assert main["args"] == ["train", "fit", "--ds", "2026-03-05"]
    assert {"name": "RUN", "value": "manual__2026-03-05"} in main["env"]


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
        op = TrainingPod(task_id="fit", name="ai-factory-fit", arguments=COMMAND, **training_pod_kwargs(gpus=1))
        body = _render(op, gpus=1)
    finally:
        reset_settings()
    main = _main(body)
    assert body["metadata"]["namespace"] == "ml"
    assert main["image"] == "registry.example.com/ai-factory-train:1.2.3"
    assert body["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert body["spec"]["tolerations"][0]["key"] == "gpu-pool"
    assert {"name": "ai-factory-data", "mountPath": "/mnt/lake"} in main["volumeMounts"]
    assert {"name": "ai-factory-data", "persistentVolumeClaim": {"claimName": "lake"}} in body["spec"]["volumes"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["AI_FACTORY_DATA_ROOT"] == "/mnt/lake" and env["AI_FACTORY_TORCH_THREADS"] == "7"
    assert main["resources"]["requests"]["cpu"] == "7500m"


def _dag_context(dag: Any, task: Any, gpus: int, map_index: int = -1) -> dict:
    """A run's template context for ``task`` of the parsed DAG, with the plan's XComs in place."""
    from airflow.sdk.definitions.param import process_params

    conf = {"gpus": gpus, "compute": "kubernetes"}
    xcoms = {("plan", "fit_command"): COMMAND, ("kubernetes.pod_commands", "return_value"): TUNE_COMMANDS}
    ti = FakeTI(task.task_id, map_index, xcoms=xcoms)
    return {"ti": ti, "run_id": "manual__2026-03-05", "dag": dag, "dag_run": SimpleNamespace(conf=conf),
            "task": task, "params": process_params(dag, task, conf, suppress_exception=False)}


def test_training_dag_fit_and_mapped_tune_tasks_render_gpu_pods(dagbag):
    dag = dagbag.dags["training"]

    fit = dag.get_task("kubernetes.fit").prepare_for_execution()  # the copy a worker runs
    assert isinstance(fit, TrainingPod) and fit.do_xcom_push
    ctx = _dag_context(dag, fit, gpus=3)
    fit.render_template_fields(ctx)  # arguments: the plan task's XCom; gpus: the run's Param
    fit_main = _main(ApiClient().sanitize_for_serialization(fit.build_pod_request_obj(ctx, dry_run=True)))
    assert fit_main["args"] == COMMAND and fit_main["resources"]["limits"]["nvidia.com/gpu"] == "3"

    tune = dag.get_task("kubernetes.tune")
    assert tune.operator_class is TrainingPod and tune.partial_kwargs["gpus"] == "{{ params.gpus }}"
    for map_index, command in enumerate(TUNE_COMMANDS):
        ctx = _dag_context(dag, tune, gpus=2, map_index=map_index)
        tune.render_template_fields(ctx)  # unmaps (expand arguments=pod_commands) into ctx["task"]
        worker = ctx["task"]
        assert isinstance(worker, TrainingPod) and worker.do_xcom_push and worker.task_id == "kubernetes.tune"
        body = ApiClient().sanitize_for_serialization(worker.build_pod_request_obj(ctx, dry_run=True))
        main = _main(body)
        assert main["args"] == command and main["resources"]["limits"]["nvidia.com/gpu"] == "2"
        assert body["spec"]["nodeSelector"] == {"ai-factory/pool": "gpu"}
        assert body["metadata"]["name"].startswith("ai-factory-tune-")
        assert body["metadata"]["labels"]["map_index"] == str(map_index)
        assert "airflow-xcom-sidecar" in {c["name"] for c in body["spec"]["containers"]}


class FakeHook:
    """The KubernetesHook calls a run makes besides the pod API: no cluster config needed."""

    is_in_cluster = True

    def get_xcom_sidecar_container_image(self) -> None:
        return None

    def get_xcom_sidecar_container_resources(self) -> None:
        return None

    def get_xcom_sidecar_container_security_context(self) -> None:
        return None

    def __init__(self, pods: dict[str, k8s.V1Pod] | None = None):
        self.pods = pods or {}

    def get_pod(self, name: str, namespace: str) -> k8s.V1Pod:
        return self.pods[name]


class FakeCluster:
    """Stands in for the pod API: records what the provider's operator did, returns a finished pod."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, result: dict):
        self.created: list[k8s.V1Pod] = []
        self.cleaned: list[dict] = []
        self.deleted: list[str] = []
        self.hook = FakeHook()
        cluster = self
        pod_manager = SimpleNamespace(
            await_xcom_sidecar_container_start=lambda pod: None,
            extract_xcom=lambda pod, ignore_kill_failure=True: json.dumps(result),
            await_pod_completion=lambda pod, *a, **k: pod,
        )
        client = SimpleNamespace(delete_namespaced_pod=lambda name, namespace, **_: cluster.deleted.append(name))

        def get_or_create_pod(op, pod_request_obj, context):
            cluster.created.append(pod_request_obj)
            return pod_request_obj

        def cleanup(op, pod, remote_pod, xcom_result=None, context=None):
            cluster.cleaned.append({"pod": pod.metadata.name, "result": xcom_result, "action": op.on_finish_action.value})

        for name, value in {
            "hook": property(lambda op: cluster.hook), "pod_manager": property(lambda op: pod_manager),
            "client": property(lambda op: client), "get_or_create_pod": get_or_create_pod, "cleanup": cleanup,
            "find_pod": lambda op, namespace, context, **_: op.pod, "await_pod_start": lambda op, pod: None,
            "await_init_containers_completion": lambda op, pod: None, "await_pod_completion": lambda op, pod: None,
            "is_istio_enabled": lambda op, pod: False, "_write_logs": lambda op, pod, **_: None,
        }.items():
            monkeypatch.setattr(TrainingPodOperator, name, value)


def test_execute_runs_the_provider_operator_and_returns_the_sidecar_result(monkeypatch):
    cluster = FakeCluster(monkeypatch, result={"best_value": 0.91})
    op = _fit(deferrable=False)
    ctx = _context(gpus=1)
    op.render_template_fields(ctx)

    assert op.execute(ctx) == {"best_value": 0.91}  # what the task runner pushes as return_value

    [pod] = cluster.created
    main = next(c for c in pod.spec.containers if c.name == "base")
    assert main.args == COMMAND and main.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.metadata.labels["try_number"] == "1" and pod.metadata.labels["airflow_kpo_in_cluster"] == "True"
    assert ctx["ti"].pushed == {"pod_name": pod.metadata.name, "pod_namespace": "ai-factory"}
    assert cluster.cleaned == [{"pod": pod.metadata.name, "result": {"best_value": 0.91},
                                "action": "delete_succeeded_pod"}]
    op.on_kill()  # the worker is told to stop: the pod of this try is deleted
    assert cluster.deleted == [pod.metadata.name]


def test_on_kill_before_execute_does_nothing(monkeypatch):
    cluster = FakeCluster(monkeypatch, result={})
    _fit().on_kill()
    assert cluster.deleted == []


def test_deferrable_run_defers_to_the_trigger_and_resumes_through_the_light_task(monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    cluster = FakeCluster(monkeypatch, result={"best_value": 0.88})
    op = _fit(deferrable=True, execution_timeout=timedelta(hours=1))
    ctx = _context(gpus=0)
    op.render_template_fields(ctx)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    [pod] = cluster.created
    # Airflow resumes with getattr(task, method_name): it must exist on the light task.
    assert deferred.value.method_name == "trigger_reentry" and callable(getattr(op, deferred.value.method_name))
    assert deferred.value.trigger.pod_name == pod.metadata.name
    assert deferred.value.timeout is not None  # execution_timeout reached the provider (trigger deadline)

    # The trigger fired: a new worker process resumes *this* task with the event.
    pod.status = k8s.V1PodStatus(phase="Succeeded", container_statuses=[k8s.V1ContainerStatus(
        name="base", image="x", image_id="x", ready=False, restart_count=0,
        state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=0)))])
    cluster.hook.pods[pod.metadata.name] = pod
    resumed = _fit(deferrable=True, execution_timeout=timedelta(hours=1))
    resumed.render_template_fields(ctx)
    event = {"status": "success", "name": pod.metadata.name, "namespace": "ai-factory", "message": ""}
    assert resumed.resume_execution("trigger_reentry", {"event": event}, ctx) == {"best_value": 0.88}
    assert [c["result"] for c in cluster.cleaned] == [{"best_value": 0.88}]


def test_plan_gives_each_pod_its_worker_command_on_the_mounted_volume(train_env):
    write_validated(train_env, days=4, rows=200)
    plan = plan_run("manual__2026-03-05T00:00:00+00:00", RunOptions(window_days=4, trials=12, workers=3,
                                                                    compute="kubernetes", gpus=1))
    root = get_settings().data_root
    key = plan.run_key
    assert key == "manual__2026-03-05T00-00-00-00-00" and plan.window == f"{root}/training/runs/{key}/window.json"
    pod_run = f"/data/training/runs/{key}"
    assert len(plan.tune_commands) == 3
    for i, cmd in enumerate(plan.tune_commands):
        assert cmd[:2] == ("train", "tune")
        opts = dict(zip(cmd[2::2], cmd[3::2], strict=True))
        assert opts == {"--window": f"{pod_run}/window.json", "--study": plan.study, "--trials": "12",
                        "--workers": "3", "--worker": str(i), "--data-root": "/data",
                        "--output": f"{pod_run}/tune/worker-{i}.json"}
    fit_opts = dict(zip(plan.fit_command[2::2], plan.fit_command[3::2], strict=True))
    assert fit_opts["--checkpoint"] == f"{pod_run}/fit/checkpoints" and fit_opts["--model"] == f"{pod_run}/fit/model"
    local = plan_run("manual__2026-03-05T00:00:00+00:00", RunOptions(window_days=4, compute="local"))
    assert local.tune_commands == () and local.window == plan.window  # same run → same window


_IMPORT_PROBE = r"""
import json, runpy, sys
import airflow.sdk  # its own import pulls in two tiny provider modules (airflow.exceptions); not ours
before = set(sys.modules)
runpy.run_path(sys.argv[1])
print(json.dumps({"new": sorted(m for m in set(sys.modules) - before
                                if m.split(".")[0] == "kubernetes" or m.startswith("airflow.providers.cncf")),
                  "kubernetes": any(m.split(".")[0] == "kubernetes" for m in sys.modules)}))
"""


def test_parsing_the_training_dag_does_not_import_kubernetes():
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, str(REPO / "dags" / "training.py")],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"new": [], "kubernetes": False}

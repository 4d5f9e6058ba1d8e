"""KubernetesPodOperator for the training image: GPU pool scheduling, storage mounts, XCom sidecar.

Everything a training pod needs comes from :class:`ai_factory.settings.KubernetesSettings`
(``AI_FACTORY_K8S_*``): image, namespace, service account, the data PVC and where it is
mounted, CPU/memory requests, the GPU resource name and the GPU pool's node selector and
taint key, startup/schedule timeouts. The Optuna storage URL (it holds a password) reaches
the pod as ``AI_FACTORY_OPTUNA_STORAGE`` from a Kubernetes Secret, never through the DAG.

The GPU count is a templated field (``gpus="{{ params.gpus }}"``) and decides the rest at
run time: with ``gpus > 0`` the container gets an ``nvidia.com/gpu`` limit and the pod the
GPU pool's node selector and toleration; with ``gpus = 0`` it is a plain CPU pod.

Failed pods are kept for ``kubectl logs``/``describe`` (``on_finish_action =
delete_succeeded_pod``); succeeded ones are removed. The command's result JSON comes back
as the task's XCom through the sidecar (``do_xcom_push``).

Imported by DAG files at parse time, so only Airflow, the Kubernetes client models and
the settings module are imported here.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

from ai_factory.settings import KubernetesSettings, get_settings

DATA_VOLUME = "ai-factory-data"
POD_LABELS = {"app.kubernetes.io/name": "ai-factory", "app.kubernetes.io/component": "training"}


def cpu_threads(cpu_request: str) -> int:
    """Torch threads for a pod from its CPU request (``"4"`` → 4, ``"1500m"`` → 1, at least 1).

    ``os.sched_getaffinity`` in a container shows every core of the node, not the pod's share;
    running that many threads on a 2-CPU request would thrash.
    """
    raw = cpu_request.strip()
    try:
        cores = float(raw[:-1]) / 1000 if raw.endswith("m") else float(raw)
    except ValueError:
        raise ValueError(f"AI_FACTORY_K8S_CPU_REQUEST={cpu_request!r} is not a Kubernetes CPU quantity") from None
    return max(1, int(cores))


def gpu_resources(k8s_settings: KubernetesSettings, gpus: int) -> k8s.V1ResourceRequirements:
    limits = {"memory": k8s_settings.memory_limit}
    if gpus > 0:
        # Extended resources are requested through limits (requests default to the same value).
        limits[k8s_settings.gpu_resource] = str(gpus)
    return k8s.V1ResourceRequirements(
        requests={"cpu": k8s_settings.cpu_request, "memory": k8s_settings.memory_request},
        limits=limits,
    )


class TrainingPodOperator(KubernetesPodOperator):
    """A pod running ``ai-factory train …`` whose GPU count (``gpus``) is templated."""

    template_fields = (*KubernetesPodOperator.template_fields, "gpus")

    def __init__(self, *, gpus: int | str = 1, gpu_resource: str, gpu_node_selector: dict[str, str],
                 gpu_toleration_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gpus = gpus
        self.gpu_resource = gpu_resource
        self.gpu_node_selector = dict(gpu_node_selector)
        self.gpu_toleration_key = gpu_toleration_key
        self._base_node_selector = dict(self.node_selector or {})
        self._base_tolerations = list(self.tolerations or [])

    def _gpu_count(self) -> int:
        try:
            gpus = int(self.gpus)
        except (TypeError, ValueError):
            raise ValueError(f"task {self.task_id}: gpus must be an integer, got {self.gpus!r}") from None
        if gpus < 0:
            raise ValueError(f"task {self.task_id}: gpus must be >= 0, got {gpus}")
        return gpus

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        gpus = self._gpu_count()
        requests = dict((self.container_resources.requests or {}) if self.container_resources else {})
        limits = dict((self.container_resources.limits or {}) if self.container_resources else {})
        limits.pop(self.gpu_resource, None)
        if gpus > 0:
            limits[self.gpu_resource] = str(gpus)
            self.node_selector = {**self._base_node_selector, **self.gpu_node_selector}
            self.tolerations = [*self._base_tolerations,
                                k8s.V1Toleration(key=self.gpu_toleration_key, operator="Exists", effect="NoSchedule")]
        else:
            self.node_selector = dict(self._base_node_selector)
            self.tolerations = list(self._base_tolerations)
        self.container_resources = k8s.V1ResourceRequirements(requests=requests, limits=limits)
        return super().build_pod_request_obj(context, dry_run=dry_run)


def training_pod_kwargs(k8s_settings: KubernetesSettings | None = None, gpus: int | str = 1) -> dict[str, Any]:
    """Keyword arguments for :class:`TrainingPodOperator` (``task_id``/``arguments`` are the caller's)."""
    ks = k8s_settings or get_settings().kubernetes
    return {
        "namespace": ks.namespace,
        "image": ks.image,
        "image_pull_policy": ks.image_pull_policy,
        "service_account_name": ks.service_account,
        "cmds": ["ai-factory"],
        "labels": dict(POD_LABELS),
        "env_vars": [
            k8s.V1EnvVar(name="AI_FACTORY_DATA_ROOT", value=ks.data_mount_path),
            k8s.V1EnvVar(name="AI_FACTORY_COMPUTE", value="kubernetes"),
            k8s.V1EnvVar(name="BENTOML_HOME", value=f"{ks.data_mount_path}/bentoml"),
            k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
            k8s.V1EnvVar(name="AI_FACTORY_TORCH_THREADS", value=str(cpu_threads(ks.cpu_request))),
        ],
        "secrets": [Secret("env", "AI_FACTORY_OPTUNA_STORAGE", ks.optuna_storage_secret, "url")],
        "volumes": [k8s.V1Volume(
            name=DATA_VOLUME,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=ks.data_pvc),
        )],
        "volume_mounts": [k8s.V1VolumeMount(name=DATA_VOLUME, mount_path=ks.data_mount_path)],
        "container_resources": gpu_resources(ks, 0),
        "gpus": gpus,
        "gpu_resource": ks.gpu_resource,
        "gpu_node_selector": dict(ks.gpu_node_selector),
        "gpu_toleration_key": ks.gpu_toleration_key,
        "in_cluster": ks.in_cluster,
        "config_file": ks.config_file,
        "startup_timeout_seconds": ks.startup_timeout_seconds,
        "schedule_timeout_seconds": ks.schedule_timeout_seconds,
        "on_finish_action": "delete_succeeded_pod",
        "get_logs": True,
        "log_events_on_failure": True,
        "do_xcom_push": True,
    }

"""The KubernetesPodOperator behind :class:`~ai_factory.orchestration.training_pods.TrainingPod`.

Imports the cncf.kubernetes provider and the Kubernetes client (~1 s), so it is imported only
when a pod is built: in ``TrainingPod.execute`` / ``trigger_reentry`` / ``build_pod_request_obj``
on a worker or in a test, never while a DAG file is parsed.

:class:`TrainingPodOperator` can also be used on its own (``gpus`` is a templated field);
:func:`build_training_pod_operator` turns a ``TrainingPod``'s plain-data pod configuration
into one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

if TYPE_CHECKING:
    from ai_factory.orchestration.training_pods import TrainingPod


class TrainingPodOperator(KubernetesPodOperator):
    """A pod running ``ai-factory train …`` whose GPU count (``gpus``) is templated.

    With ``gpus > 0`` the container gets a ``gpu_resource`` limit and the pod the GPU pool's
    node selector and toleration; with ``gpus = 0`` it is a plain CPU pod.
    """

    template_fields = (*KubernetesPodOperator.template_fields, "gpus")

    def __init__(self, *, gpus: int | str = 1, gpu_resource: str, gpu_node_selector: Mapping[str, str],
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
        # Recomputed from the base values on every call, so a second build (a retry) does not stack.
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


def build_training_pod_operator(task: TrainingPod) -> TrainingPodOperator:
    """The :class:`TrainingPodOperator` for ``task``, from its current (rendered) field values."""
    volumes, mounts = [], []
    if task.data_pvc:
        volumes.append(k8s.V1Volume(
            name=task.data_volume,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=task.data_pvc),
        ))
        mounts.append(k8s.V1VolumeMount(name=task.data_volume, mount_path=task.data_mount_path))
    resources = task.pod_resources or {}
    optional: dict[str, Any] = {}
    if task.deferrable is not None:  # else the provider's own default ([operators] default_deferrable)
        optional["deferrable"] = task.deferrable
    return TrainingPodOperator(
        # What the provider reads off the BaseOperator: ids for logs, the deadline it hands
        # the trigger (execution_timeout), and how a failed pod's XCom is pushed.
        task_id=task.task_id,
        execution_timeout=task.execution_timeout,
        multiple_outputs=task.multiple_outputs,
        do_xcom_push=task.do_xcom_push,
        kubernetes_conn_id=task.kubernetes_conn_id,
        namespace=task.namespace,
        name=task.name,
        image=task.image,
        image_pull_policy=task.image_pull_policy,
        service_account_name=task.service_account_name,
        cmds=list(task.cmds),
        arguments=list(task.arguments),
        labels=dict(task.labels),
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in task.env_vars.items()],
        secrets=[Secret("env", env, ref["secret"], ref["key"]) for env, ref in task.secret_env_vars.items()],
        volumes=volumes,
        volume_mounts=mounts,
        container_resources=k8s.V1ResourceRequirements(requests=dict(resources.get("requests") or {}),
                                                        limits=dict(resources.get("limits") or {})),
        gpus=task.gpus,
        gpu_resource=task.gpu_resource,
        gpu_node_selector=task.gpu_node_selector,
        gpu_toleration_key=task.gpu_toleration_key,
        in_cluster=task.in_cluster,
        config_file=task.config_file,
        startup_timeout_seconds=task.startup_timeout_seconds,
        schedule_timeout_seconds=task.schedule_timeout_seconds,
        on_finish_action=task.on_finish_action,
        get_logs=task.get_logs,
        log_events_on_failure=task.log_events_on_failure,
        **optional,
    )

"""Training pods for ``compute = kubernetes``: GPU pool scheduling, storage mounts, XCom sidecar.

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

**Why a wrapper.** DAG files import this module at parse time, and importing the
cncf.kubernetes provider with the Kubernetes client costs about a second per parse. So
:class:`TrainingPod` is a plain ``airflow.sdk.BaseOperator`` that holds the pod
configuration as plain Python data (str, int, list, dict) and builds the real
KubernetesPodOperator subclass
(:class:`~ai_factory.orchestration.training_pod_operator.TrainingPodOperator`, in a module
imported only then) when a pod is needed. What is delegated to that operator, built fresh
from the rendered fields each time:

* ``execute`` — everything KubernetesPodOperator does in a run: pod creation, or
  reattaching on a retry after a worker died (``durable``: the pod identity kept in the
  task state store, then the label search), startup/schedule timeouts, log streaming,
  the XCom sidecar (its result is returned, so it becomes this task's ``return_value``;
  ``pod_name``/``pod_namespace`` are pushed as in the provider), cleanup per
  ``on_finish_action`` (failed pods labelled ``already_checked`` so a retry does not reuse
  them), ``skip_on_exit_code`` and pod events on failure.
* ``trigger_reentry`` — deferrable mode (``deferrable=True``, or the provider's default
  ``[operators] default_deferrable`` when left ``None``): the provider defers with
  ``method_name="trigger_reentry"``, and Airflow calls that name on *this* task when the
  trigger fires, so it is forwarded to a freshly built operator (re-deferrals included).
* ``on_kill`` — to the operator of the current try (deletes its pod per ``on_kill_action``).
* ``build_pod_request_obj(context, dry_run=...)`` and ``dry_run()`` — the exact pod the
  provider would submit, without a cluster.

Templating happens here, on the plain data (``template_fields`` below); the built operator
receives rendered values and is not rendered again. Mapping works as for any operator:
``TrainingPod.partial(...).expand(arguments=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from ai_factory.settings import KubernetesSettings, get_settings

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

    from ai_factory.orchestration.training_pod_operator import TrainingPodOperator

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


class TrainingPod(BaseOperator):
    """A Kubernetes pod running ``ai-factory train …``; the GPU count (``gpus``) is templated.

    :param name: pod name (a random suffix is added, as in KubernetesPodOperator).
    :param arguments: the container's args, e.g. a plan's ``tune_commands[i]`` (templated, mappable).
    :param gpus: ``gpu_resource`` per pod; 0 is a CPU pod (templated).
    :param env_vars: plain environment variables, name → value.
    :param secret_env_vars: environment variables from Secrets, name → ``{"secret": …, "key": …}``.
    :param data_pvc: claim mounted at ``data_mount_path`` (volume ``data_volume``); ``None``: no mount.
    :param pod_resources: ``{"requests": {...}, "limits": {...}}`` without the GPU (``gpus`` adds it).
    :param deferrable: ``None`` keeps the provider's default (``[operators] default_deferrable``).

    The rest are KubernetesPodOperator's parameters of the same name and default.
    """

    template_fields: Sequence[str] = ("image", "name", "namespace", "cmds", "arguments", "env_vars", "labels",
                                      "config_file", "kubernetes_conn_id", "gpus")
    template_fields_renderers = {"env_vars": "json", "arguments": "json", "labels": "json"}

    def __init__(
        self,
        *,
        name: str,
        image: str,
        namespace: str | None = None,
        arguments: list[str] | None = None,
        cmds: list[str] | None = None,
        gpus: int | str = 1,
        gpu_resource: str = "nvidia.com/gpu",
        gpu_node_selector: Mapping[str, str] | None = None,
        gpu_toleration_key: str = "nvidia.com/gpu",
        image_pull_policy: str | None = None,
        service_account_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        env_vars: Mapping[str, str] | None = None,
        secret_env_vars: Mapping[str, Mapping[str, str]] | None = None,
        data_pvc: str | None = None,
        data_mount_path: str = "/data",
        data_volume: str = DATA_VOLUME,
        pod_resources: Mapping[str, Mapping[str, str]] | None = None,
        kubernetes_conn_id: str = "kubernetes_default",
        in_cluster: bool | None = None,
        config_file: str | None = None,
        startup_timeout_seconds: int = 120,
        schedule_timeout_seconds: int | None = None,
        on_finish_action: str = "delete_pod",
        get_logs: bool = True,
        log_events_on_failure: bool = False,
        do_xcom_push: bool = False,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(do_xcom_push=do_xcom_push, **kwargs)
        # Stored as given (any of these may be an XComArg until rendered); copied when the pod is built.
        self.name = name
        self.image = image
        self.namespace = namespace
        self.arguments = arguments or []
        self.cmds = cmds or []
        self.gpus = gpus
        self.gpu_resource = gpu_resource
        self.gpu_node_selector = gpu_node_selector or {}
        self.gpu_toleration_key = gpu_toleration_key
        self.image_pull_policy = image_pull_policy
        self.service_account_name = service_account_name
        self.labels = labels or {}
        self.env_vars = env_vars or {}
        self.secret_env_vars = secret_env_vars or {}
        self.data_pvc = data_pvc
        self.data_mount_path = data_mount_path
        self.data_volume = data_volume
        self.pod_resources = pod_resources or {}
        self.kubernetes_conn_id = kubernetes_conn_id
        self.in_cluster = in_cluster
        self.config_file = config_file
        self.startup_timeout_seconds = startup_timeout_seconds
        self.schedule_timeout_seconds = schedule_timeout_seconds
        self.on_finish_action = on_finish_action
        self.get_logs = get_logs
        self.log_events_on_failure = log_events_on_failure
        self.deferrable = deferrable
        self._pod_operator: TrainingPodOperator | None = None  # the current try's, for on_kill

    def pod_operator(self) -> TrainingPodOperator:
        """A new KubernetesPodOperator (subclass) for this task's current, rendered field values."""
        from ai_factory.orchestration.training_pod_operator import build_training_pod_operator

        return build_training_pod_operator(self)

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The pod KubernetesPodOperator would submit (``dry_run=True``: no cluster needed)."""
        return self.pod_operator().build_pod_request_obj(context, dry_run=dry_run)

    def dry_run(self) -> None:
        """Print the pod's YAML (KubernetesPodOperator.dry_run)."""
        self.pod_operator().dry_run()

    def execute(self, context: Context) -> Any:
        self._pod_operator = self.pod_operator()
        return self._pod_operator.execute(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        # Resumed in a new process after the deferral: the operator is built again.
        self._pod_operator = self.pod_operator()
        return self._pod_operator.trigger_reentry(context, event)

    def on_kill(self) -> None:
        if self._pod_operator is not None:
            self._pod_operator.on_kill()


def training_pod_kwargs(k8s_settings: KubernetesSettings | None = None, gpus: int | str = 1) -> dict[str, Any]:
    """Keyword arguments for :class:`TrainingPod` (``task_id``/``name``/``arguments`` are the caller's)."""
    ks = k8s_settings or get_settings().kubernetes
    return {
        "namespace": ks.namespace,
        "image": ks.image,
        "image_pull_policy": ks.image_pull_policy,
        "service_account_name": ks.service_account,
        "cmds": ["ai-factory"],
        "labels": dict(POD_LABELS),
        "env_vars": {
            "AI_FACTORY_DATA_ROOT": ks.data_mount_path,
            "AI_FACTORY_COMPUTE": "kubernetes",
            "BENTOML_HOME": f"{ks.data_mount_path}/bentoml",
            "PYTHONUNBUFFERED": "1",
            "AI_FACTORY_TORCH_THREADS": str(cpu_threads(ks.cpu_request)),
        },
        "secret_env_vars": {"AI_FACTORY_OPTUNA_STORAGE": {"secret": ks.optuna_storage_secret, "key": "url"}},
        "data_pvc": ks.data_pvc,
        "data_mount_path": ks.data_mount_path,
        "pod_resources": {"requests": {"cpu": ks.cpu_request, "memory": ks.memory_request},
                          # Extended resources (the GPU) are requested through limits; gpus adds it.
                          "limits": {"memory": ks.memory_limit}},
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

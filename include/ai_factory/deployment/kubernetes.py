"""The ``kubernetes`` deployment target: the Bento image as a Deployment + Service, rolling updates.

Image: ``bentoml containerize <bento tag> --image-tag <AI_FACTORY_K8S_SERVE_IMAGE_REPO>:<model version>``
(needs a Docker/BuildKit engine) and a push to the registry the cluster pulls from; :func:`containerize`
does both. The serving pods mount the data PVC at ``/data`` so served records land in
``/data/predictions/ds=…`` for the drift monitor, like the local target.

Flow over the same plan as the local target:

* **start_candidate** — a separate ``<app>-candidate`` Deployment + Service with the new image
  (one replica); the live Deployment is untouched and keeps serving. Waits for its readiness
  probe (``/readyz``).
* **smoke test** — against the candidate Service's in-cluster URL.
* **switch** — the live Deployment's image moves to the new one: a rolling update with
  ``maxUnavailable: 0`` / ``maxSurge: 1``, so old pods serve until new pods pass ``/readyz``;
  waits for the rollout to finish.
* **retire** — deletes the candidate. **rollback** — deletes the candidate and, if the live
  Deployment already moved, puts the previous image back (another rolling update).

Manifests are built with the ``kubernetes`` client's models (:func:`render_manifests`), so they
are validated by the same classes the API uses, and can be rendered without a cluster
(``ai-factory serve manifests``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_factory.deployment.flow import DeploymentPlan

log = logging.getLogger(__name__)

APP = "ai-factory-model"
CONTAINER_PORT = 3000


@dataclass(frozen=True)
class ServeK8sConfig:
    namespace: str = "ai-factory"
    image_repo: str = "ai-factory-model"
    replicas: int = 2
    cpu_request: str = "1"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"
    data_pvc: str = "ai-factory-data"
    data_mount_path: str = "/data"
    service_type: str = "ClusterIP"
    rollout_timeout_seconds: int = 600
    in_cluster: bool = True
    config_file: str | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls) -> ServeK8sConfig:
        from ai_factory.settings import get_settings

        k = get_settings().kubernetes
        return cls(namespace=k.namespace, image_repo=os.environ.get("AI_FACTORY_K8S_SERVE_IMAGE_REPO", APP),
                   replicas=int(os.environ.get("AI_FACTORY_K8S_SERVE_REPLICAS", "2")), data_pvc=k.data_pvc,
                   data_mount_path=k.data_mount_path, in_cluster=k.in_cluster, config_file=k.config_file)

    def image(self, version: str) -> str:
        return f"{self.image_repo}:{version}"


def render_manifests(cfg: ServeK8sConfig, version: str, *, name: str = APP, replicas: int | None = None,
                     image: str | None = None) -> tuple[Any, Any]:
    """``(V1Deployment, V1Service)`` serving ``version`` from its Bento image."""
    from kubernetes.client import models as k8s

    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ai-factory",
              "app.kubernetes.io/component": "model-server", **cfg.extra_labels}
    pod_labels = {**labels, "ai-factory/model-version": version}
    probe = {"port": "http", "scheme": "HTTP"}
    container = k8s.V1Container(
        name="model",
        image=image or cfg.image(version),
        image_pull_policy="IfNotPresent",
        # The Bento image's entrypoint is `bentoml serve` of the Bento it was built from.
        ports=[k8s.V1ContainerPort(name="http", container_port=CONTAINER_PORT, protocol="TCP")],
        env=[k8s.V1EnvVar(name="AI_FACTORY_DATA_ROOT", value=cfg.data_mount_path),
             k8s.V1EnvVar(name="BENTOML_DO_NOT_TRACK", value="true")],
        resources=k8s.V1ResourceRequirements(requests={"cpu": cfg.cpu_request, "memory": cfg.memory_request},
                                             limits={"memory": cfg.memory_limit}),
        readiness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/readyz", **probe), period_seconds=5,
                                    timeout_seconds=3, failure_threshold=3, initial_delay_seconds=5),
        liveness_probe=k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path="/livez", **probe), period_seconds=10,
                                   timeout_seconds=3, failure_threshold=6, initial_delay_seconds=30),
        volume_mounts=[k8s.V1VolumeMount(name="data", mount_path=cfg.data_mount_path)],
    )
    deployment = k8s.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=k8s.V1ObjectMeta(name=name, namespace=cfg.namespace, labels=labels,
                                  annotations={"ai-factory/model-version": version}),
        spec=k8s.V1DeploymentSpec(
            replicas=cfg.replicas if replicas is None else replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            strategy=k8s.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=k8s.V1RollingUpdateDeployment(max_unavailable=0, max_surge=1)),
            min_ready_seconds=5,
            revision_history_limit=5,
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=pod_labels),
                spec=k8s.V1PodSpec(
                    containers=[container],
                    termination_grace_period_seconds=30,
                    volumes=[k8s.V1Volume(name="data", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                        claim_name=cfg.data_pvc))],
                ),
            ),
        ),
    )
    service = k8s.V1Service(
        api_version="v1", kind="Service",
        metadata=k8s.V1ObjectMeta(name=name, namespace=cfg.namespace, labels=labels),
        spec=k8s.V1ServiceSpec(type=cfg.service_type, selector=labels,
                               ports=[k8s.V1ServicePort(name="http", port=CONTAINER_PORT, target_port="http")]),
    )
    return deployment, service


def to_yaml(*objects: Any) -> str:
    import yaml
    from kubernetes.client import ApiClient

    client = ApiClient()
    return yaml.safe_dump_all([client.sanitize_for_serialization(o) for o in objects], sort_keys=False)


def containerize(bento: str, image: str, push: bool = True) -> str:
    """``bentoml containerize`` + ``docker push`` (needs a container engine on the worker)."""
    cmds = [[sys.executable, "-m", "bentoml", "containerize", bento, "--image-tag", image]]
    if push:
        cmds.append(["docker", "push", image])
    for cmd in cmds:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        except FileNotFoundError as exc:
            raise RuntimeError(f"{cmd[0]} is not installed on this worker: cannot build image {image}") from exc
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} failed (exit {proc.returncode}); a Docker/BuildKit engine is "
                               f"required:\n{(proc.stderr or proc.stdout)[-3000:]}")
    return image


class KubernetesTarget:
    """Applies and rolls the serving manifests with the Kubernetes client."""

    def __init__(self, cfg: ServeK8sConfig, apps: Any = None, core: Any = None) -> None:
        self.cfg = cfg
        self._apps, self._core = apps, core

    @classmethod
    def from_settings(cls) -> KubernetesTarget:
        return cls(ServeK8sConfig.from_settings())

    def _clients(self) -> tuple[Any, Any]:
        if self._apps is None or self._core is None:
            from kubernetes import client, config

            if self.cfg.in_cluster:
                config.load_incluster_config()
            else:
                config.load_kube_config(config_file=self.cfg.config_file)
            self._apps, self._core = client.AppsV1Api(), client.CoreV1Api()
        return self._apps, self._core

    def url(self, name: str) -> str:
        return f"http://{name}.{self.cfg.namespace}.svc.cluster.local:{CONTAINER_PORT}"

    def _apply(self, deployment: Any, service: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        apps, core = self._clients()
        ns, name = self.cfg.namespace, deployment.metadata.name
        try:
            apps.read_namespaced_deployment(name, ns)
            apps.patch_namespaced_deployment(name, ns, deployment)
        except ApiException as exc:
            if exc.status != 404:
                raise
            apps.create_namespaced_deployment(ns, deployment)
        try:
            core.read_namespaced_service(name, ns)
            core.patch_namespaced_service(name, ns, service)
        except ApiException as exc:
            if exc.status != 404:
                raise
            core.create_namespaced_service(ns, service)

    def wait_rollout(self, name: str, timeout: float | None = None) -> None:
        """Until every replica runs the current template and is ready (like ``kubectl rollout status``)."""
        apps, _ = self._clients()
        deadline = time.monotonic() + (timeout or self.cfg.rollout_timeout_seconds)
        while time.monotonic() < deadline:
            d = apps.read_namespaced_deployment(name, self.cfg.namespace)
            want, st = d.spec.replicas or 0, d.status
            if (st.observed_generation or 0) >= d.metadata.generation and (st.updated_replicas or 0) == want \
                    and (st.available_replicas or 0) == want and (st.replicas or 0) == want:
                return
            time.sleep(2)
        raise RuntimeError(f"deployment {self.cfg.namespace}/{name} did not finish rolling out in time")

    def start_candidate(self, p: DeploymentPlan, bento: str) -> dict[str, Any]:
        name = f"{APP}-candidate"
        image = self.cfg.image(p.version)
        containerize(bento, image)
        dep, svc = render_manifests(self.cfg, p.version, name=name, replicas=1, image=image)
        self._apply(dep, svc)
        self.wait_rollout(name)
        return {"name": name, "image": image, "url": self.url(name), "version": p.version}

    def switch(self, p: DeploymentPlan, candidate: dict[str, Any]) -> dict[str, Any]:
        apps, _ = self._clients()
        previous_image = None
        from kubernetes.client.exceptions import ApiException

        try:
            live = apps.read_namespaced_deployment(APP, self.cfg.namespace)
            previous_image = live.spec.template.spec.containers[0].image
        except ApiException as exc:
            if exc.status != 404:
                raise
        dep, svc = render_manifests(self.cfg, p.version, image=candidate["image"])
        self._apply(dep, svc)
        self.wait_rollout(APP)
        return {"url": self.url(APP), "active": candidate, "replaced": {"image": previous_image,
                                                                       "version": p.previous}}

    def _delete_candidate(self) -> None:
        from kubernetes.client.exceptions import ApiException

        apps, core = self._clients()
        for call in (apps.delete_namespaced_deployment, core.delete_namespaced_service):
            try:
                call(f"{APP}-candidate", self.cfg.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def retire(self, p: DeploymentPlan, switched: dict[str, Any]) -> dict[str, Any]:
        self._delete_candidate()
        return {"stopped": {"name": f"{APP}-candidate"}}

    def rollback(self, p: DeploymentPlan) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        self._delete_candidate()
        apps, _ = self._clients()
        restored = None
        try:
            live = apps.read_namespaced_deployment(APP, self.cfg.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            live = None
        if live is not None and p.previous and \
                (live.metadata.annotations or {}).get("ai-factory/model-version") == p.version:
            dep, svc = render_manifests(self.cfg, p.previous)
            self._apply(dep, svc)
            self.wait_rollout(APP)
            restored = p.previous
        return {"rolled_back": True, "restored": restored}

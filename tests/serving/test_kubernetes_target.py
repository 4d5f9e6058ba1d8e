"""The kubernetes target without a cluster: manifests checked with the Kubernetes client's own models,
and the candidate → rolling update → rollback sequence against an in-memory stand-in of the API."""

from __future__ import annotations

import copy

import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException

from ai_factory.deployment import kubernetes as kt
from ai_factory.deployment.flow import DeploymentPlan

CFG = kt.ServeK8sConfig(namespace="ml", image_repo="registry.example/ai-factory-model", replicas=3)
PLAN = DeploymentPlan(action="deploy", version="v2", tag="ai-factory-model:v2", previous="v1", target="kubernetes",
                      reason="deployed v2 by request")


def _roundtrip(obj, kind: str):
    """Serialise like the API client does, then deserialise into the client's model class."""
    client = ApiClient()
    data = client.sanitize_for_serialization(obj)
    return data, client._ApiClient__deserialize(data, kind)


def test_rendered_manifests_are_valid_kubernetes_objects():
    dep, svc = kt.render_manifests(CFG, "v123")
    data, back = _roundtrip(dep, "V1Deployment")
    assert isinstance(back, k8s.V1Deployment) and back.kind == "Deployment" and data["apiVersion"] == "apps/v1"
    spec = back.spec
    assert spec.replicas == 3 and spec.selector.match_labels.items() <= spec.template.metadata.labels.items()
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update.max_unavailable == 0 and spec.strategy.rolling_update.max_surge == 1
    [c] = spec.template.spec.containers
    assert c.image == "registry.example/ai-factory-model:v123"
    assert c.readiness_probe.http_get.path == "/readyz" and c.readiness_probe.http_get.port == "http"
    assert c.liveness_probe.http_get.path == "/livez"
    assert [p.container_port for p in c.ports] == [kt.CONTAINER_PORT] and c.ports[0].name == "http"
    assert c.resources.requests["cpu"] == "1" and c.volume_mounts[0].mount_path == "/data"
    assert {e.name: e.value for e in c.env}["AI_FACTORY_DATA_ROOT"] == "/data"
    assert spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "ai-factory-data"
    assert back.metadata.annotations["ai-factory/model-version"] == "v123"

    sdata, sback = _roundtrip(svc, "V1Service")
    assert isinstance(sback, k8s.V1Service) and sdata["kind"] == "Service"
    assert sback.spec.selector == spec.selector.match_labels  # the Service reaches exactly these pods
    assert sback.spec.ports[0].target_port == "http" and sback.spec.ports[0].port == kt.CONTAINER_PORT

    docs = list(yaml.safe_load_all(kt.to_yaml(dep, svc)))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"


class FakeAPI:
    """Deployments/Services by name; a rollout completes immediately (what a healthy cluster does)."""

    def __init__(self):
        self.deployments: dict[str, k8s.V1Deployment] = {}
        self.services: dict[str, k8s.V1Service] = {}
        self.calls: list[str] = []

    def _get(self, store, name):
        if name not in store:
            raise ApiException(status=404, reason="Not Found")
        return store[name]

    def read_namespaced_deployment(self, name, ns):
        d = copy.deepcopy(self._get(self.deployments, name))
        n = d.spec.replicas
        d.metadata.generation = 1
        d.status = k8s.V1DeploymentStatus(observed_generation=1, replicas=n, updated_replicas=n, available_replicas=n)
        return d

    def create_namespaced_deployment(self, ns, body):
        self.calls.append(f"create deploy {body.metadata.name}")
        self.deployments[body.metadata.name] = body

    def patch_namespaced_deployment(self, name, ns, body):
        self.calls.append(f"patch deploy {name} -> {body.spec.template.spec.containers[0].image}")
        self.deployments[name] = body

    def delete_namespaced_deployment(self, name, ns):
        self.calls.append(f"delete deploy {name}")
        self._get(self.deployments, name)
        del self.deployments[name]

    def read_namespaced_service(self, name, ns):
        return self._get(self.services, name)

    def create_namespaced_service(self, ns, body):
        self.services[body.metadata.name] = body

    def patch_namespaced_service(self, name, ns, body):
        self.services[name] = body

    def delete_namespaced_service(self, name, ns):
        self._get(self.services, name)
        del self.services[name]


@pytest.fixture
def api(monkeypatch):
    built: list[tuple[str, str]] = []
    # No container engine here: record what would be built and pushed.
    monkeypatch.setattr(kt, "containerize", lambda bento, image, push=True: built.append((bento, image)) or image)
    fake = FakeAPI()
    return fake, kt.KubernetesTarget(CFG, apps=fake, core=fake), built


def _image(api, name):
    return api.deployments[name].spec.template.spec.containers[0].image


def test_candidate_then_rolling_update_then_retire(api):
    fake, target, built = api
    plan = PLAN
    fake.create_namespaced_deployment("ml", kt.render_manifests(CFG, "v1")[0])
    cand = target.start_candidate(plan, "ai-factory-model:bento2")
    assert built == [("ai-factory-model:bento2", "registry.example/ai-factory-model:v2")]
    assert cand["url"] == "http://ai-factory-model-candidate.ml.svc.cluster.local:3000"
    assert _image(fake, kt.APP).endswith(":v1")  # the live Deployment is untouched while the candidate runs
    assert fake.deployments[f"{kt.APP}-candidate"].spec.replicas == 1
    switched = target.switch(plan, cand)
    assert _image(fake, kt.APP).endswith(":v2") and switched["replaced"]["image"].endswith(":v1")
    target.retire(plan, switched)
    assert set(fake.deployments) == {kt.APP}


def test_rollback_restores_the_previous_image_and_removes_the_candidate(api):
    fake, target, _ = api
    plan = PLAN
    fake.create_namespaced_deployment("ml", kt.render_manifests(CFG, "v1")[0])
    target.switch(plan, target.start_candidate(plan, "b2"))
    out = target.rollback(plan)
    assert out == {"rolled_back": True, "restored": "v1"}
    assert _image(fake, kt.APP).endswith(":v1") and set(fake.deployments) == {kt.APP}
    # A failure before the switch: only the candidate goes away.
    target.start_candidate(plan, "b2")
    assert target.rollback(plan) == {"rolled_back": True, "restored": None}
    assert _image(fake, kt.APP).endswith(":v1")

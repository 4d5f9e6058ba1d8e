"""``ai-factory data generate``, ``quality init|validate`` and ``serve manifests`` in-process: each command's
effect on disk (partitions landed, GX project written, day published or quarantined, manifests that parse
as Kubernetes objects), not only its exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ai_factory.cli import main
from ai_factory.storage import Zone

REPO = Path(__file__).resolve().parents[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


@pytest.fixture
def gx_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the committed GX project, so ``quality init`` never rewrites the repository's."""
    from ai_factory.settings import reset_settings

    root = tmp_path / "gx"
    shutil.copytree(REPO / "great_expectations", root)
    monkeypatch.setenv("AI_FACTORY_GX_ROOT", str(root))
    reset_settings()
    yield root
    reset_settings()


def _without_ids(suite: dict) -> dict:
    return {**{k: v for k, v in suite.items() if k != "id"},
            "expectations": [{k: v for k, v in e.items() if k != "id"} for e in suite["expectations"]]}


def test_quality_init_demo_reference_writes_exactly_the_committed_suite(lake, gx_root, capsys):
    """The committed suite is what `ai-factory quality init` builds: every key of every expectation,
    learned bounds and quantile ranges included (regenerate it when the spec or the generator changes)."""
    committed = json.loads((REPO / "great_expectations" / "expectations" / "credit_default.json").read_text())
    code, out = _run(capsys, "quality", "init", "--demo-reference")
    assert code == 0 and out["reference_days"][0] == "2026-01-01" and len(out["reference_days"]) == 7
    written = json.loads((gx_root / "expectations" / "credit_default.json").read_text())
    assert written["id"] != committed["id"]  # init really replaced the suite
    assert _without_ids(written) == _without_ids(committed)


def test_data_generate_lands_the_days_asked_for_and_quality_validate_publishes_or_quarantines(lake, gx_root, capsys):
    code, out = _run(capsys, "data", "generate", "--start", "2026-02-01", "--end", "2026-02-03", "--rows", "120",
                     "--corrupt", "2026-02-03=nulls", "--drift-start", "2026-02-02", "--drift-kind", "covariate")
    assert code == 0
    assert [(d["ds"], d["corruption"], d["drift"]) for d in out["landed"]] == [
        ("2026-02-01", None, None), ("2026-02-02", None, "covariate"), ("2026-02-03", "nulls", "covariate")]
    assert [str(d) for d in lake.partitions(Zone.LANDING)] == ["2026-02-01", "2026-02-02", "2026-02-03"]
    first = lake.read_partition(Zone.LANDING, "2026-02-01")
    assert len(first) == 120 and first["application_id"].is_unique
    assert lake.read_partition(Zone.LANDING, "2026-02-03").isna().to_numpy().any()

    code, good = _run(capsys, "quality", "validate", "--ds", "2026-02-01")
    assert code == 0 and good["status"] == "passed" and good["rows"] == 120
    assert lake.partition_exists(Zone.VALIDATED, "2026-02-01")
    pd.testing.assert_frame_equal(lake.read_partition(Zone.VALIDATED, "2026-02-01"), first)

    code, bad = _run(capsys, "quality", "validate", "--ds", "2026-02-03")
    assert code == 1 and bad["status"] == "quarantined"
    assert [(f["column"], f["expectation"]) for f in bad["failures"]] == [("credit_score", "expect_column_values_to_not_be_null")]
    assert lake.partition_exists(Zone.QUARANTINE, "2026-02-03")
    assert not lake.partition_exists(Zone.VALIDATED, "2026-02-03")


def test_serve_manifests_prints_a_deployment_and_service_of_the_versions_image(monkeypatch, capsys):
    monkeypatch.setenv("AI_FACTORY_K8S_SERVE_IMAGE_REPO", "registry.example.com/ai-factory-model")
    assert main(["serve", "manifests", "--version", "20260301-abc123"]) == 0
    deployment, service = yaml.safe_load_all(capsys.readouterr().out)
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/ai-factory-model:20260301-abc123"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()  # the Service reaches these pods
    assert deployment["metadata"]["namespace"] == service["metadata"]["namespace"]

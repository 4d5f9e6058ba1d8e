"""The whole loop under the real scheduler: ``ai-factory demo`` on a PostgreSQL metadata DB.

Eight simulated days (logical dates driven by ``airflow backfill create``, not wall-clock
days) through Airflow's own api-server, scheduler (LocalExecutor), dag-processor and
triggerer: day 4 lands corrupt, covariate drift starts on day 7. Optuna's storage is a
PostgreSQL database of its own. Everything asserted here is read back from what the run
left: the story JSON the command writes (from the metadata DB), the data zones, the model
registry, and the model server still answering at its stable address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from ai_factory.storage import DataLake, Zone

from pg import recreate_pg_database

pytestmark = [pytest.mark.scenario, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
END = date(2026, 6, 10)
DAYS = 8
START = END - timedelta(days=DAYS - 1)
CORRUPT = START + timedelta(days=3)
DRIFT_START = START + timedelta(days=6)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory):
    airflow_db = recreate_pg_database("ai_factory_loop_airflow")
    optuna_db = recreate_pg_database("ai_factory_loop_optuna")
    root = tmp_path_factory.mktemp("loop")
    out = root / "story.json"
    env = {**os.environ, "AI_FACTORY_OPTUNA_STORAGE": optuna_db}
    cmd = [sys.executable, "-m", "ai_factory.cli", "demo", "--state-dir", str(root / "state"), "--days", str(DAYS),
           "--end", END.isoformat(), "--rows", "1000", "--trials", "3", "--db-url", airflow_db,
           "--json", str(out), "--keep-serving"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=3600)
    story = json.loads(out.read_text()) if out.exists() else None
    sys.stdout.write(proc.stdout)
    yield {"proc": proc, "story": story, "root": root}
    if story is not None:  # stop the model server the run left serving
        from ai_factory.deployment.local import LocalTarget

        model_store = Path(story["model_store"])
        LocalTarget(home=model_store / "serving", port=int(story["serving"]["url"].rsplit(":", 1)[1]),
                    bentoml_home=model_store).stop_all()


def _day(loop, day: date) -> dict:
    [found] = [d for d in loop["story"]["days"] if d["ds"] == day.isoformat()]
    return found


def _runs(loop, dag_id: str, day: date | None = None) -> list[dict]:
    days = [_day(loop, day)] if day else loop["story"]["days"]
    return [r for d in days for r in d["runs"] if r["dag_id"] == dag_id]


def test_the_scenario_runs_to_completion(loop):
    proc = loop["proc"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [d["ds"] for d in loop["story"]["days"]] == [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]


def test_quality_runs_each_day_and_the_corrupt_day_is_quarantined(loop):
    lake = DataLake(loop["story"]["data_root"])
    for i in range(DAYS):
        day = START + timedelta(days=i)
        [run] = _runs(loop, "data_quality", day)
        assert run["run_type"] == "backfill"
        if day == CORRUPT:
            assert (_day(loop, day)["quality"], run["state"]) == ("quarantined", "failed")
            assert "expect_column_values_to_be_between" in _day(loop, day)["detail"]
        else:
            assert (_day(loop, day)["quality"], run["state"]) == ("passed", "success"), day
    assert lake.partitions(Zone.QUARANTINE) == [CORRUPT]
    assert len(lake.partitions(Zone.VALIDATED)) == DAYS - 1


def test_nightly_training_and_every_version_gated_with_its_reason(loop):
    nightly = [r for r in _runs(loop, "training") if r["triggered_by"] == ["validated_data"]]
    assert len(nightly) == DAYS - 1  # one per validated day
    trained = [r for r in nightly if r["tasks"]["plan"] == "success"]
    assert trained and all(r["state"] == "success" for r in trained)
    # The first two validated days are too few for a window: skipped, not failed.
    assert [r["tasks"]["plan"] for r in nightly[:2]] == ["skipped", "skipped"]
    models = [m for d in loop["story"]["days"] for m in d["models"]]
    assert len(models) == len([r for r in _runs(loop, "training") if r["tasks"].get("register") == "success"])
    for m in models:
        assert m["decision"] in ("approved", "rejected") and m["reason"], m
    assert any(m["decision"] == "approved" for m in models)


def test_a_champion_is_deployed_serving_and_predictions_are_logged(loop):
    import httpx

    serving = loop["story"]["serving"]
    assert serving["champion"] is not None
    assert serving["prediction"]["model_version"] == serving["champion"]
    assert any(r["state"] == "success" for r in _runs(loop, "deployment"))
    # The server the run left behind still answers at the stable address.
    resp = httpx.post(f"{serving['url']}/predict_batch",
                      json={"records": [dict(loop["story"]["serving"]["record"])]}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model_version"] == serving["champion"]
    lake = DataLake(loop["story"]["data_root"])
    served_days = [date.fromisoformat(d["ds"]) for d in loop["story"]["days"] if d["served"]]
    assert served_days and set(served_days) <= set(lake.partitions(Zone.PREDICTIONS))
    for d in served_days:
        logged = lake.read_partition(Zone.PREDICTIONS, d)
        assert len(logged) >= _day(loop, d)["served"]
        assert set(logged["model_version"]) <= {m["version"] for x in loop["story"]["days"] for m in x["models"]}


def test_drift_is_detected_from_day_seven_and_triggers_retraining(loop):
    checked = [d for d in loop["story"]["days"] if d["drift"] is not None]
    before = [d for d in checked if date.fromisoformat(d["ds"]) < DRIFT_START]
    assert before and not any(d["drift"]["drift"] for d in before)
    day7 = _day(loop, DRIFT_START)
    assert day7["drift"]["drift"], day7["drift"]
    assert day7["drift"]["current_source"] == "predictions"  # the day's served traffic, not the batch file
    assert day7["drift"]["reference"].startswith("registry:"), day7["drift"]  # the champion's stored sample
    drift_runs = [r for r in _runs(loop, "training") if "drift_detected" in r["triggered_by"]]
    assert drift_runs and all(r["state"] == "success" for r in drift_runs)
    retrained = [m for d in loop["story"]["days"] if date.fromisoformat(d["ds"]) >= DRIFT_START for m in d["models"]]
    assert retrained and all(m["decision"] in ("approved", "rejected") and m["reason"] for m in retrained)

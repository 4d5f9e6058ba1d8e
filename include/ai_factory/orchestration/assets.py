"""The Airflow Assets that chain the factory's DAGs (data-aware scheduling).

=====================  ===================  =========================================
asset                  emitted by           extras
=====================  ===================  =========================================
VALIDATED_DATA         data_quality         ds, rows, path
DRIFT_DETECTED         drift_monitoring     ds, share, columns, reason
MODEL_CANDIDATE        training             version, metrics, ds
APPROVED_CANDIDATE     model_gate           version, decision
CHAMPION               deployment           version, previous
=====================  ===================  =========================================
"""

from __future__ import annotations

from airflow.sdk import Asset

VALIDATED_DATA = Asset(name="validated_data", uri="ai-factory://data/validated", group="data")
DRIFT_DETECTED = Asset(name="drift_detected", uri="ai-factory://monitoring/drift", group="monitoring")
MODEL_CANDIDATE = Asset(name="model_candidate", uri="ai-factory://models/candidate", group="models")
APPROVED_CANDIDATE = Asset(name="approved_candidate", uri="ai-factory://models/approved", group="models")
CHAMPION = Asset(name="champion", uri="ai-factory://models/champion", group="models")

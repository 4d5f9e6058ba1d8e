"""Drift monitoring: is today's data (and the model on it) still like the reference?

Modules, in the order a check runs:

* :mod:`.config` — typed rules and options (``config/drift.yaml``).
* :mod:`.assembly` — the day's current data (served predictions, else validated) and the
  reference (the champion's sample through a :class:`~.assembly.ReferenceProvider`, else a
  window of validated days).
* :mod:`.stattests` — the fast path: Evidently's default per-column tests on every row.
* :mod:`.quality` — model quality vs the reference when labels are known.
* :mod:`.decision` — the rules (share of drifted columns, key columns, quality margins).
* :mod:`.evidently_report` — the Evidently HTML/JSON report for analysts.
* :mod:`.summary` — ``summary.json``, the record the UI reads.
* :mod:`.monitor` — :func:`~.monitor.run_drift_check`, all of the above for one day.
"""

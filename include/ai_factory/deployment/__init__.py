"""Deployment: build a Bento per model version, run it beside the live one, smoke-test, switch, roll back.

* :mod:`~ai_factory.deployment.bento` — ``bentoml build`` of ``bentos/`` for one registry version.
* :mod:`~ai_factory.deployment.smoke` — served predictions vs the registry model's offline ones.
* :mod:`~ai_factory.deployment.local` — the embedded target: managed ``bentoml serve`` processes
  behind a stable address (:mod:`~ai_factory.deployment.front`).
* :mod:`~ai_factory.deployment.kubernetes` — Deployment/Service manifests of the Bento image,
  applied with the Kubernetes client.
* :mod:`~ai_factory.deployment.flow` — the steps the ``deployment`` DAG runs, with rollback.
"""

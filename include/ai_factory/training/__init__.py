"""Training: the tabular model, its training loop, Optuna tuning, evaluation and the entry point.

Modules (light to heavy):

* ``config`` — ``TrainParams`` and the Optuna search space (``config/search_space.yaml``).
* ``window`` — the training window: last K validated partitions, time-based split.
* ``preprocess`` — numeric normalisation and category vocabularies learned on the train split.
* ``model`` — the MLP with categorical embeddings and binary/multiclass/regression heads.
* ``loop`` — training with early stopping, determinism, per-epoch checkpoints and resume.
* ``metrics`` — evaluation metrics per task, the tuning objective, a trivial baseline.
* ``tuning`` — Optuna storage/sampler/pruner/heartbeat wiring for N workers on one study.
* ``steps`` — window → tune → fit → evaluate → register as functions over URIs.
* ``predictor`` — ``load_predictor(version).predict_proba(df)`` for every consumer.
* ``cli`` — ``ai-factory train …`` / ``ai-factory models …`` (the container's command).

Importing this package is cheap; torch, optuna and bentoml load in the modules that need them.
The Kubernetes pods for tune/fit are in ``ai_factory.orchestration.training_pods``.
"""

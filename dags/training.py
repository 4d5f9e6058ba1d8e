"""
### training — tune, fit, evaluate and register a model on the latest validated data

Runs on `validated_data` (nightly retraining) or `drift_detected`, or by hand with the Params.

1. **plan** — last `window_days` validated partitions → train / validation / holdout (newest day);
   skips the run (not a failure) while fewer than 3 validated partitions exist.
2. **choose_compute** — `local` processes, or `kubernetes` pods with `gpus` × `nvidia.com/gpu`.
3. **tune** — `workers` mapped workers on one Optuna study (TPE, median pruning, heartbeats).
4. **fit** — best trial's parameters, a checkpoint every epoch (a retry resumes).
5. **evaluate** — holdout ROC AUC, log loss, accuracy, F1, calibration vs a trivial baseline.
6. **register** — immutable version in the model store; emits `model_candidate` {version, metrics, ds}.

Studies: `optuna-dashboard $AI_FACTORY_OPTUNA_STORAGE`; versions: `ai-factory models list`; docs/training.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, TaskGroup, dag, task

from ai_factory.orchestration.assets import DRIFT_DETECTED, MODEL_CANDIDATE, VALIDATED_DATA
from ai_factory.orchestration.defaults import default_args
from ai_factory.orchestration.training_pods import TrainingPod, training_pod_kwargs
from ai_factory.settings import get_settings

SETTINGS = get_settings()

LOCAL_START = "local.open_study"
K8S_START = "kubernetes.pod_commands"


@dag(
    dag_id="training",
    schedule=(VALIDATED_DATA | DRIFT_DETECTED),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=12),
    max_consecutive_failed_dag_runs=5,
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=2), execution_timeout=timedelta(hours=4)),
    tags=["ai-factory", "training", "optuna"],
    doc_md=__doc__,
    params={
        "window_days": Param(SETTINGS.train_window_days, type="integer", minimum=3, maximum=365, title="Window (days)",
                             description="Validated partitions to use; the newest is the holdout."),
        "trials": Param(SETTINGS.train_trials, type="integer", minimum=1, maximum=1000, title="Optuna trials",
                        description="Finished (complete or pruned) trials for the whole study."),
        "workers": Param(SETTINGS.train_workers, type="integer", minimum=1, maximum=32, title="Tuning workers",
                         description="Parallel workers (mapped tasks) sharing the study."),
        "compute": Param("local", type="string", enum=["local", "kubernetes"], title="Compute",
                         description="Local processes, or Kubernetes pods of the training image."),
        "gpus": Param(1, type="integer", minimum=0, maximum=8, title="GPUs per pod",
                      description="nvidia.com/gpu per pod when compute is kubernetes (0 = CPU pod)."),
        "end_date": Param(None, type=["null", "string"], format="date", title="Newest partition",
                          description="Train on partitions up to this day (default: the newest)."),
    },
)
def training() -> None:
    # Every task after plan reads the run's TrainingPlan from its JSON in XCom (docs/architecture.md, Hand-offs).
    @task(multiple_outputs=True)
    def plan(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from ai_factory.training.plan import RunOptions, plan_run
        from ai_factory.training.window import NotEnoughData

        try:
            return plan_run(str(run_id), RunOptions.from_params(params or {})).model_dump(mode="json")
        except NotEnoughData as exc:  # a new dataset's first days: nothing to train on yet, not a failure
            raise AirflowSkipException(str(exc)) from None

    @task.branch
    def choose_compute(run: dict[str, Any], local_task: str, k8s_task: str) -> str:
        from ai_factory.training.plan import TrainingPlan

        return k8s_task if TrainingPlan.model_validate(run).compute == "kubernetes" else local_task

    run = plan()

    with TaskGroup("local"):
        @task
        def open_study(run: dict[str, Any]) -> list[int]:
            from ai_factory.training.plan import TrainingPlan
            from ai_factory.training.steps import open_run_study

            p = TrainingPlan.model_validate(run)
            open_run_study(p.study, p.window)
            return list(p.workers)

        @task
        def tune(worker: int, run: dict[str, Any]) -> dict[str, Any]:
            from ai_factory.training.plan import TrainingPlan
            from ai_factory.training.steps import tune_worker

            p = TrainingPlan.model_validate(run)
            return tune_worker(p.window, p.study, n_trials=p.trials, workers=p.n_workers, worker=worker,
                               threads=p.threads, data_root=p.data_root)

        @task
        def fit(run: dict[str, Any]) -> dict[str, Any]:
            from ai_factory.training.plan import TrainingPlan
            from ai_factory.training.steps import fit as fit_model

            p = TrainingPlan.model_validate(run)
            return fit_model(p.window, p.model, study=p.study, checkpoint_uri=p.checkpoints, data_root=p.data_root)

        local_start, local_fit = open_study(run), fit(run)
        tune.partial(run=run).expand(worker=local_start) >> local_fit

    with TaskGroup("kubernetes"):
        @task
        def pod_commands(run: dict[str, Any]) -> list[list[str]]:
            from ai_factory.training.plan import TrainingPlan

            return [list(cmd) for cmd in TrainingPlan.model_validate(run).tune_commands]

        pod = training_pod_kwargs(gpus="{{ params.gpus }}")
        k8s_start = pod_commands(run)
        # TrainingPod: the pod as plain data; the KubernetesPodOperator is built when it runs.
        k8s_tune = TrainingPod.partial(task_id="tune", name="ai-factory-tune", **pod).expand(arguments=k8s_start)
        # multiple_outputs: the plan's fit_command is an XCom of its own, rendered into the pod's arguments.
        k8s_fit = TrainingPod(task_id="fit", name="ai-factory-fit", arguments=run["fit_command"], **pod)
        k8s_tune >> k8s_fit

    @task(trigger_rule="none_failed_min_one_success")
    def evaluate(run: dict[str, Any]) -> dict[str, Any]:
        from ai_factory.training.plan import TrainingPlan
        from ai_factory.training.steps import evaluate as evaluate_model

        p = TrainingPlan.model_validate(run)
        return evaluate_model(p.window, p.model, data_root=p.data_root, output=p.evaluation)

    @task(outlets=[MODEL_CANDIDATE])
    def register(run: dict[str, Any], evaluation: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        from ai_factory.training.plan import TrainingPlan
        from ai_factory.training.steps import register as register_version

        p = TrainingPlan.model_validate(run)
        result = register_version(p.window, p.model, p.evaluation, run_key=p.run_key, data_root=p.data_root)
        outlet_events[MODEL_CANDIDATE].extra = {"version": result["version"], "metrics": result["metrics"],
                                                "ds": p.partitions.holdout[-1]}
        return result

    choose_compute(run, LOCAL_START, K8S_START) >> [local_start, k8s_start]
    scores = evaluate(run)
    [local_fit, k8s_fit] >> scores
    register(run, scores)


training()

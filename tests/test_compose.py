"""docker-compose.yaml against what the code expects (no Docker engine runs here).

The file is parsed with PyYAML (anchors and ``<<`` merges resolved) and checked against the
code, not against a copy of itself: the environment variables the package reads (scanned
from ``include/``), the training pods' storage layout, the Dockerfile's stages, the CLI's
parser, and the cluster policy that routes the deployment DAG to the model server. When the
``docker compose`` plugin is installed, ``docker compose config -q`` validates the file
against the Compose specification too.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
POLICY = REPO / "deploy" / "compose" / "airflow_local_settings.py"

AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker")
REQUIRED_SERVICES = {"postgres", "redis", "airflow-init", "model-server", "optuna-db", "optuna-dashboard",
                     *AIRFLOW_SERVICES}
# Services whose code touches the data zones or the model store: tasks (worker), the deployment
# DAG and the served models (model-server), the UI plugin's report browser (api-server), and
# the init container that prepares the volume.
NEEDS_DATA = {"airflow-worker", "model-server", "airflow-apiserver", "airflow-init"}
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` with the defaults (``$$`` is a literal ``$``)."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"<{name}>"
        return ""

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (named volume or host path) for short-syntax volumes."""
    out = {}
    for v in service.get("volumes") or []:
        source, target = v.split(":")[:2]
        out[target] = source
    return out


def long_running(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that stay up: not the one-shot init, not the on-demand CLI (a compose profile)."""
    return {n: s for n, s in services.items() if n != "airflow-init" and not s.get("profiles")}


def variables_read_by_code() -> set[str]:
    """Every AI_FACTORY_* / BENTOML_* name that appears as a string literal in the package."""
    names: set[str] = set()
    for py in (REPO / "include" / "ai_factory").rglob("*.py"):
        names |= set(re.findall(r"['\"]((?:AI_FACTORY|BENTOML)_[A-Z0-9_]+)['\"]", py.read_text()))
    return names


# -- services, image ------------------------------------------------------------------------------------
def test_every_service_of_the_stack_is_there(services):
    assert REQUIRED_SERVICES <= set(services), REQUIRED_SERVICES - set(services)


def test_airflow_runs_celery_on_postgres_and_redis(services):
    for name in (*AIRFLOW_SERVICES, "model-server", "airflow-init"):
        env = env_of(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert db.scheme.startswith("postgresql") and db.hostname == "postgres", name
        assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis", name
        assert urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+")).hostname == "postgres", name
        # The execution API must be reachable from workers under the api-server's service name.
        assert urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == "airflow-apiserver", name
        # Tokens the api-server signs must verify on every worker: one shared secret, and a required one.
        assert "AIRFLOW_JWT_SECRET:?" in str(services[name]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"])
    commands = {n: str(services[n]["command"]) for n in AIRFLOW_SERVICES}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
                        "airflow-worker": "celery worker --queues default"}


def dockerfile_stages() -> dict[str, str]:
    """stage name -> its FROM image."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^FROM\s+(\S+)\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M)}


def test_airflow_services_run_the_image_built_from_the_project(services):
    stages = dockerfile_stages()
    from importlib.metadata import version

    airflow_version = re.search(r"^ARG AIRFLOW_VERSION=(\S+)", DOCKERFILE.read_text(), re.M).group(1)
    assert stages["airflow"] == "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}"
    # The image's Airflow is the one the project pins and tests with.
    assert airflow_version == version("apache-airflow")
    assert f"apache-airflow[postgres]=={airflow_version}" in (REPO / "requirements.txt").read_text()
    images = set()
    for name in (*AIRFLOW_SERVICES, "model-server", "airflow-init", "airflow-cli"):
        svc = services[name]
        build = svc["build"]
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["target"] in stages, (name, build["target"], stages)
        assert build["target"] == "airflow"
        images.add(svc["image"])
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (svc.get("environment") or {}), name
    assert len(images) == 1, f"every Airflow service must run the same image, got {images}"
    # What the image bakes in is what the compose file points Airflow at.
    text = DOCKERFILE.read_text()
    for folder in ("include", "dags", "plugins", "great_expectations", "bentos"):
        assert f"COPY --chown=airflow:0 {folder} /opt/ai-factory/{folder}" in text, folder
        assert (REPO / folder).is_dir()
    env = env_of(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/ai-factory/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/ai-factory/plugins"
    assert env["AI_FACTORY_HOME"] == "/opt/ai-factory"


# -- environment the code reads ---------------------------------------------------------------------------
def test_every_ai_factory_variable_the_stack_sets_is_read_by_the_code(services):
    read = variables_read_by_code()
    assert {"AI_FACTORY_DATA_ROOT", "BENTOML_HOME", "AI_FACTORY_OPTUNA_STORAGE"} <= read  # the scan works
    set_by_stack = {(name, var) for name, svc in services.items() for var in env_of(svc)
                    if var.startswith(("AI_FACTORY_", "BENTOML_"))}
    unknown = sorted((n, v) for n, v in set_by_stack if v not in read)
    assert not unknown, f"set in docker-compose.yaml but read nowhere in include/: {unknown}"
    dockerfile_vars = set(re.findall(r"\b((?:AI_FACTORY|BENTOML)_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert dockerfile_vars <= read, dockerfile_vars - read


def test_settings_accept_every_value_the_stack_sets(services, monkeypatch):
    from ai_factory.settings import get_settings, reset_settings

    for name in (*AIRFLOW_SERVICES, "model-server"):
        for var, value in env_of(services[name]).items():
            if var.startswith("AI_FACTORY_") or var == "BENTOML_HOME":
                monkeypatch.setenv(var, value)
        reset_settings()
        try:
            s = get_settings()
            assert s.data_root == "/data" and str(s.model_store) == "/data/bentoml", name
            assert s.compute == "local" and s.serve_port == 3000, name
            assert urlsplit(s.optuna_storage).hostname == "optuna-db", name
        finally:
            reset_settings()


def test_the_data_volume_is_one_volume_at_the_same_path_everywhere(compose, services):
    from ai_factory.orchestration.training_pods import training_pod_kwargs
    from ai_factory.settings import KubernetesSettings

    sources, roots = set(), set()
    for name, svc in services.items():
        env = env_of(svc)
        if "AI_FACTORY_DATA_ROOT" not in env:
            assert name not in NEEDS_DATA, f"{name} needs the data zones but has no AI_FACTORY_DATA_ROOT"
            continue
        root = env["AI_FACTORY_DATA_ROOT"]
        m = mounts(svc)
        assert root in m, f"{name}: AI_FACTORY_DATA_ROOT={root} is not a mounted volume ({m})"
        assert Path(env["BENTOML_HOME"]).is_relative_to(root), f"{name}: the model store is off the shared volume"
        sources.add(m[root])
        roots.add(root)
    assert NEEDS_DATA <= {n for n, s in services.items() if "AI_FACTORY_DATA_ROOT" in env_of(s)}
    assert len(sources) == 1 and len(roots) == 1, (sources, roots)
    (volume,) = sources
    assert volume in compose["volumes"], f"{volume} must be a named volume shared by the services"
    # The same layout as the GPU training pods on Kubernetes, so paths in XCom and in the
    # registry mean the same thing in a container, a pod and the compose stack.
    k8s = KubernetesSettings()
    pod_env = dict(training_pod_kwargs(k8s)["env_vars"])
    (root,) = roots
    assert root == k8s.data_mount_path == pod_env["AI_FACTORY_DATA_ROOT"]
    assert env_of(services["airflow-worker"])["BENTOML_HOME"] == pod_env["BENTOML_HOME"]


def test_optuna_has_its_own_database_and_the_dashboard_reads_it(services):
    worker = env_of(services["airflow-worker"])
    optuna = urlsplit(worker["AI_FACTORY_OPTUNA_STORAGE"])
    airflow_db = urlsplit(worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert optuna.scheme == "postgresql+psycopg2"
    assert (optuna.hostname, optuna.path) != (airflow_db.hostname, airflow_db.path)
    assert optuna.hostname == "optuna-db"
    db_env = env_of(services["optuna-db"])
    assert optuna.path == "/" + db_env["POSTGRES_DB"] and optuna.username == db_env["POSTGRES_USER"]
    assert optuna.password == db_env["POSTGRES_PASSWORD"]
    dashboard = [interpolate(str(a)) for a in services["optuna-dashboard"]["command"]]
    assert dashboard[0] == worker["AI_FACTORY_OPTUNA_STORAGE"]
    assert services["optuna-dashboard"]["depends_on"]["optuna-db"]["condition"] == "service_healthy"


# -- health and start order ----------------------------------------------------------------------------------
def test_every_long_running_service_has_a_health_check(services):
    for name, svc in long_running(services).items():
        hc = svc.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no health check"
        assert hc["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc.get("restart") in ("always", "unless-stopped"), f"{name} is not restarted"


def test_health_checks_probe_what_each_service_serves(services):
    api = services["airflow-apiserver"]
    assert any(p.endswith(":8080") for p in api["ports"])
    assert "http://localhost:8080/api/v2/version" in api["healthcheck"]["test"]
    sched = services["airflow-scheduler"]
    assert env_of(sched)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "http://localhost:8974/health" in sched["healthcheck"]["test"]
    assert "DagProcessorJob" in services["airflow-dag-processor"]["healthcheck"]["test"][1]
    assert "TriggererJob" in services["airflow-triggerer"]["healthcheck"]["test"][1]
    for worker in ("airflow-worker", "model-server"):
        assert "inspect ping" in services[worker]["healthcheck"]["test"][1], worker


def test_start_order_waits_for_healthy_dependencies(services):
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)
            if cond["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy, which it never is"
    for name in (*AIRFLOW_SERVICES, "model-server"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    for worker in ("airflow-worker", "model-server"):  # tasks call the execution API
        assert services[worker]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    init = env_of(services["airflow-init"])
    assert init["_AIRFLOW_DB_MIGRATE"] == "true"


# -- the model server ------------------------------------------------------------------------------------------
def load_policy() -> Any:
    spec = importlib.util.spec_from_file_location("aif_compose_policy", POLICY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_deployment_dag_runs_on_the_model_server(services, dagbag):
    policy = load_policy()
    queue = policy.SERVING_QUEUE
    model_server = "\n".join(services["model-server"]["command"])
    assert f"celery worker --queues {queue}" in model_server
    assert queue not in str(services["airflow-worker"]["command"])
    # The image installs the policy where Airflow imports it from ($AIRFLOW_HOME/config).
    assert ("COPY --chown=airflow:0 deploy/compose/airflow_local_settings.py "
            "/opt/airflow/config/airflow_local_settings.py") in DOCKERFILE.read_text()
    routed = {}
    for dag_id in ("deployment", "data_quality", "drift_monitoring", "training"):
        for task in dagbag.dags[dag_id].tasks:
            probe = SimpleNamespace(dag_id=dag_id, task_id=task.task_id, queue=task.queue)
            policy.task_policy(probe)
            routed[(dag_id, task.task_id)] = probe.queue
    assert {q for (d, _), q in routed.items() if d == "deployment"} == {queue}
    assert queue not in {q for (d, _), q in routed.items() if d != "deployment"}


def test_model_server_publishes_the_stable_address_and_restores_the_champion(services):
    from ai_factory.cli import build_parser

    svc = services["model-server"]
    env = env_of(svc)
    assert env["AI_FACTORY_SERVE_HOST"] == "0.0.0.0"
    assert any(interpolate(p).endswith(f":{env['AI_FACTORY_SERVE_PORT']}") for p in svc["ports"])
    script = svc["command"][-1]
    ensure = re.search(r"ai-factory (serve ensure[^\\\n|]*)", script).group(1).split()
    args = build_parser().parse_args(ensure)  # the command the container runs is a real one
    assert args.func.__name__ == "cmd_serve_ensure" and args.forget_processes is True
    assert svc["build"] == services["airflow-worker"]["build"]


# -- interpolation -----------------------------------------------------------------------------------------------
def test_every_variable_the_file_reads_is_documented(compose):
    text = COMPOSE.read_text().replace("$$", "")
    used = {m.group(1) for m in _VAR.finditer(text)}
    example = (REPO / ".env.example").read_text()
    missing = sorted(v for v in used if not re.search(rf"^{v}=", example, re.M))
    assert not missing, f"variables used in docker-compose.yaml but absent from .env.example: {missing}"


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the docker compose plugin is not installed ({(probe.stderr or probe.stdout).strip()[:120]})")
    env_file = tmp_path / ".env"
    env_file.write_text("AIRFLOW_JWT_SECRET=test-secret\n")
    proc = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    missing = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--env-file", "/dev/null", "config", "-q"],
                             capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode != 0 and "AIRFLOW_JWT_SECRET" in missing.stderr

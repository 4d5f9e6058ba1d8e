# syntax=docker/dockerfile:1.7
# Two images from one file, both with the same pinned ai-factory code:
#
# * `train` (the default, last stage): `ai-factory train window|tune|fit|evaluate` on NVIDIA
#   GPUs or CPU. KubernetesPodOperator pods run it with `cmds=["ai-factory"]` (see
#   include/ai_factory/orchestration/training_pods.py).
#
#     docker build -t ai-factory-train:0.1.0 --build-arg GIT_SHA=$(git rev-parse --short=12 HEAD) .
#     # CPU-only image (smaller):
#     docker build -t ai-factory-train:0.1.0-cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#
#   The CUDA wheels bundle the CUDA runtime and cuDNN, so a slim Python base is enough: GPU
#   nodes need only the NVIDIA driver and the device plugin that advertises nvidia.com/gpu.
#
# * `airflow`: the official Airflow image plus this project (DAGs, plugin, GX context, Bento
#   service, the package and its pinned dependencies). docker-compose.yaml builds it for every
#   Airflow component and the model server; the Helm chart runs it as `images.airflow`.
#
#     docker build --target airflow -t ai-factory-airflow:0.1.0 .
#
ARG PYTHON_VERSION=3.11
ARG AIRFLOW_VERSION=3.3.2

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt constraints.txt /src/
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
# Only what training imports (no Airflow, no BentoML): the same pins as the Airflow workers.
RUN pip install -c /src/constraints.txt \
        optuna psycopg2-binary SQLAlchemy pandas pyarrow numpy scipy scikit-learn \
        pyyaml pydantic fsspec
COPY pyproject.toml README.md /src/
COPY include /src/include
RUN pip install --no-deps /src

# -- the Airflow image (api-server, scheduler, dag-processor, triggerer, Celery worker, model server)
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow
ARG AIRFLOW_VERSION
ARG TORCH_VERSION=2.13.0
# Airflow workers train on CPU (compute = local); GPU training runs in the `train` image's pods.
ARG AIRFLOW_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG GIT_SHA=unknown
USER root
# Empty named volumes mounted here inherit this ownership (the airflow user, group 0).
RUN mkdir -p /data /opt/ai-factory && chown -R airflow:0 /data /opt/ai-factory
USER airflow
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/ai-factory/
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${AIRFLOW_TORCH_INDEX_URL}"
# The project's pins on top of the image's Airflow (kept at the same version); test and lint
# tools stay out of the runtime image. The image's own Celery provider is left as it is.
RUN grep -vE '^(pytest|schemathesis|ruff)==' /opt/ai-factory/requirements.txt > /tmp/runtime.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/runtime.txt \
        -c /opt/ai-factory/constraints.txt \
    && rm /tmp/runtime.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/ai-factory/
COPY --chown=airflow:0 include /opt/ai-factory/include
RUN pip install --no-cache-dir --no-deps /opt/ai-factory
COPY --chown=airflow:0 dags /opt/ai-factory/dags
COPY --chown=airflow:0 plugins /opt/ai-factory/plugins
COPY --chown=airflow:0 great_expectations /opt/ai-factory/great_expectations
COPY --chown=airflow:0 bentos /opt/ai-factory/bentos
# Cluster policy: pins the deployment DAG to the model server's Celery queue (see the file).
COPY --chown=airflow:0 deploy/compose/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py
ENV AI_FACTORY_HOME=/opt/ai-factory \
    AI_FACTORY_CODE_VERSION=${GIT_SHA} \
    AI_FACTORY_DATA_ROOT=/data \
    BENTOML_HOME=/data/bentoml \
    BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/ai-factory/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/ai-factory/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# -- the training image (default target)
FROM python:${PYTHON_VERSION}-slim-bookworm AS train
ARG GIT_SHA=unknown
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AI_FACTORY_CODE_VERSION=${GIT_SHA} \
    AI_FACTORY_DATA_ROOT=/data \
    AI_FACTORY_COMPUTE=kubernetes
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin trainer
USER 1000
WORKDIR /home/trainer
# The pod's command is `ai-factory train …`; without arguments, show what it can do.
CMD ["ai-factory", "train", "--help"]

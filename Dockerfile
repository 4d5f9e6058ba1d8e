# syntax=docker/dockerfile:1.7
# The training image: `ai-factory train window|tune|fit|evaluate` on NVIDIA GPUs or CPU.
# KubernetesPodOperator pods run it with `cmds=["ai-factory"]` (see
# include/ai_factory/orchestration/training_pods.py).
#
#   docker build -t ai-factory-train:0.1.0 --build-arg GIT_SHA=$(git rev-parse --short=12 HEAD) .
#   # CPU-only image (smaller):
#   docker build -t ai-factory-train:0.1.0-cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#
# The CUDA wheels bundle the CUDA runtime and cuDNN, so a slim Python base is enough: GPU
# nodes need only the NVIDIA driver and the device plugin that advertises nvidia.com/gpu.
ARG PYTHON_VERSION=3.11

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

FROM python:${PYTHON_VERSION}-slim-bookworm
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

# syntax=docker/dockerfile:1
# dgm-operator image: `docker build -t dgm-operator:0.1.0 .`
# Stage 1 builds the package and its dependencies as wheels; stage 2 installs those wheels
# only (no source tree, no build tools) and runs as a non-root numeric user, so the pod
# can use runAsNonRoot and a read-only root file system (only /tmp is written, an emptyDir).

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    TMPDIR=/tmp
# Byte code is compiled here, at install time as root, so nothing is written at run time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels dgm-operator \
 && dgm run --help >/dev/null
LABEL org.opencontainers.image.title="dgm-operator" \
      org.opencontainers.image.description="Kubernetes operator running a Darwin Goedel Machine style self-improvement loop for AI agents" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
WORKDIR /tmp
# 8080: liveness (/healthz), 8081: readiness (/readyz, the replica that acts), 9090: Prometheus metrics
EXPOSE 8080 8081 9090
ENTRYPOINT ["dgm", "run"]

# syntax=docker/dockerfile:1
# dgm-operator images. With Docker (a registry reachable):
#   docker build -t dgm-operator:dev .                         the operator (the default target)
#   docker build --target sample-agent -t dgm-sample-agent:dev .   the sample agent (A2A server)
#   docker build --target grader -t dgm-grader:dev .   the grader + the sample agent's task suite
# Without a registry, `make image` (hack/build-images.sh) builds a Debian base with mmdebstrap
# and passes it as BASE_IMAGE to podman. Any base with python3 (3.11+) and its venv module works.
#
# The builder stage installs from PyPI, pinned by image-constraints.txt (hack/lock-image-deps.sh
# regenerates it), into virtualenvs that the runtime stages copy. The host's CA bundle may be handed in
# as the build secret `ca_bundle` (for TLS-intercepting proxies): it is mounted for the pip
# step only and never stored in a layer. The runtime stages copy the installed packages only
# (no source tree, no build tools) and run as the numeric user 65532, which has a
# passwd entry: kopf asks for the user name, and containerd adds none of its own.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONSTRAINT=/src/image-constraints.txt
WORKDIR /src
COPY image-constraints.txt pyproject.toml README.md ./
COPY operator ./operator
COPY devtools ./devtools
# /opt/dgm: the operator's virtualenv (dgm-operator and its pinned dependencies, byte code
# compiled now, as root, so nothing is written at run time). /opt/dgm-dev: the dev
# distribution (the sample agent) and its A2A server's packages (a2a-sdk[http-server] =
# starlette + sse-starlette, and uvicorn), without optuna, which only the benchmarks use;
# their own dependencies (anyio, h11, click) are already in /opt/dgm.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv /opt/dgm \
 && /opt/dgm/bin/pip install . \
 && /opt/dgm/bin/pip install --no-deps --target /opt/dgm-dev ./devtools starlette sse-starlette uvicorn \
 && /opt/dgm/bin/python3 -m pip uninstall -y -q pip setuptools

# The operator's runtime: the virtualenv only (no source tree, no pip, no build tools).
FROM ${BASE_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/dgm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    TMPDIR=/tmp
COPY --from=builder /opt/dgm /opt/dgm
# The check imports the operator's runtime modules (kopf handlers, the Kubernetes client),
# not only the CLI, so a missing dependency fails the build rather than the pod.
RUN python3 -c 'import dgm_operator.controller.handlers, dgm_operator.controller.run, dgm_operator.grader.evaluate' \
 && dgm run --help >/dev/null \
 && dgm evaluate --help >/dev/null \
 && if ! grep -q '^dgm:' /etc/passwd; then \
      echo 'dgm:x:65532:65532:dgm-operator:/tmp:/usr/sbin/nologin' >>/etc/passwd \
   && echo 'dgm:x:65532:' >>/etc/group; fi
LABEL org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
WORKDIR /tmp

# The sample agent (dgm-sample-agent serve: A2A on a port), the quickstart's Deployment and the
# candidate container of its evaluations. It has no task suite: the answers are the grader's.
FROM runtime AS sample-agent
ENV PYTHONPATH=/opt/dgm-dev PATH=/opt/dgm-dev/bin:/opt/dgm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=builder /opt/dgm-dev /opt/dgm-dev
RUN dgm-sample-agent --help >/dev/null \
 && python3 -c 'import dgm_dev.sample_agent.server, dgm_dev.sample_agent.agent'
LABEL org.opencontainers.image.title="dgm-sample-agent" \
      org.opencontainers.image.description="The dgm-operator quickstart's sample QA agent (A2A)"
USER 65532:65532
ENTRYPOINT []
CMD ["dgm-sample-agent", "serve", "--workspace", "/workspace"]

# The grader of the quickstart: `dgm grade` with the sample agent's task suite (questions and
# expected answers), which the agent's image does not hold. Other suites: COPY your own.
FROM runtime AS grader
COPY devtools/suites/sample-qa.yaml /opt/dgm/suites/sample-qa.yaml
RUN dgm grade --help >/dev/null && dgm egress-check --help >/dev/null \
 && python3 -c 'import dgm_operator.grader.grade, dgm_operator.grader.agents'
LABEL org.opencontainers.image.title="dgm-grader" \
      org.opencontainers.image.description="The dgm-operator grader with the sample agent's task suite"
ENTRYPOINT []
CMD ["dgm", "grade", "--help"]

# The operator (the default target, so a plain `docker build .` makes it).
FROM runtime AS operator
LABEL org.opencontainers.image.title="dgm-operator" \
      org.opencontainers.image.description="Kubernetes operator running a Darwin Goedel Machine style self-improvement loop for AI agents"
# 8080: liveness (/healthz), 8081: readiness (/readyz, the replica that acts), 9090: Prometheus metrics
EXPOSE 8080 8081 9090
ENTRYPOINT ["dgm", "run"]

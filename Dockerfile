# syntax=docker/dockerfile:1
# dgm-operator images. With Docker (a registry reachable):
#   docker build -t dgm-operator:dev .                         the operator (the default target)
#   docker build --target sample-agent -t dgm-sample-agent:dev .   the sample agent + `dgm evaluate`
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
# distribution alone (the sample agent), for the sample-agent image.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv /opt/dgm \
 && /opt/dgm/bin/pip install . \
 && /opt/dgm/bin/pip install --no-deps --target /opt/dgm-dev ./devtools \
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

# The sample agent (dgm-sample-agent serve|bench) with the grader (`dgm evaluate`): the image
# of the quickstart's Deployment and its evaluation. Its only extra dependency is PyYAML,
# which the runtime has, so the dev distribution is installed without its dependencies.
FROM runtime AS sample-agent
ENV PYTHONPATH=/opt/dgm-dev PATH=/opt/dgm-dev/bin:/opt/dgm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=builder /opt/dgm-dev /opt/dgm-dev
RUN dgm-sample-agent --help >/dev/null \
 && python3 -c 'import dgm_dev.sample_agent.agent, dgm_operator.grader.evaluate'
LABEL org.opencontainers.image.title="dgm-sample-agent" \
      org.opencontainers.image.description="The dgm-operator quickstart's sample QA agent and its grader"
USER 65532:65532
ENTRYPOINT []
CMD ["dgm-sample-agent", "serve", "--workspace", "/workspace"]

# The operator (the default target, so a plain `docker build .` makes it).
FROM runtime AS operator
LABEL org.opencontainers.image.title="dgm-operator" \
      org.opencontainers.image.description="Kubernetes operator running a Darwin Goedel Machine style self-improvement loop for AI agents"
# 8080: liveness (/healthz), 9090: Prometheus metrics (--metrics-port)
EXPOSE 8080 9090
ENTRYPOINT ["dgm", "run"]

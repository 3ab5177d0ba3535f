# dgm-operator developer entry points. `make test` is the test command (CI calls it).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo help venv controlplane image node-deps helm crds manifests test test-unit test-integration lint e2e-kind bench clean

# The dev cluster's binaries (control plane and node) and images: built on first use, then
# cached (~/.cache/dgm-operator); the directories are handed to the dev cluster and the tests.
CLUSTER_ENV = DGM_CONTROLPLANE_DIR=$$(bash hack/build-controlplane.sh) && export DGM_CONTROLPLANE_DIR && \
  DGM_IMAGES_DIR=$$(bash hack/build-images.sh) && export DGM_IMAGES_DIR

help:
	@echo "make demo          an agent improving itself on a dev cluster (the first command to try)"
	@echo "make test          unit + integration tests (builds or reuses the control plane)"
	@echo "make controlplane  build the dev cluster from Go modules: etcd, kube-apiserver, kube-controller-manager,"
	@echo "                   kubectl, and the node: kubelet, kube-scheduler, kube-proxy, containerd, kube-router, pause"
	@echo "make image         build the images (operator, sample agent, grader, pause) with podman, no registry needed"
	@echo "make node-deps     install what the real node and the image build need (Debian packages; root)"
	@echo "make crds          regenerate crds/*.yaml from the pydantic models (and their copies in the chart)"
	@echo "make manifests     render manifests/ from charts/dgm-operator (builds helm from Go modules)"
	@echo "make e2e-kind      end-to-end tests on kind (hosts with Docker only)"

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]' -e ./devtools

venv: $(PY)

controlplane:
	@bash hack/build-controlplane.sh >/dev/null

image:
	@bash hack/build-images.sh >/dev/null

node-deps:
	bash hack/install-node-deps.sh

helm:
	@bash hack/build-helm.sh >/dev/null

crds: $(PY)
	$(VENV)/bin/dgm crds
	bash hack/sync-chart-crds.sh

# regenerate manifests/ from the chart (also refreshes the CRD copies)
manifests: $(PY)
	PYTHON=$(PY) bash hack/render-manifests.sh

demo: $(PY)
	$(CLUSTER_ENV) && \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/dgm demo $(DEMO_ARGS)

# the one-way imports between the package's rooms (pyproject.toml [tool.importlinter])
# and the type check of api, engine and controller ([tool.mypy])
lint: $(PY)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test-unit: $(PY)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The binaries and images are resolved once (built on first use, then cached) and handed to
# the tests; KUBEBUILDER_ASSETS, when set, supplies the control plane.
test-integration: $(PY)
	$(CLUSTER_ENV) && \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest tests/integration $(PYTEST_ARGS)

test: $(PY) lint
	$(CLUSTER_ENV) && \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest tests/unit tests/integration $(PYTEST_ARGS)

e2e-kind: $(PY)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

bench: $(PY)
	$(VENV)/bin/dgm bench search

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

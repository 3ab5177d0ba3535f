# dgm-operator developer entry points. `make test` is the test command (CI calls it).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo help venv controlplane helm crds manifests test test-unit test-integration lint e2e-kind bench clean

help:
	@echo "make demo          an agent improving itself on a dev cluster (the first command to try)"
	@echo "make test          unit + integration tests (builds or reuses the control plane)"
	@echo "make controlplane  build etcd, kube-apiserver, kube-controller-manager, kubectl from Go modules"
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

helm:
	@bash hack/build-helm.sh >/dev/null

crds: $(PY)
	$(VENV)/bin/dgm crds
	bash hack/sync-chart-crds.sh

# regenerate manifests/ from the chart (also refreshes the CRD copies)
manifests: $(PY)
	PYTHON=$(PY) bash hack/render-manifests.sh

demo: $(PY)
	DGM_CONTROLPLANE_DIR=$$(bash hack/build-controlplane.sh) && export DGM_CONTROLPLANE_DIR && \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/dgm demo $(DEMO_ARGS)

# the one-way imports between the package's rooms (pyproject.toml [tool.importlinter])
# and the type check of api, engine and controller ([tool.mypy])
lint: $(PY)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test-unit: $(PY)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The control plane directory is resolved once (built on first use, then cached) and
# handed to the tests; KUBEBUILDER_ASSETS, when set, is used as it is.
test-integration: $(PY)
	DGM_CONTROLPLANE_DIR=$$(bash hack/build-controlplane.sh) && export DGM_CONTROLPLANE_DIR && \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest tests/integration $(PYTEST_ARGS)

test: $(PY) lint
	DGM_CONTROLPLANE_DIR=$$(bash hack/build-controlplane.sh) && export DGM_CONTROLPLANE_DIR && \
	  PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest tests/unit tests/integration $(PYTEST_ARGS)

e2e-kind: $(PY)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

bench: $(PY)
	$(VENV)/bin/dgm bench search

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

"""Pure checks of the install artefacts: Helm chart, kustomize manifests, Dockerfile.

Rendering with helm and applying to a cluster happens in tests/integration/test_chart.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dgm-operator"
MANIFESTS = ROOT / "manifests"


# -- CRDs: the chart and manifests/ ship byte-for-byte copies of crds/ ----------------------
@pytest.mark.parametrize("copy_dir", ["charts/dgm-operator/crds", "manifests/crds"])
def test_crd_copies_equal_crds(copy_dir):
    src = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    dst = sorted(p.name for p in (ROOT / copy_dir).glob("*.yaml"))
    assert src, "crds/ has no CRDs"
    assert dst == src, f"{copy_dir}/ lists other files than crds/; run hack/sync-chart-crds.sh"
    for name in src:
        assert (ROOT / copy_dir / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"{copy_dir}/{name} differs from crds/{name}; run hack/sync-chart-crds.sh")


# -- values.schema.json --------------------------------------------------------------------
# A small validator for the draft-07 subset the schema uses, so the check needs no extra
# dependency; when the `jsonschema` package is installed it is used as well.
KNOWN_KEYWORDS = {
    "$schema", "$ref", "title", "description", "type", "properties", "additionalProperties",
    "required", "items", "enum", "minimum", "maximum", "pattern", "minLength", "maxLength",
    "uniqueItems", "definitions", "default",
}
TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool,
    "integer": int, "number": (int, float), "null": type(None),
}


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "number" and isinstance(value, float):
        return True
    return isinstance(value, TYPES[name])


def _validate(value: Any, schema: dict, root: dict, path: str = "") -> list[str]:
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/definitions/"), ref
        return _validate(value, root["definitions"][ref.split("/")[-1]], root, path)
    errs: list[str] = []
    where = path or "<root>"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            return [f"{where}: {value!r} is not of type {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 30):
            errs.append(f"{where}: length of {value!r} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{where}: missing required {key!r}")
        for key, item in value.items():
            if key in props:
                errs += _validate(item, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{where}: unexpected key {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += _validate(item, schema["additionalProperties"], root, f"{path}.{key}")
    if isinstance(value, list):
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            errs.append(f"{where}: items are not unique")
        if "items" in schema:
            for i, item in enumerate(value):
                errs += _validate(item, schema["items"], root, f"{path}[{i}]")
    return errs


def _walk_schemas(schema: dict, path: str = "#"):
    yield path, schema
    for key in ("properties", "definitions"):
        for name, sub in schema.get(key, {}).items():
            yield from _walk_schemas(sub, f"{path}/{key}/{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _walk_schemas(schema[key], f"{path}/{key}")


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_values_schema_is_a_draft7_schema(schema):
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    for path, sub in _walk_schemas(schema):
        unknown = set(sub) - KNOWN_KEYWORDS
        assert not unknown, f"{path}: unknown keywords {unknown}"
        types = sub.get("type", [])
        for t in types if isinstance(types, list) else [types]:
            assert t in TYPES, f"{path}: unknown type {t!r}"
        if "pattern" in sub:
            re.compile(sub["pattern"])
        if "$ref" in sub:
            assert sub["$ref"].split("/")[-1] in schema["definitions"], f"{path}: dangling $ref"
    try:
        import jsonschema
    except ImportError:  # optional; the checks above cover what the schema uses
        return
    jsonschema.Draft7Validator.check_schema(schema)


def test_values_yaml_validates_against_the_schema(schema, values):
    assert _validate(values, schema, schema) == []
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(values, schema, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("patch, fragment", [
    ({"replicaCount": 6}, "> 5"),
    ({"peering": {"enabled": True, "lifetime": 2}}, "< 5"),
    ({"readiness": {}}, "missing required 'port'"),
    ({"watchNamespaces": ["Bad_NS"]}, "does not match"),
    ({"watchNamespaces": ["a", "a"]}, "not unique"),
    ({"metrics": {"port": 0}}, "< 1"),
    ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "not in"),
    ({"serviceMonitor": {"enabled": "yes"}}, "not of type"),
    ({"typo": 1}, "unexpected key 'typo'"),
])
def test_schema_rejects_bad_values(schema, values, patch, fragment):
    bad = {**values, **patch}
    errors = _validate(bad, schema, schema)
    assert any(fragment in e for e in errors), errors


# -- RBAC: one set of rules, in the chart's helper and in manifests/ -------------------------
def chart_rules(define: str) -> list[dict]:
    """The YAML body of a `define` block in templates/_helpers.tpl (plain YAML, no actions)."""
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    m = re.search(r'{{-? define "' + re.escape(define) + r'" -}}\n(.*?){{- end }}', text, re.S)
    assert m, f"no define {define!r} in _helpers.tpl"
    assert "{{" not in m.group(1)
    return yaml.safe_load(m.group(1))


def manifest_docs() -> list[dict]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


# What the operator needs (kube.py + kopf's watches), as (group, resource) -> verbs.
EXPECTED = {
    ("dgm.io", "dgmagents"): {"get", "list", "watch", "create", "delete", "patch", "update"},
    ("dgm.io", "improvementcandidates"): {"get", "list", "watch", "create", "delete", "patch", "update"},
    ("dgm.io", "dgmagents/status"): {"get", "patch", "update"},
    ("dgm.io", "improvementcandidates/status"): {"get", "patch", "update"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch"},  # patch: a proposal Job read back
    ("networking.k8s.io", "networkpolicies"): {"get", "create"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},  # the result of a proposal Job
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}


def flatten(rules: list[dict]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def test_chart_rules_are_exactly_what_the_operator_uses():
    rules = chart_rules("dgm-operator.namespacedRules") + chart_rules("dgm-operator.crdRules")
    assert flatten(rules) == EXPECTED


def test_no_wildcards_secrets_or_privilege_verbs():
    rules = chart_rules("dgm-operator.namespacedRules") + chart_rules("dgm-operator.crdRules")
    for (group, res), verbs in flatten(rules).items():
        assert "*" not in (group, res) and "*" not in verbs
        assert res not in ("secrets", "serviceaccounts/token", "pods/exec")
        assert not verbs & {"escalate", "bind", "impersonate", "deletecollection"}


# kopf peering (cluster-wide): list and watch the ClusterKopfPeerings, read and keep alive
# only the release's own.
PEERING_RULES = [
    {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch"]},
    {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "resourceNames": ["dgm-operator"],
     "verbs": ["get", "patch"]},
]


def test_manifests_rbac_equals_the_chart_cluster_wide_rules():
    docs = manifest_docs()
    roles = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "dgm-operator"]
    assert len(roles) == 1
    expected = chart_rules("dgm-operator.namespacedRules") + chart_rules("dgm-operator.crdRules") + PEERING_RULES
    assert roles[0]["rules"] == expected
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "dgm-operator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dgm-operator", "namespace": "dgm-system"}]


def test_manifests_kustomization_lists_existing_files():
    kust = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kust["namespace"] == "dgm-system"
    for res in kust["resources"]:
        assert (MANIFESTS / res).is_file(), f"manifests/kustomization.yaml: {res} does not exist"
    present = {p.relative_to(MANIFESTS).as_posix() for p in MANIFESTS.rglob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == present


def test_manifests_deployment_is_restricted_and_cluster_wide():
    dep = next(d for d in manifest_docs() if d["kind"] == "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["command"] == ["dgm"] and c["args"][:2] == ["run", "-A"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "readiness"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"liveness": 8080, "readiness": 8081, "metrics": 9090}
    args = c["args"]
    assert args[args.index("--peering") + 1] == "dgm-operator"
    assert args[args.index("--readiness") + 1] == "http://0.0.0.0:8081/readyz"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_manifests_create_the_peering_object_the_operator_names():
    docs = manifest_docs()
    (peering,) = [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    assert peering["apiVersion"] == "kopf.dev/v1" and peering["metadata"]["name"] == "dgm-operator"
    crds = [d for d in yaml.safe_load_all((MANIFESTS / "crds" / "peering.kopf.dev.yaml").read_text()) if d]
    assert {(c["spec"]["names"]["kind"], c["spec"]["scope"]) for c in crds} == {
        ("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")}


# -- Dockerfile ------------------------------------------------------------------------------
def test_dockerfile_runs_non_root_with_the_operator_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M), "a registry's base by default"
    stages = re.findall(r"^FROM (\S+) AS (\S+)", text, re.M)
    assert stages == [("${BASE_IMAGE}", "builder"), ("${BASE_IMAGE}", "runtime"), ("runtime", "sample-agent"),
                      ("runtime", "grader"), ("runtime", "operator")]
    by_stage = dict(zip([n for _, n in stages], re.split(r"^FROM .*$", text, flags=re.M)[1:]))
    runtime, final = by_stage["runtime"], by_stage["operator"]
    assert re.search(r"^USER 65532(:65532)?$", runtime, re.M)
    assert "dgm:x:65532:65532:" in runtime, "a passwd entry: kopf asks for the user name (getpwuid)"
    assert "import dgm_operator.controller.handlers" in runtime, "the build check imports the runtime modules"
    assert '\nENTRYPOINT ["dgm", "run"]' in final
    assert re.search(r"^EXPOSE 8080 8081 9090$", final, re.M)
    assert "sample-qa.yaml" in by_stage["grader"] and "sample-qa" not in by_stage["sample-agent"], \
        "the task suite's answers are in the grader's image only"
    for stage in ("runtime", "sample-agent", "grader", "operator"):
        assert "COPY operator" not in by_stage[stage], "the runtime stages copy the installed packages only"
    builder = by_stage["builder"]
    assert "PIP_CONSTRAINT=/src/image-constraints.txt" in builder, "dependencies pinned for the image build"
    assert "--mount=type=secret,id=ca_bundle" in builder, "the CA bundle is a build secret, not a layer"
    pins = (ROOT / "image-constraints.txt").read_text()
    assert re.search(r"^kopf==\S+$", pins, re.M) and re.search(r"^kubernetes==\S+$", pins, re.M)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:] and "!operator/" in ignore

"""The Helm chart and the kustomize manifests against helm itself and a real API server.

helm is built from its Go module by hack/build-helm.sh (cached outside the repo). The
cluster-wide install is applied to the dev cluster and its service account's permissions
are checked with `kubectl auth can-i`: it can do what the operator does and nothing more.
The RBAC checks render with 0 replicas; `test_helm_install_runs_the_operator_image` installs
the chart with the image built here (`make image`, imported into the dev cluster's real node)
and checks that the operator pod becomes Ready, stays up and serves metrics through its Service."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from harness import Env
from polling import wait_for
from test_lifecycle import quickstart_objects

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dgm-operator"
MANIFESTS = ROOT / "manifests"
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


@pytest.fixture(scope="session")
def helm() -> str:
    proc = subprocess.run(["bash", str(ROOT / "hack" / "build-helm.sh")], capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, f"hack/build-helm.sh failed:\n{proc.stderr[-4000:]}"
    path = proc.stdout.strip().splitlines()[-1]
    assert os.access(path, os.X_OK), path
    return path


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # A private HOME-like config so no user repositories or plugins leak in.
    env = dict(os.environ, HELM_CACHE_HOME="/tmp/dgm-helm/cache", HELM_CONFIG_HOME="/tmp/dgm-helm/config",
               HELM_DATA_HOME="/tmp/dgm-helm/data")
    proc = subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def render(helm: str, *args: str, release: str = "dgm-operator", namespace: str = "dgm-system") -> list[dict]:
    out = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_helm_version_is_the_pin(helm):
    pin = next(line.split()[2] for line in (ROOT / "controlplane" / "helm" / "go.mod").read_text().splitlines()
               if line.startswith("require helm.sh/helm/v3 "))
    assert run_helm(helm, "version", "--short").stdout.startswith(pin)


@pytest.mark.parametrize("values", [
    [],
    ["--set", "watchNamespaces={team-a,team-b}"],
    ["--set", "serviceMonitor.enabled=true"],
    ["--set", "rbac.aggregatedRoles=false", "--set", "serviceAccount.name=custom"],
])
def test_helm_lint_strict(helm, values):
    proc = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("value, message", [
    ("replicaCount=9", "replicaCount"),
    ("peering.lifetime=1", "lifetime"),
    ("watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
    ("metrics.port=0", "port"),
    ("nosuchvalue=1", "nosuchvalue"),
])
def test_schema_rejects_bad_values(helm, value, message):
    proc = run_helm(helm, "template", "x", str(CHART), "--set", value, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_cluster_wide_render(helm):
    docs = render(helm)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ClusterRole", "ClusterRole",
                            "Deployment", "Service", "ClusterKopfPeering"])
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    (dep,) = by_kind(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["dgm"]
    assert c["args"] == ["run", "-A", "--liveness", "http://0.0.0.0:8080/healthz", "--readiness",
                         "http://0.0.0.0:8081/readyz", "--peering", "dgm-operator", "--metrics-port", "9090"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "readiness"}
    (peering,) = by_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "dgm-operator"
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert not by_kind(docs, "ServiceMonitor")
    # CRDs come from crds/ (installed by helm install, shown with --include-crds)
    crds = by_kind(render(helm, "--include-crds"), "CustomResourceDefinition")
    assert sorted(d["metadata"]["name"] for d in crds) == ["clusterkopfpeerings.kopf.dev", "dgmagents.dgm.io",
                                                           "improvementcandidates.dgm.io", "kopfpeerings.kopf.dev"]


def test_two_replicas_peer_and_one_without_peering_is_refused(helm):
    (dep,) = by_kind(render(helm, "--set", "replicaCount=2"), "Deployment")
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert "--peering" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    proc = run_helm(helm, "template", "x", str(CHART), "--set", "replicaCount=2", "--set", "peering.enabled=false",
                    check=False)
    assert proc.returncode != 0 and "needs peering.enabled" in proc.stderr


def test_namespaced_render_uses_roles(helm):
    docs = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    roles, bindings = by_kind(docs, "Role"), by_kind(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "dgm-operator", "namespace": "dgm-system"}]
    operator_roles = [r for r in by_kind(docs, "ClusterRole") if not r["metadata"]["name"].startswith("dgm-operator-")]
    assert operator_roles == [], "namespaced mode: no ClusterRole besides discovery and aggregated ones"
    (disc,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "dgm-operator-discovery"]
    groups = {g for rule in disc["rules"] for g in rule["apiGroups"]}
    assert groups == {"apiextensions.k8s.io", ""}
    assert {r for rule in disc["rules"] for r in rule["resources"]} == {"customresourcedefinitions", "namespaces"}
    for rule in disc["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
    (dep,) = by_kind(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:5] == ["run", "-n", "team-a", "-n", "team-b"] and "-A" not in args
    peerings = by_kind(docs, "KopfPeering")
    assert sorted((d["metadata"]["namespace"], d["metadata"]["name"]) for d in peerings) == [
        ("team-a", "dgm-operator"), ("team-b", "dgm-operator")]
    assert not by_kind(docs, "ClusterKopfPeering")
    for role in roles:
        assert {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "resourceNames": ["dgm-operator"],
                "verbs": ["get", "patch"]} in role["rules"]


def test_service_monitor(helm):
    docs = render(helm, "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prom")
    (sm,) = by_kind(docs, "ServiceMonitor")
    (svc,) = by_kind(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["dgm-system"]}
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"][k] == v


def _strip_helm_labels(obj):
    if isinstance(obj, dict):
        return {k: _strip_helm_labels(v) for k, v in obj.items() if k not in HELM_LABELS}
    if isinstance(obj, list):
        return [_strip_helm_labels(v) for v in obj]
    return obj


def test_manifests_equal_the_cluster_wide_chart_render(helm, cluster):
    """manifests/*.yaml is the chart's default render (without Helm's own labels)."""
    rendered = sorted((_strip_helm_labels(d) for d in render(helm)), key=lambda d: (d["kind"], d["metadata"]["name"]))
    ours = [d for p in sorted(MANIFESTS.glob("*.yaml")) if p.name not in ("kustomization.yaml", "namespace.yaml")
            for d in yaml.safe_load_all(p.read_text()) if d]
    ours.sort(key=lambda d: (d["kind"], d["metadata"]["name"]))
    assert ours == rendered
    built = [d for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(MANIFESTS)).stdout) if d]
    kinds = sorted(d["kind"] for d in built)
    assert kinds.count("CustomResourceDefinition") == 4 and "Namespace" in kinds
    assert len(built) == len(ours) + 5
    for d in built:
        if d["kind"] in ("Deployment", "Service", "ServiceAccount"):
            assert d["metadata"]["namespace"] == "dgm-system"


# -- the install on a real API server ------------------------------------------------------
def _apply_render(cluster, docs):
    """The CRDs first (Established), then the rest: the peering objects are of a CRD's kind."""
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    if crds:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                        input=yaml.safe_dump_all(crds, sort_keys=False))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        *[f"crd/{d['metadata']['name']}" for d in crds])
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=yaml.safe_dump_all(rest, sort_keys=False))


def _delete_cluster_scoped(cluster, docs):
    for d in docs:
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering") \
                and not d["metadata"]["name"].startswith("dgm-operator-"):
            cluster.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found", check=False)


def can_i(cluster, who: str, verb: str, resource: str, namespace: str | None, *extra: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={who}", *extra]
    args += ["-n", namespace] if namespace else []
    proc = cluster.kubectl(*args, check=False)
    answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


OPERATOR_CAN = [
    ("list", "dgmagents.dgm.io"),
    ("watch", "dgmagents.dgm.io"),
    ("patch", "dgmagents.dgm.io"),
    ("get", "improvementcandidates.dgm.io"),
    ("create", "improvementcandidates.dgm.io"),
    ("delete", "improvementcandidates.dgm.io"),
    ("patch", "improvementcandidates.dgm.io", "--subresource=status"),
    ("patch", "dgmagents.dgm.io", "--subresource=status"),
    ("create", "configmaps"),
    ("patch", "configmaps"),
    ("watch", "configmaps"),
    ("create", "jobs.batch"),
    ("watch", "jobs.batch"),
    ("create", "networkpolicies.networking.k8s.io"),
    ("get", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("list", "pods"),
    ("create", "events"),
    ("create", "events.events.k8s.io"),
]
OPERATOR_CANNOT = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "deployments.apps"),
    ("update", "deployments.apps"),
    ("create", "deployments.apps"),
    ("delete", "jobs.batch"),
    ("delete", "configmaps"),
    ("create", "pods"),
    ("create", "pods", "--subresource=exec"),
    ("delete", "networkpolicies.networking.k8s.io"),
    ("create", "serviceaccounts", "--subresource=token"),
    ("*", "*"),
]
OPERATOR_CANNOT_CLUSTER = [
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "users"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "namespaces"),
    ("list", "nodes"),
    ("*", "*"),
]


def test_cluster_wide_install_grants_exactly_what_the_operator_needs(helm, cluster, namespace):
    release = f"r{namespace[2:]}"
    docs = render(helm, "--include-crds", "--set", "replicaCount=0", release=release, namespace=namespace)
    _apply_render(cluster, docs)
    try:
        sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
        who = f"system:serviceaccount:{namespace}:{sa}"
        table = []
        for ns in (namespace, "default"):  # cluster-wide: any namespace
            for verb, res, *extra in OPERATOR_CAN:
                table.append((verb, res, *extra, ns, can_i(cluster, who, verb, res, ns, *extra), True))
            for verb, res, *extra in OPERATOR_CANNOT:
                table.append((verb, res, *extra, ns, can_i(cluster, who, verb, res, ns, *extra), False))
        # kopf peering: the release's own ClusterKopfPeering only (list/watch cannot be narrowed)
        (peering,) = by_kind(docs, "ClusterKopfPeering")
        mine = f"clusterkopfpeerings.kopf.dev/{peering['metadata']['name']}"
        for verb, res, want in [("list", "clusterkopfpeerings.kopf.dev", True),
                                ("watch", "clusterkopfpeerings.kopf.dev", True),
                                ("get", mine, True), ("patch", mine, True),
                                ("patch", "clusterkopfpeerings.kopf.dev/someone-else", False),
                                ("get", "clusterkopfpeerings.kopf.dev/someone-else", False),
                                ("delete", mine, False), ("create", "clusterkopfpeerings.kopf.dev", False),
                                ("patch", f"kopfpeerings.kopf.dev/{peering['metadata']['name']}", False)]:
            table.append((verb, res, "<cluster>", can_i(cluster, who, verb, res, None), want))
        for verb, res in [("list", "customresourcedefinitions.apiextensions.k8s.io"),
                          ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
                          ("list", "dgmagents.dgm.io")]:
            table.append((verb, res, "<cluster>", can_i(cluster, who, verb, res, None, "--all-namespaces"), True))
        for verb, res in OPERATOR_CANNOT_CLUSTER:
            table.append((verb, res, "<cluster>", can_i(cluster, who, verb, res, None), False))
        print("\ncan-i table for", who)
        for *what, got, want in table:
            print(f"  {'yes' if got else 'no ':3}  (want {'yes' if want else 'no'})  {' '.join(what)}")
        wrong = [row for row in table if row[-2] != row[-1]]
        assert wrong == []
        (dep,) = by_kind(docs, "Deployment")
        got = cluster.kubectl("get", "deployment", dep["metadata"]["name"], "-n", namespace, "-o", "yaml").stdout
        assert yaml.safe_load(got)["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    finally:
        _delete_cluster_scoped(cluster, docs)


def test_aggregated_roles_for_people(helm, cluster, namespace):
    docs = [d for d in render(helm, "--set", "replicaCount=0", release="agg", namespace=namespace)
            if d["kind"] == "ClusterRole" and d["metadata"]["name"].startswith("dgm-operator-")]
    assert sorted(d["metadata"]["name"] for d in docs) == ["dgm-operator-edit", "dgm-operator-view"]
    _apply_render(cluster, docs)
    cluster.kubectl("create", "rolebinding", "alice-view", "--clusterrole=view", "--user=alice", "-n", namespace)
    cluster.kubectl("create", "rolebinding", "bob-edit", "--clusterrole=edit", "--user=bob", "-n", namespace)
    # the aggregation controller (kube-controller-manager) folds the rules into view/edit
    wait_for("view to aggregate dgm.io", lambda: can_i(cluster, "alice", "get", "improvementcandidates.dgm.io",
                                                       namespace), timeout=60)
    wait_for("edit to aggregate dgm.io", lambda: can_i(cluster, "bob", "delete", "improvementcandidates.dgm.io",
                                                       namespace), timeout=60)
    assert can_i(cluster, "alice", "list", "dgmagents.dgm.io", namespace)
    assert can_i(cluster, "alice", "watch", "improvementcandidates.dgm.io", namespace)
    assert not can_i(cluster, "alice", "delete", "improvementcandidates.dgm.io", namespace)
    assert not can_i(cluster, "alice", "create", "dgmagents.dgm.io", namespace)
    assert not can_i(cluster, "alice", "get", "improvementcandidates.dgm.io", "default")
    assert can_i(cluster, "bob", "create", "dgmagents.dgm.io", namespace)
    assert can_i(cluster, "bob", "patch", "improvementcandidates.dgm.io", namespace)


def test_namespaced_install_is_limited_to_watched_namespaces(helm, cluster, namespace):
    release = f"n{namespace[2:]}"
    docs = render(helm, "--include-crds", "--set", "replicaCount=0", "--set", f"watchNamespaces={{{namespace}}}",
                  release=release, namespace=namespace)
    _apply_render(cluster, docs)
    try:
        sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
        who = f"system:serviceaccount:{namespace}:{sa}"
        assert can_i(cluster, who, "list", "dgmagents.dgm.io", namespace)
        assert can_i(cluster, who, "create", "jobs.batch", namespace)
        assert can_i(cluster, who, "patch", "improvementcandidates.dgm.io", namespace, "--subresource=status")
        assert not can_i(cluster, who, "list", "dgmagents.dgm.io", "default")
        assert not can_i(cluster, who, "create", "jobs.batch", "default")
        assert not can_i(cluster, who, "get", "secrets", namespace)
        assert can_i(cluster, who, "list", "namespaces", None)
        assert can_i(cluster, who, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)
        assert not can_i(cluster, who, "list", "dgmagents.dgm.io", None, "--all-namespaces")
        (peering,) = by_kind(docs, "KopfPeering")
        mine = f"kopfpeerings.kopf.dev/{peering['metadata']['name']}"
        assert can_i(cluster, who, "patch", mine, namespace) and can_i(cluster, who, "watch", "kopfpeerings.kopf.dev",
                                                                         namespace)
        assert not can_i(cluster, who, "patch", "kopfpeerings.kopf.dev/someone-else", namespace)
        assert not can_i(cluster, who, "patch", mine, "default")
        assert not can_i(cluster, who, "list", "clusterkopfpeerings.kopf.dev", None)
    finally:
        _delete_cluster_scoped(cluster, docs)


def _needs_real_node(cluster) -> None:
    node = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    if not node or not node[0]["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://"):
        pytest.skip("needs the dev cluster's real node (the image is imported there)")


@contextlib.contextmanager
def installed_operator(helm, cluster, namespace):
    """`helm install` of the chart as shipped, with the locally built image, watching
    ``namespace``; yields (release, the Ready operator pod) and uninstalls afterwards."""
    release = f"i{namespace[2:]}"
    env = dict(os.environ, KUBECONFIG=cluster.kubeconfig)
    args = ["install", release, str(CHART), "--namespace", namespace, "--kubeconfig", cluster.kubeconfig,
            "--set", "image.repository=dgm-operator", "--set", "image.tag=dev", "--set", "image.pullPolicy=Never",
            "--set", f"watchNamespaces={{{namespace}}}", "--set", "liveness.initialDelaySeconds=2",
            # the aggregated ClusterRoles are cluster-wide; another test applies them already
            "--set", "rbac.aggregatedRoles=false",
            "--wait", "--timeout", "120s"]
    proc = subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=180)
    try:
        assert proc.returncode == 0, f"helm install failed:\n{proc.stdout}\n{proc.stderr}\n" + \
            cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout + \
            cluster.kubectl("logs", "-n", namespace, "-l", "app.kubernetes.io/component=operator", "--tail=40",
                            check=False).stdout

        def pods():
            return json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                              "app.kubernetes.io/component=operator", "-o", "json").stdout)["items"]

        def ready():
            items = pods()
            return items and all(c["type"] != "Ready" or c["status"] == "True"
                                 for c in items[0]["status"].get("conditions", [])) and \
                items[0]["status"].get("phase") == "Running" and items[0]
        yield release, wait_for("the operator pod Ready", ready, timeout=120)
    finally:
        subprocess.run([helm, "uninstall", release, "--namespace", namespace, "--kubeconfig", cluster.kubeconfig,
                        "--wait", "--timeout", "60s"], capture_output=True, text=True, env=env, timeout=120)


def test_helm_install_runs_the_operator_image(helm, cluster, namespace):
    """The chart as shipped, with the locally built image, on containerd: UID 65532 has no
    passwd entry from the runtime, so this is where kopf's getpwuid() crash showed."""
    _needs_real_node(cluster)
    with installed_operator(helm, cluster, namespace) as (release, pod):
        name = pod["metadata"]["name"]
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["restartCount"] == 0, status
        assert status["imageID"], "the image came from the node's containerd"
        # kopf started (its identity from POD_ID), and it keeps running
        wait_for("kopf to start", lambda: "getpwuid" not in (log := cluster.kubectl(
            "logs", name, "-n", namespace).stdout) and log.strip(), timeout=60)
        # metrics through the Service, from another pod
        svc = json.loads(cluster.kubectl("get", "service", f"{release}-dgm-operator-metrics", "-n", namespace,
                                         "-o", "json", check=False).stdout or "{}")
        if not svc:  # the release name may already contain the chart name
            svc = json.loads(cluster.kubectl("get", "services", "-n", namespace, "-o", "json").stdout)["items"][0]
        ip = svc["spec"]["clusterIP"]
        scrape = textwrap.dedent(f"""
            import time, urllib.request
            for _ in range(60):
                try:
                    body = urllib.request.urlopen("http://{ip}:9090/metrics", timeout=2).read().decode()
                    break
                except OSError:
                    time.sleep(0.5)
            open("/dev/termination-log", "w").write("\\n".join(l for l in body.splitlines() if l.startswith("dgm_"))[:3000] or body[:3000])
            """)
        cluster.kubectl("run", "scrape", "-n", namespace, "--image=dgm-sample-agent:dev", "--image-pull-policy=Never",
                        "--restart=Never", "--command", "--", "python3", "-c", scrape)

        def scraped():
            p = json.loads(cluster.kubectl("get", "pod", "scrape", "-n", namespace, "-o", "json").stdout)
            st = (p["status"].get("containerStatuses") or [{}])[0].get("state", {})
            return st.get("terminated")
        term = wait_for("the metrics scrape", scraped, timeout=90)
        assert term["exitCode"] == 0 and "dgm_" in term.get("message", ""), term
        pod = json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0


def test_the_installed_operator_improves_the_quickstart_agent_under_its_own_rbac(helm, cluster, namespace):
    """The whole loop by the operator as the chart installs it (its service account, its
    Role): the baseline is measured by an evaluation Job it starts and reads, the good
    candidate is evaluated, applied as a ConfigMap revision and rolled out. A permission the
    chart lacks shows here as a candidate or agent that never gets there."""
    _needs_real_node(cluster)
    objs = quickstart_objects(namespace)
    agent = objs["dgmagent"][0]
    agent["spec"]["policy"]["improvementIntervalMinutes"] = 600  # only the candidate below
    with installed_operator(helm, cluster, namespace) as (_release, pod):
        env = Env(cluster, namespace)
        env.apply(*objs["configmap"], *objs["deployment"], *objs["networkpolicy"], agent)
        try:
            env.wait_ready(agent="sample-agent", timeout=300)
            env.apply(*objs["candidate-good"])
            name = objs["candidate-good"][0]["metadata"]["name"]
            st = env.wait_phase(name, "Applied", "Rejected", "Failed", timeout=400)["status"]
        except AssertionError:
            print(cluster.kubectl("logs", pod["metadata"]["name"], "-n", namespace, "--tail=80", check=False).stdout)
            raise
        assert st["phase"] == "Applied", st
        live = env.get("configmap", "sample-agent-config")["data"]
        assert live["config.yaml"] == objs["candidate-good"][0]["spec"]["changes"]["config.yaml"]
        assert env.agent_status(agent="sample-agent")["currentRevision"] == 2
        env.rollout_done("sample-agent", 2)
        pod_now = json.loads(cluster.kubectl("get", "pod", pod["metadata"]["name"], "-n", namespace, "-o",
                                             "json").stdout)
        assert pod_now["status"]["containerStatuses"][0]["restartCount"] == 0

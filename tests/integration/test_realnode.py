"""The dev cluster's real node: pods run in real containers (containerd + runc), and the
sandbox that the operator's own builder makes (controller/builders.py: the evaluation Job
and the deny-egress NetworkPolicy) holds against a hostile command.

Each hostile Job reports what it saw through its termination log, and the test reads the
kubelet's verdict (exit code, reason, Job condition). Checks that the node cannot make
(for instance runtimeClassName) are listed in the README, not here."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from polling import wait_for

from dgm_operator.controller import builders

pytestmark = pytest.mark.integration

AGENT_IMAGE = "dgm-sample-agent:dev"  # python3 + the grader; user 65532
ROOT_IMAGE = "dgm-base:dev"  # the Debian base; user root


@pytest.fixture(autouse=True)
def _real_node(cluster):
    node = get_json(cluster, "nodes")["items"]
    if not node or not node[0]["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://"):
        pytest.skip("not a dev cluster with the real node (DGM_TEST_KUBECONFIG points elsewhere?)")


def get_json(cluster, *args, namespace=None):
    ns = ["-n", namespace] if namespace else []
    return json.loads(cluster.kubectl("get", *args, *ns, "-o", "json").stdout)


def apply(cluster, namespace, *objs):
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def pod(name, command, *, image=AGENT_IMAGE, labels=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                     "command": command}], **spec}}


def terminated(cluster, namespace, name, timeout=120):
    def done():
        p = get_json(cluster, "pod", name, namespace=namespace)
        st = (p["status"].get("containerStatuses") or [{}])[0].get("state", {})
        return st.get("terminated") and p
    p = wait_for(f"pod {name} to terminate", done, timeout=timeout)
    return p, p["status"]["containerStatuses"][0]["state"]["terminated"]


# ----- the node
def test_node_runs_containerd(cluster):
    out = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    header, row = out.splitlines()[:2]
    assert "CONTAINER-RUNTIME" in header
    assert "containerd://2." in row and " Ready " in row, out


def test_pod_runs_in_a_real_container(cluster, namespace):
    probe = textwrap.dedent("""
        import json, os, socket
        host_like = [p for p in os.listdir("/proc") if p.isdigit()]
        print(json.dumps({
            "pid1": open("/proc/1/cmdline").read().split("\\0")[:2],
            "hostname": socket.gethostname(),
            "os": open("/etc/os-release").read().splitlines()[0],
            "venv": os.path.isdir("/opt/dgm"),
            "processes": len(host_like),
            "uid": os.getuid(),
        }), flush=True)
        import time; time.sleep(300)
        """)
    apply(cluster, namespace, pod("inside", ["python3", "-c", probe]))
    wait_for("pod inside Running", lambda: get_json(cluster, "pod", "inside", namespace=namespace)
             ["status"].get("phase") == "Running", timeout=60)
    logs = wait_for("its log", lambda: cluster.kubectl("logs", "inside", "-n", namespace).stdout.strip(), timeout=30)
    seen = json.loads(logs.splitlines()[0])
    assert seen["pid1"] == ["python3", "-c"], "PID 1 is the container's command, not the host's init"
    assert seen["hostname"] == "inside"
    assert seen["os"].startswith('PRETTY_NAME="Debian GNU/Linux 12') and seen["venv"], "the image's root fs"
    assert seen["processes"] < 10, "a pid namespace of its own: no host process visible"
    assert seen["uid"] == 65532
    # the host does not see /opt/dgm: the file system is the image's, not this machine's
    assert not os.path.exists("/opt/dgm/bin/dgm-sample-agent")
    # exec and logs go through the kubelet (its serving and client certificates)
    out = cluster.kubectl("exec", "inside", "-n", namespace, "--", "cat", "/proc/1/cgroup").stdout
    assert "kubepods" in out


def test_pods_reach_the_api_server_through_the_kubernetes_service(cluster, namespace):
    script = textwrap.dedent("""
        import os, ssl, urllib.request, urllib.error
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        url = "https://%s:%s/version" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + open(sa + "/token").read()})
        body = urllib.request.urlopen(req, context=ssl.create_default_context(cafile=sa + "/ca.crt"), timeout=10).read()
        open("/dev/termination-log", "w").write(body.decode())
        """)
    apply(cluster, namespace, pod("api", ["python3", "-c", script]))
    p, term = terminated(cluster, namespace, "api")
    assert term["exitCode"] == 0, term
    assert json.loads(term["message"])["gitVersion"].startswith("v1.")


# ----- the sandbox, as the operator builds it
def workspace(cluster, namespace, name="ws"):
    apply(cluster, namespace, builders.files_configmap(name, namespace, {"probe.txt": "hello"}, owner=None,
                                                       labels={}))
    return get_json(cluster, "configmap", name, namespace=namespace)


def sandbox_job(namespace, owner, name, script, *, image=AGENT_IMAGE, timeout_seconds=120, limits=None,
                command=("python3", "-c"), egress_check=True):
    """The operator's single-container evaluation Job (its grader runs ``script``); with
    ``egress_check`` its init container first proves egress denied, as the operator's does."""
    job = builders.evaluation_job(
        name=name, namespace=namespace, owner=builders.owner_reference(owner), labels={"test": name},
        grader=builders.ContainerRun(image=image, command=list(command), args=[script]), agent=None,
        workspace_configmap=owner["metadata"]["name"], timeout_seconds=timeout_seconds, repeats=1, stage="test",
        egress_check_seconds=builders.EGRESS_CHECK_SECONDS if egress_check else None,
        resources={"limits": limits, "requests": {"cpu": "100m", "memory": "32Mi"}} if limits else None)
    spec = job["spec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = 1
    for c in spec["containers"] + spec.get("initContainers", []):
        c["imagePullPolicy"] = "Never"
    return job


def job_pod(cluster, namespace, job):
    def find():
        items = get_json(cluster, "pods", "-l", f"job-name={job}", namespace=namespace)["items"]
        return items[0] if items else None
    return wait_for(f"the pod of job {job}", find, timeout=60)


def job_condition(cluster, namespace, job, timeout=150):
    def done():
        conds = get_json(cluster, "job", job, namespace=namespace).get("status", {}).get("conditions", [])
        final = [c for c in conds if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
        return final[0] if final else None
    return wait_for(f"job {job} to finish", done, timeout=timeout)


def job_termination(cluster, namespace, job):
    def done():
        p = job_pod(cluster, namespace, job)
        st = (p["status"].get("containerStatuses") or [{}])[0]
        return st.get("state", {}).get("terminated") or st.get("lastState", {}).get("terminated")
    return wait_for(f"the container of job {job} to terminate", done, timeout=150)


HOSTILE = textwrap.dedent("""
    import errno, json, os
    seen = {}
    try:
        open("/pwned", "w").write("x")
        seen["write_root"] = "written"
    except OSError as e:
        seen["write_root"] = errno.errorcode.get(e.errno, str(e.errno))
    seen["token"] = os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")
    seen["secrets_dir"] = os.path.exists("/var/run/secrets/kubernetes.io")
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    seen["uid"] = os.getuid()
    seen["cap_eff"] = status["CapEff"].strip()
    seen["no_new_privs"] = status["NoNewPrivs"].strip()
    seen["seccomp"] = status["Seccomp"].strip()
    seen["workspace_writable"] = os.access("/workspace", os.W_OK)
    seen["tmp_writable"] = os.access("/tmp", os.W_OK)
    open("/dev/termination-log", "w").write(json.dumps(seen))
    """)

OOM = "b = bytearray(512 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"

FORK_BOMB = textwrap.dedent("""
    import errno, json, subprocess
    children, err = [], None
    while len(children) < 3000:  # bounded: stops by itself even without a pids limit
        try:
            children.append(subprocess.Popen(["sleep", "120"]))
        except OSError as e:
            err = errno.errorcode.get(e.errno, str(e.errno))
            break
    open("/dev/termination-log", "w").write(json.dumps({"started": len(children), "error": err}))
    for c in children:
        c.kill()
    """)


def test_sandbox_holds_against_a_hostile_evaluation(cluster, namespace):
    """The operator's evaluation Job, run with hostile commands. All Jobs start at once, behind
    the operator's deny-egress NetworkPolicy (their egress check must pass first)."""
    owner = workspace(cluster, namespace)
    apply(cluster, namespace, builders.sandbox_network_policy(namespace))
    jobs = {
        "hostile": sandbox_job(namespace, owner, "hostile", HOSTILE),
        "oom": sandbox_job(namespace, owner, "oom", OOM, limits={"cpu": "1", "memory": "64Mi"}),
        "deadline": sandbox_job(namespace, owner, "deadline", "import time; time.sleep(600)", timeout_seconds=3,
                                egress_check=False),
        "forkbomb": sandbox_job(namespace, owner, "forkbomb", FORK_BOMB),
    }
    # an image whose user is root, and nothing in the pod naming another user
    root = sandbox_job(namespace, owner, "as-root", "id", image=ROOT_IMAGE, command=("sh", "-c"),
                       egress_check=False)
    for ctx in [root["spec"]["template"]["spec"]["securityContext"]] + \
            [c["securityContext"] for c in root["spec"]["template"]["spec"]["containers"]]:
        ctx.pop("runAsUser")
        ctx.pop("runAsGroup")
    jobs["as-root"] = root
    apply(cluster, namespace, *jobs.values())

    # a write to the root file system fails (EROFS); no service-account token; no privileges
    assert job_condition(cluster, namespace, "hostile")["type"] == "Complete"
    seen = json.loads(job_termination(cluster, namespace, "hostile")["message"])
    assert seen["write_root"] == "EROFS"
    assert seen["token"] is False and seen["secrets_dir"] is False
    assert seen["uid"] == builders.SANDBOX_UID
    assert seen["cap_eff"] == "0000000000000000", "all capabilities dropped"
    assert seen["no_new_privs"] == "1", "allowPrivilegeEscalation: false"
    assert seen["seccomp"] == "2", "RuntimeDefault seccomp filter"
    assert seen["workspace_writable"] is False and seen["tmp_writable"] is True

    # memory beyond the limit: OOMKilled (the allocator is PID 1)
    cond = job_condition(cluster, namespace, "oom")
    term = job_termination(cluster, namespace, "oom")
    assert cond["type"] == "Failed"
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137, term

    # the deadline: the Job fails with DeadlineExceeded and its pod is killed
    cond = job_condition(cluster, namespace, "deadline")
    assert cond["type"] == "Failed" and cond["reason"] == "DeadlineExceeded", cond

    # a fork bomb: the builder sets no pids limit (a pod has no such field); the dev
    # cluster's kubelet enforces podPidsLimit on every pod
    assert job_condition(cluster, namespace, "forkbomb")["type"] == "Complete"
    bomb = json.loads(job_termination(cluster, namespace, "forkbomb")["message"])
    assert bomb["error"] == "EAGAIN", bomb
    assert bomb["started"] < 512, bomb
    print("fork bomb:", bomb)

    # runAsNonRoot: the kubelet refuses to start an image whose user is root
    def refused():
        st = (job_pod(cluster, namespace, "as-root")["status"].get("containerStatuses") or [{}])[0]
        waiting = st.get("state", {}).get("waiting") or {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None
    waiting = wait_for("the root image to be refused", refused, timeout=60)
    assert "runAsNonRoot and image will run as root" in waiting["message"], waiting


EGRESS_PROBE = textwrap.dedent("""
    import json, os, socket, time
    target = (os.environ["SERVER_IP"], 8080)
    timeline = []
    start = time.monotonic()
    while time.monotonic() - start < float(os.environ.get("PROBE_SECONDS", "12")):
        t = round(time.monotonic() - start, 2)
        try:
            socket.create_connection(target, timeout=0.5).close()
            timeline.append([t, "open"])
        except OSError as e:
            timeline.append([t, type(e).__name__])
        time.sleep(0.25)
    open("/dev/termination-log", "w").write(json.dumps(timeline)[-4000:])
    """)


def test_sandbox_egress_is_denied_by_the_network_policy(cluster, namespace):
    owner = workspace(cluster, namespace)
    apply(cluster, namespace, builders.sandbox_network_policy(namespace),
          pod("server", ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"], labels={"app": "server"}))
    server = wait_for("the server's IP", lambda: get_json(cluster, "pod", "server", namespace=namespace)
                      ["status"].get("podIP"), timeout=60)
    wait_for("the server Running", lambda: get_json(cluster, "pod", "server", namespace=namespace)
             ["status"].get("phase") == "Running", timeout=60)
    env = [{"name": "SERVER_IP", "value": server}, {"name": "PROBE_SECONDS", "value": "12"}]
    # no egress check here: this test watches the policy take hold from the first packet
    sandbox = sandbox_job(namespace, owner, "egress", EGRESS_PROBE, egress_check=False)
    sandbox["spec"]["template"]["spec"]["containers"][0]["env"] += env
    control = pod("control", ["python3", "-c", EGRESS_PROBE], labels={"app": "control"})
    control["spec"]["containers"][0]["env"] = env + [{"name": "PROBE_SECONDS", "value": "3"}]
    apply(cluster, namespace, sandbox, control)

    # the same probe from a pod the policy does not select reaches the server
    _, term = terminated(cluster, namespace, "control")
    assert any(state == "open" for _, state in json.loads(term["message"])), term["message"]

    timeline = json.loads(job_termination(cluster, namespace, "egress")["message"])
    opened = [t for t, state in timeline if state == "open"]
    # kube-router may let a new pod's first packets through for a moment (the evaluation pod
    # checks from inside before the candidate runs); after that, every attempt is denied
    assert not opened or max(opened) < 3.0, timeline
    late = [state for t, state in timeline if t >= 3.0]
    assert late and all(state != "open" for state in late), timeline

"""Pure logic of the dev cluster's local node and binary lookup (no processes, no API)."""

from __future__ import annotations

import base64
import os

import pytest

from dgm_dev.devcluster import podspec
from dgm_dev.devcluster.binaries import BinaryError, binary, find_bin_dir


def test_pathmap_rewrites_whole_prefixes_only():
    pm = podspec.PathMap({"/data": "/host/v/data", "/data/sub": "/host/v/sub", "/dev/termination-log": "/host/t.log"})
    assert pm("/data") == "/host/v/data"
    assert pm("/data/x.txt") == "/host/v/data/x.txt"
    assert pm("/data/sub/y") == "/host/v/sub/y"  # longest prefix wins
    assert pm("/database") == "/database"
    assert pm("--out=/data/r.json") == "--out=/host/v/data/r.json"
    assert pm("cat /data/a > /dev/termination-log") == "cat /host/v/data/a > /host/t.log"
    assert pm("x/data/a") == "x/data/a"  # not the start of a path
    assert pm("'/data/a'") == "'/host/v/data/a'"


def test_pathmap_does_not_rewrite_its_own_output():
    pm = podspec.PathMap({"/tmp": "/tmp/state/pods/u/volumes/tmp"})
    assert pm("/tmp/x") == "/tmp/state/pods/u/volumes/tmp/x"


def test_expand_kubernetes_vars():
    env = {"A": "1", "B": "two"}
    assert podspec.expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_resolve_env_sources():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "x"}}, "spec": {}}
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "PLAIN", "value": "v-$(CM_k)"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        ],
    }
    cms = {"cm": {"k": "cmval"}}
    secrets = {"s": {"pw": "hunter2"}}
    env = podspec.resolve_env(container, pod, cms.get, secrets.get, base={"HOME": "/h"})
    assert env == {"HOME": "/h", "CM_k": "cmval", "PLAIN": "v-cmval", "FROM_CM": "cmval",
                   "FROM_SECRET": "hunter2", "POD": "p", "NS": "ns", "APP": "x", "IP": "127.0.0.1"}


def test_resolve_env_missing_reference():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}}
    c = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]}
    with pytest.raises(podspec.MissingReference):
        podspec.resolve_env(c, pod, lambda n: None, lambda n: None)


def test_project_items_and_write(tmp_path):
    data = {"a": b"A", "b": b"B"}
    assert podspec.project(data, None) == {"a": (b"A", None), "b": (b"B", None)}
    files = podspec.project(data, [{"key": "b", "path": "sub/renamed", "mode": 0o400}])
    assert files == {"sub/renamed": (b"B", 0o400)}
    podspec.write_files(tmp_path / "v", files)
    assert (tmp_path / "v" / "sub" / "renamed").read_bytes() == b"B"
    with pytest.raises(podspec.MissingReference):
        podspec.project(data, [{"key": "zzz", "path": "z"}])
    assert podspec.project(data, [{"key": "zzz", "path": "z"}], optional=True) == {}
    with pytest.raises(ValueError):
        podspec.write_files(tmp_path / "v", {"../escape": (b"x", None)})


def test_configmap_and_secret_decoding():
    cm = {"data": {"t": "text"}, "binaryData": {"b": base64.b64encode(b"\0\1").decode()}}
    assert podspec.configmap_bytes(cm) == {"t": b"text", "b": b"\0\1"}
    assert podspec.decode_secret({"k": base64.b64encode(b"v").decode()}) == {"k": b"v"}


def test_termination_message(tmp_path):
    term, logf = tmp_path / "term", tmp_path / "log"
    term.write_bytes(b"x" * 5000)
    assert len(podspec.termination_message(term, None, 0, logf)) == podspec.MAX_TERMINATION_MESSAGE
    term.write_bytes(b"")
    logf.write_bytes(b"line1\nlast words\n")
    assert podspec.termination_message(term, "FallbackToLogsOnError", 1, logf).endswith("last words")
    assert podspec.termination_message(term, "FallbackToLogsOnError", 0, logf) == ""
    assert podspec.termination_message(term, "File", 1, logf) == ""


def test_restart_rules():
    assert podspec.should_restart("Always", 0) and podspec.should_restart("Always", 1)
    assert podspec.should_restart("OnFailure", 1) and not podspec.should_restart("OnFailure", 0)
    assert not podspec.should_restart("Never", 1)
    assert [podspec.backoff(n) for n in (1, 2, 3, 10)] == [1, 2, 4, 30]
    assert podspec.pod_phase("Never", [0, 0]) == "Succeeded"
    assert podspec.pod_phase("Never", [0, 2]) == "Failed"
    assert podspec.pod_phase("Never", [0, None]) == "Running"


def test_process_path():
    assert podspec.process_path({"PATH": "/only"}, "/usr/bin", "/venv/bin") == "/only"
    assert podspec.process_path({}, "/usr/bin:/venv/bin", "/venv/bin") == "/venv/bin:/usr/bin"


def test_bin_dir_lookup_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert find_bin_dir({"DGM_CONTROLPLANE_DIR": str(a), "KUBEBUILDER_ASSETS": str(b)}) == a
    assert find_bin_dir({"KUBEBUILDER_ASSETS": str(b)}) == b
    with pytest.raises(BinaryError):
        find_bin_dir({"DGM_CONTROLPLANE_DIR": str(tmp_path / "missing")})


def test_binary_checks(tmp_path):
    with pytest.raises(BinaryError) as err:
        binary(tmp_path, "etcd")
    assert err.value.component == "etcd" and "make controlplane" in str(err.value)
    f = tmp_path / "etcd"
    f.write_text("not executable")
    with pytest.raises(BinaryError):
        binary(tmp_path, "etcd")
    f.chmod(0o755)
    assert binary(tmp_path, "etcd") == f
    assert os.access(f, os.X_OK)

"""`kubectl dgm`: the pure parts (tree, annotation values, checks) and argument handling,
with the cluster replaced by a fake."""

from __future__ import annotations

import pytest

from dgm_operator.plugin import kubectl as plugin
from dgm_operator.plugin.kubectl import PluginError


def cand(name, phase=None, parent="", score=None, safety=None, revision=None, created="2024-01-01T00:00:00Z",
         reason=None, rv="1"):
    obj = {"metadata": {"name": name, "creationTimestamp": created, "resourceVersion": rv,
                        "labels": {"dgm.io/agent": "toy"}},
           "spec": {"agentRef": "toy", "parent": parent}}
    st = {}
    if phase:
        st["phase"] = phase
    if score is not None:
        st["validation"] = {"improvementScore": score}
    if safety is not None:
        st["safety"] = {"score": safety}
    if revision is not None:
        st["revision"] = revision
    if reason:
        st["reason"] = reason
    if st:
        obj["status"] = st
    return obj


def agent(current=2, revisions=(1, 2), rolled_back=(), phase="Ready", rv="7"):
    return {"metadata": {"name": "toy", "resourceVersion": rv},
            "status": {"phase": phase, "currentRevision": current,
                       "revisions": [{"revision": r, **({"rolledBackAt": "t"} if r in rolled_back else {})}
                                     for r in revisions]}}


# -- tree -----------------------------------------------------------------------------------

def test_build_tree_follows_parents_and_orders_children_by_creation():
    cs = [cand("c", parent="a", created="2024-01-03T00:00:00Z"), cand("a", created="2024-01-01T00:00:00Z"),
          cand("b", created="2024-01-02T00:00:00Z"), cand("d", parent="a", created="2024-01-02T12:00:00Z")]
    root = plugin.build_tree("toy", cs)
    assert [n.name for n in root.children] == ["a", "b"]
    assert [n.name for n in root.children[0].children] == ["d", "c"]


def test_build_tree_hangs_orphans_and_cycles_off_the_root():
    cs = [cand("orphan", parent="pruned"), cand("x", parent="y"), cand("y", parent="x"), cand("ok")]
    root = plugin.build_tree("toy", cs)
    names = {n.name: n for n in root.children}
    assert "orphan" in names and "pruned" in names["orphan"].note
    # the cycle is broken once: every candidate appears exactly once in the tree
    seen = []

    def walk(n):
        for c in n.children:
            seen.append(c.name)
            walk(c)
    walk(root)
    assert sorted(seen) == ["ok", "orphan", "x", "y"]


def test_render_tree_shows_scores_revisions_and_marks_the_current_one():
    cs = [cand("better", "Applied", score=0.8, safety=1.0, revision=2, created="2024-01-01T00:00:01Z"),
          cand("child", "Rejected", parent="better", score=-0.05, safety=0.95, reason="InsufficientImprovement",
               created="2024-01-01T00:00:02Z"),
          cand("gated", "Validated", parent="better", score=0.3, safety=1.0, created="2024-01-01T00:00:03Z"),
          cand("new", created="2024-01-01T00:00:04Z")]
    text = plugin.render_tree(agent(current=2), cs)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "SCORE", "SAFETY", "REVISION", "REASON"]
    assert lines[1].startswith("toy (baseline)")
    assert " * " not in lines[1] + " " and not lines[1].rstrip().endswith("*")
    better = next(line for line in lines if "better" in line)
    assert better.startswith("|-- better") and "Applied" in better and "+0.800" in better and "1.00" in better
    assert "2 *" in better
    child = next(line for line in lines if "child" in line)
    assert child.startswith("|   |-- child") and "-0.050" in child and "InsufficientImprovement" in child
    gated = next(line for line in lines if "gated" in line)
    assert gated.startswith("|   `-- gated") and "Validated" in gated
    new = next(line for line in lines if "new" in line)
    assert new.startswith("`-- new") and "Proposed" in new  # no status yet: Proposed
    assert "* current revision: 2" in text
    # columns line up
    assert len({line.index("Applied") for line in lines if "Applied" in line} |
               {line.index("PHASE") for line in lines[:1]}) == 1


def test_render_tree_marks_the_baseline_after_a_rollback_and_not_rolled_back_revisions():
    cs = [cand("v2", "RolledBack", score=0.4, safety=1.0, revision=2)]
    text = plugin.render_tree(agent(current=1, rolled_back=(2,)), cs)
    lines = text.splitlines()
    assert lines[1].rstrip().endswith("1 *")
    v2 = next(line for line in lines if "v2" in line)
    assert "RolledBack" in v2 and "*" not in v2


def test_render_tree_without_candidates_or_status():
    text = plugin.render_tree({"metadata": {"name": "fresh"}}, [])
    assert "fresh (baseline)" in text and "(no candidates yet)" in text and "current revision" not in text


# -- checks and annotation values ---------------------------------------------------------------

@pytest.mark.parametrize("action,phase,ok", [
    ("approve", "Validated", True), ("approve", "Proposed", False), ("approve", "Applied", False),
    ("approve", "Testing", False), ("approve", None, False),
    ("reject", "Proposed", True), ("reject", "Validated", True), ("reject", None, True),
    ("reject", "Testing", False), ("reject", "Applied", False), ("reject", "Failed", False),
])
def test_check_action(action, phase, ok):
    c = cand("c", phase)
    if ok:
        plugin.check_action(action, c)
    else:
        with pytest.raises(PluginError, match=f"{action} applies to a candidate that is"):
            plugin.check_action(action, c)
        plugin.check_action(action, c, force=True)


def test_check_rollback():
    assert plugin.check_rollback(agent(current=3, revisions=(1, 2, 3)), None) == 2
    assert plugin.check_rollback(agent(current=3, revisions=(1, 2, 3), rolled_back=(2,)), None) == 1
    assert plugin.check_rollback(agent(current=3, revisions=(1, 2, 3)), 1) == 1
    assert plugin.check_rollback(agent(current=1, revisions=(1, 2), rolled_back=(2,)), 2) == 2  # forward again
    with pytest.raises(PluginError, match="no revision 5 .revisions: 1, 2, 3"):
        plugin.check_rollback(agent(current=3, revisions=(1, 2, 3)), 5)
    with pytest.raises(PluginError, match="already the current revision"):
        plugin.check_rollback(agent(current=3, revisions=(1, 2, 3)), 3)
    with pytest.raises(PluginError, match="no earlier revision"):
        plugin.check_rollback(agent(current=1, revisions=(1,)), None)
    with pytest.raises(PluginError, match="no revision history"):
        plugin.check_rollback({"metadata": {"name": "toy"}}, None)


def test_annotation_values():
    assert plugin.rollback_value(None, 1700000000.7) == "previous@1700000000"
    assert plugin.rollback_value(3, 1700000000.2) == "3@1700000000"
    assert plugin.propose_value(1700000000.9) == "1700000000"
    assert plugin.annotation_patch("dgm.io/action", "approve", "42") == {
        "metadata": {"annotations": {"dgm.io/action": "approve"}, "resourceVersion": "42"}}
    assert plugin.annotation_patch("dgm.io/propose", "1") == {"metadata": {"annotations": {"dgm.io/propose": "1"}}}


def test_rollback_values_parse_as_the_operator_parses_them():
    # lifecycle._rollback_request: ann.split("@")[0] in ("", "previous") or int(...)
    for to, expect in ((None, "previous"), (4, "4")):
        assert plugin.rollback_value(to, 5).split("@")[0] == expect


# -- argument handling and commands against a fake cluster ------------------------------------------

class FakeCluster:
    def __init__(self, objs, conflicts=0):
        self.objs = objs  # (plural, name) -> obj
        self.patches = []
        self.conflicts = conflicts
        self.namespace = "ns"

    def get(self, plural, name):
        try:
            return self.objs[(plural, name)]
        except KeyError:
            raise PluginError(f"{plural} {name} not found in namespace ns") from None

    def candidates(self, agent_name):
        return [o for (p, _), o in self.objs.items() if p == plugin.CANDIDATES]

    def annotate(self, plural, name, patch):
        if self.conflicts:
            self.conflicts -= 1
            raise plugin.Conflict()
        self.patches.append((plural, name, patch))
        return self.objs[(plural, name)]


@pytest.fixture
def fake(monkeypatch):
    def install(objs, conflicts=0):
        cl = FakeCluster(objs, conflicts)
        monkeypatch.setattr(plugin, "Cluster", lambda *a, **k: cl)
        return cl
    monkeypatch.setattr(plugin.time, "time", lambda: 1700000000.0)
    return install


def test_help_of_every_command(capsys):
    assert plugin.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("tree", "approve", "reject", "rollback", "propose", "report"):
        assert command in out
        assert plugin.main([command, "--help"]) == 0
        assert "-n NAMESPACE" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    assert plugin.main([]) == 2
    assert plugin.main(["approve"]) == 2
    assert plugin.main(["rollback", "toy", "--to", "zero"]) == 2
    assert plugin.main(["rollback", "toy", "--to", "0"]) == 2
    assert plugin.main(["frobnicate"]) == 2
    assert "revisions start at 1" in capsys.readouterr().err


def test_namespace_flags_before_or_after_the_command(monkeypatch):
    seen = []

    class Spy:
        def __init__(self, kubeconfig, context, namespace):
            seen.append((kubeconfig, context, namespace))

    monkeypatch.setattr(plugin, "Cluster", Spy)
    monkeypatch.setitem(plugin.COMMANDS, "propose", lambda cl, args: 0)
    assert plugin.main(["propose", "toy", "-n", "after", "--context", "c1"]) == 0
    assert plugin.main(["-n", "before", "--kubeconfig", "/k", "propose", "toy"]) == 0
    assert plugin.main(["propose", "toy"]) == 0
    assert seen == [(None, "c1", "after"), ("/k", None, "before"), (None, None, None)]


def test_approve_patches_only_the_annotation_guarded_by_resource_version(fake, capsys):
    cl = fake({(plugin.CANDIDATES, "g"): cand("g", "Validated", rv="9")})
    assert plugin.main(["approve", "g"]) == 0
    assert cl.patches == [(plugin.CANDIDATES, "g", {"metadata": {"annotations": {"dgm.io/action": "approve"},
                                                                 "resourceVersion": "9"}})]
    assert "approved" in capsys.readouterr().out


def test_approve_in_the_wrong_phase_is_refused_unless_forced(fake, capsys):
    cl = fake({(plugin.CANDIDATES, "t"): cand("t", "Testing")})
    assert plugin.main(["approve", "t"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: candidate t is Testing") and "--force" in err
    assert cl.patches == []
    assert plugin.main(["approve", "t", "--force"]) == 0
    assert cl.patches[0][2]["metadata"]["annotations"] == {"dgm.io/action": "approve"}


def test_reject_retries_on_a_conflict(fake):
    cl = fake({(plugin.CANDIDATES, "p"): cand("p", "Proposed")}, conflicts=1)
    assert plugin.main(["reject", "p"]) == 0
    assert cl.patches[0][2]["metadata"]["annotations"] == {"dgm.io/action": "reject"}


def test_not_found_is_a_clear_error(fake, capsys):
    fake({})
    assert plugin.main(["tree", "nope"]) == 1
    assert "nope not found" in capsys.readouterr().err
    assert plugin.main(["propose", "nope"]) == 1


def test_rollback_and_propose_annotations(fake, capsys):
    cl = fake({(plugin.AGENTS, "toy"): agent(current=3, revisions=(1, 2, 3))})
    assert plugin.main(["rollback", "toy"]) == 0
    assert plugin.main(["rollback", "toy", "--to", "1"]) == 0
    assert plugin.main(["rollback", "toy", "--to", "3"]) == 1
    assert plugin.main(["propose", "toy"]) == 0
    values = [p[2]["metadata"]["annotations"] for p in cl.patches]
    assert values == [{"dgm.io/rollback-to": "previous@1700000000"}, {"dgm.io/rollback-to": "1@1700000000"},
                      {"dgm.io/propose": "1700000000"}]
    out, err = capsys.readouterr()
    assert "from revision 3 to 2" in out and "already the current revision" in err


def test_tree_prints_the_lineage(fake, capsys):
    fake({(plugin.AGENTS, "toy"): agent(), (plugin.CANDIDATES, "a"): cand("a", "Applied", score=0.5, revision=2)})
    assert plugin.main(["tree", "toy"]) == 0
    out = capsys.readouterr().out
    assert "`-- a" in out and "2 *" in out


def test_report_writes_the_file(fake, monkeypatch, tmp_path, capsys):
    import sys
    import types
    fake({(plugin.AGENTS, "toy"): agent(), (plugin.CANDIDATES, "a"): cand("a", "Applied")})
    calls = []
    module = types.ModuleType("dgm_operator.plugin.report")
    module.render_html = lambda a, cs: calls.append((a, cs)) or "<html>toy</html>"
    monkeypatch.setitem(sys.modules, "dgm_operator.plugin.report", module)
    monkeypatch.chdir(tmp_path)
    assert plugin.main(["report", "toy"]) == 0
    assert (tmp_path / "toy-report.html").read_text() == "<html>toy</html>"
    assert capsys.readouterr().out.strip() == str(tmp_path / "toy-report.html")
    assert calls[0][0]["metadata"]["name"] == "toy" and [c["metadata"]["name"] for c in calls[0][1]] == ["a"]
    assert plugin.main(["report", "toy", "-o", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").exists()
    assert plugin.main(["report", "toy", "-o", str(tmp_path / "missing-dir" / "x.html")]) == 1


def test_missing_kubeconfig_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert plugin.main(["tree", "toy", "--kubeconfig", str(tmp_path / "nope")]) == 1
    assert "error:" in capsys.readouterr().err

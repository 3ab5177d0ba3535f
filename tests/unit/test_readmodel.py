"""The read model and CachedKube, over the dict-backed FakeKube with the watches simulated:
passes read from memory (nothing reaches the API at rest), read their own writes before
any watch event, never go back to an older version, and hold decided candidates as
summaries."""

from __future__ import annotations

import copy
import json

import pytest

from fakekube import FakeKube
from test_reconcilers import NS, World, metrics_message

from dgm_operator.api import constants
from dgm_operator.controller import names
from dgm_operator.controller.readmodel import KINDS, CachedKube, ReadModel, SummaryFeed, trim, watched
from dgm_operator.controller.reconciler import Reconciler
from dgm_operator.controller.schedule import Schedule


class Watches:
    """Plays kopf's feeds and the summary feed: sync() delivers the fake API's current
    state to the model, as the watch events would."""

    def __init__(self, fake: FakeKube, model: ReadModel) -> None:
        self.fake, self.model = fake, model

    def sync(self) -> None:
        for (kind, _, _), obj in list(self.fake.objects.items()):
            self.model.put(copy.deepcopy(obj))
            if kind == "candidate":
                self.model.summary_event("MODIFIED", copy.deepcopy(obj))
        for kind in KINDS:
            for ns, name in self.model.names(kind):
                if (kind, ns, name) not in self.fake.objects:
                    self.model.evict(kind, ns, name)
        self.model.summaries_listed(None, {(ns, name) for (kind, ns, name) in self.fake.objects if kind == "candidate"})
        self.model.synced.set()


class CachedWorld(World):
    """The reconcilers' test world with CachedKube between the reconcilers and the fake."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.model = ReadModel()
        self.cached = CachedKube(self.kube, self.model)
        # a resync far away, so what a pass plans is what comes next
        self.rec = Reconciler(self.cached, self.clock, schedule=Schedule(clock=self.clock, resync=1e9))
        self.watches = Watches(self.kube, self.model)
        self.watches.sync()
        self.rec.ctx.schedule.track((NS, "toy"))

    def ready(self, accuracy: float = 0.5) -> "CachedWorld":
        self.rec.reconcile_agent(NS, "toy")
        self.kube.finish_job(NS, names.baseline_job("toy", 1, "full"), message=metrics_message(accuracy))
        self.watches.sync()
        self.rec.reconcile_agent(NS, "toy")
        self.watches.sync()
        assert self.agent_status()["phase"] == "Ready", self.agent_status()
        return self


def test_a_lifecycle_through_the_read_model_ends_as_through_the_api():
    w = CachedWorld().ready()
    w.candidate("c1")
    w.watches.sync()
    w.run("c1")
    w.kube.finish_job(NS, names.evaluation_job("c1", "full"), message=metrics_message(0.9))
    w.run("c1")  # the Job's watch event has not arrived: still running, nothing decided
    assert w.status("c1")["phase"] == "Testing"
    w.watches.sync()
    w.run("c1")
    w.watches.sync()
    st = w.status("c1")
    assert (st["phase"], st["revision"]) == ("Applied", 2)
    assert w.agent_status()["currentRevision"] == 2
    assert w.kube.get_configmap(NS, "toy-config")["data"] == w.kube.get_configmap(NS, "toy-rev-2")["data"]


def test_at_rest_an_agent_pass_reads_nothing_from_the_api():
    w = CachedWorld().ready()
    for i in range(3):
        w.candidate(f"r{i}")
        w.kube.objects[("candidate", NS, f"r{i}")]["status"] = {
            "phase": "Rejected", "reason": "InsufficientImprovement",
            "validation": {"improvementScore": -0.1, "metricsAfter": [{"name": "accuracy", "value": 0.4}]}}
    w.watches.sync()
    w.rec.reconcile_agent(NS, "toy")  # takes in the archive (one status write)
    w.watches.sync()
    w.kube.reads.clear()
    writes = len(w.kube.writes)
    for _ in range(5):
        assert w.rec.reconcile_agent(NS, "toy") == []
    assert w.kube.reads == []
    assert len(w.kube.writes) == writes
    assert w.agent_status()["archive"]["size"] == 3


def test_the_targets_are_labelled_once_so_the_watches_see_them():
    w = CachedWorld()
    w.rec.reconcile_agent(NS, "toy")
    labelled = [(x.kind, x.name) for x in w.kube.writes_of("patch")]
    assert sorted(labelled) == [("ConfigMap", "toy-config"), ("Deployment", "toy")]
    for kind in ("deployment", "configmap"):
        name = "toy" if kind == "deployment" else "toy-config"
        assert w.kube.objects[(kind, NS, name)]["metadata"]["labels"][constants.LABEL_TARGET] == "true"
        assert w.model.has(kind, NS, name)  # the write's answer is held (a watch would deliver it too)
    w.watches.sync()
    w.rec.reconcile_agent(NS, "toy")
    assert len(w.kube.writes_of("patch")) == 2
    assert w.model.agents_targeting("deployment", NS, "toy") == ["toy"]


def test_a_pass_reads_its_own_writes_before_the_watch_delivers_them():
    w = CachedWorld().ready()
    w.candidate("c1")
    w.watches.sync()
    w.run("c1")  # Proposed -> Testing: written through, no sync
    assert w.model.get("candidate", NS, "c1")["status"]["phase"] == "Testing"
    job = names.evaluation_job("c1", "full")
    assert w.model.has("job", NS, job)  # the created Job's answer is held
    w.kube.finish_job(NS, job, message=metrics_message(0.2))
    w.model.put(copy.deepcopy(w.kube.objects[("job", NS, job)]))  # only the Job's watch event
    w.run("c1")
    assert w.status("c1")["phase"] == "Rejected"
    assert len(w.kube.writes_of("create", "Job")) == 2  # the baseline's and c1's: no second one


def test_an_older_version_never_replaces_a_newer_one():
    model = ReadModel()
    obj = {"apiVersion": "v1", "kind": "DGMAgent", "metadata": {"name": "a", "namespace": "n", "resourceVersion": "7"},
           "spec": {"x": 1}}
    model.put(obj)
    model.put({**obj, "metadata": {**obj["metadata"], "resourceVersion": "5"}, "spec": {"x": 0}})
    assert model.get("agent", "n", "a")["spec"] == {"x": 1}
    model.evict("agent", "n", "a", rv=9)
    model.put({**obj, "metadata": {**obj["metadata"], "resourceVersion": "8"}})  # a late answer of a write
    assert model.get("agent", "n", "a") is None
    model.put({**obj, "metadata": {**obj["metadata"], "resourceVersion": "10"}})  # created again
    assert model.get("agent", "n", "a")["metadata"]["resourceVersion"] == "10"


def test_reads_are_copies():
    model = ReadModel()
    model.put({"kind": "DGMAgent", "metadata": {"name": "a", "namespace": "n", "resourceVersion": "1"}, "spec": {}})
    model.get("agent", "n", "a")["spec"]["changed"] = True
    assert model.get("agent", "n", "a")["spec"] == {}


def candidate(name: str, rv: int, phase: str | None = None, agent: str = "toy", **status) -> dict:
    body = {"apiVersion": constants.API_VERSION, "kind": constants.CANDIDATE_KIND,
            "metadata": {"name": name, "namespace": NS, "resourceVersion": str(rv),
                         "creationTimestamp": "2026-01-01T00:00:05Z", "labels": {constants.LABEL_AGENT: agent},
                         "managedFields": [{"manager": "x"}]},
            "spec": {"agentRef": agent, "parent": "p0", "changes": {"settings.json": "{}"}}}
    if phase:
        body["status"] = {"phase": phase, **status}
    return body


def test_decided_candidates_are_summaries_and_undecided_ones_full_objects():
    model = ReadModel()
    model.put(candidate("live", 3, "Testing"))
    model.summary_event("LISTED", candidate("live", 3, "Testing"))
    done = candidate("done", 4, "Rejected", reason="InsufficientImprovement",
                     validation={"improvementScore": -0.25, "metricsAfter": [{"name": "accuracy", "value": 0.4}],
                                 "tests": {"big": "x" * 1000}})
    model.put(done)  # a write's answer: decided, so not kept whole
    assert not model.has("candidate", NS, "done")
    listed = {c["metadata"]["name"]: c for c in model.list_candidates(NS, "toy")}
    assert set(listed) == {"live", "done"}
    assert listed["live"]["spec"]["changes"] == {"settings.json": "{}"}
    assert "managedFields" not in listed["live"]["metadata"]
    summary = listed["done"]
    assert summary["status"] == {"phase": "Rejected", "reason": "InsufficientImprovement", "validation": {
        "improvementScore": -0.25, "metricsAfter": [{"name": "accuracy", "value": 0.4}]}}
    assert summary["spec"] == {"agentRef": "toy", "parent": "p0"}
    assert summary["metadata"]["creationTimestamp"] == "2026-01-01T00:00:05Z"
    assert summary["metadata"]["labels"] == {constants.LABEL_AGENT: "toy"}


def test_the_newest_of_object_and_summary_is_listed():
    model = ReadModel()
    model.put(candidate("c", 3, "Testing"))
    model.summary_event("MODIFIED", candidate("c", 5, "Failed", reason="EvaluationFailed"))
    (listed,) = model.list_candidates(NS, "toy")
    assert listed["status"]["phase"] == "Failed"
    model.put(candidate("c", 3, "Testing"))  # a late watch event of the old version
    assert model.list_candidates(NS, "toy")[0]["status"]["phase"] == "Failed"


def test_a_decided_candidate_is_read_from_the_api_when_a_step_needs_it_whole():
    fake, model = FakeKube(), ReadModel()
    fake.add(candidate("done", 1, "Rejected"))
    model.summary_event("LISTED", fake.obj("candidate", NS, "done"))
    model.synced.set()
    cached = CachedKube(fake, model)
    assert cached.get_candidate(NS, "done")["spec"]["changes"] == {"settings.json": "{}"}
    assert fake.reads == [("get", "candidate", "done")]
    assert cached.get_candidate(NS, "missing") is None


def test_deleting_and_relisting_drop_summaries():
    fake, model = FakeKube(), ReadModel()
    fake.add(candidate("a", 1, "Rejected"))
    fake.add(candidate("b", 1, "Rejected"))
    seen: list[str] = []
    model.listeners.append(lambda ns, agent: seen.append(agent))
    feed = SummaryFeed(model, NS, lambda: model.synced.set())
    feed.page([fake.obj("candidate", NS, "a"), fake.obj("candidate", NS, "b")])
    feed.listed()
    assert model.synced.is_set() and seen == []  # the first listing notifies nobody
    CachedKube(fake, model).delete_candidate(NS, "a")
    assert [c["metadata"]["name"] for c in model.list_candidates(NS, "toy")] == ["b"]
    assert seen == ["toy"]
    feed.page([])  # a relist after a lost watch: b is gone too
    feed.listed()
    assert model.list_candidates(NS, "toy") == [] and seen == ["toy", "toy"]


def test_listeners_hear_archive_changes_only():
    model = ReadModel()
    model.synced.set()
    heard: list[tuple[str, str]] = []
    model.listeners.append(lambda ns, agent: heard.append((ns, agent)))
    model.summary_event("ADDED", candidate("c", 1))
    model.summary_event("MODIFIED", candidate("c", 2, "Testing"))
    model.summary_event("MODIFIED", candidate("c", 3, "Testing"))  # nothing the archive reads changed
    model.summary_event("MODIFIED", candidate("c", 4, "Rejected"))
    model.summary_event("DELETED", candidate("c", 5, "Rejected"))
    assert heard == [(NS, "toy")] * 4


def test_what_is_watched_and_what_is_kept():
    job = {"kind": "Job", "metadata": {"name": "j", "namespace": NS, "resourceVersion": "1",
                                      "labels": {constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER}},
           "spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}, "status": {"active": 1}}
    assert watched(job) and "spec" not in trim(job)
    assert not watched({**job, "metadata": {**job["metadata"], "labels": {}}})
    assert not watched({"kind": "ConfigMap", "metadata": {"name": "workspace"}})
    assert watched({"kind": "ConfigMap", "metadata": {"name": "live", "labels": {constants.LABEL_TARGET: "true"}}})
    assert not watched(candidate("c", 1, "RolledBack")) and watched(candidate("c", 1, "Applied"))
    model = ReadModel()
    model.put({"kind": "ConfigMap", "metadata": {"name": "ws", "namespace": NS, "resourceVersion": "1"}, "data": {}})
    assert not model.has("configmap", NS, "ws")  # no watch would keep it current


def test_a_write_to_a_vanished_object_forgets_it():
    w = CachedWorld()
    body = w.model.get("agent", NS, "toy")
    del w.kube.objects[("agent", NS, "toy")]
    from dgm_operator.controller.kubeapi import NotFound
    with pytest.raises(NotFound):
        w.cached.patch_status(body, {"phase": "Ready"})
    assert not w.model.has("agent", NS, "toy")


def test_clear_keeps_the_summaries():
    model = ReadModel()
    model.put(candidate("c", 1, "Testing"))
    model.summary_event("LISTED", candidate("c", 1, "Testing"))
    model.put({"kind": "DGMAgent", "metadata": {"name": "toy", "namespace": NS, "resourceVersion": "1"},
               "spec": {"target": {"deployment": "toy", "configMap": "toy-config"}}})
    model.clear()
    assert not model.has("agent", NS, "toy") and model.agents_targeting("deployment", NS, "toy") == []
    assert [c["status"]["phase"] for c in model.list_candidates(NS, "toy")] == ["Testing"]
    assert "changes" not in model.list_candidates(NS, "toy")[0]["spec"]


def test_an_agent_pass_plans_the_next_proposal():
    w = CachedWorld().ready()
    key = (NS, "toy")
    at, trigger = w.rec.ctx.schedule.next_due(key)
    created = w.model.get("agent", NS, "toy")["metadata"]["creationTimestamp"]
    from dgm_operator.controller.context import parse_time
    assert (trigger, at) == ("due", parse_time(created) + 600 * 60)
    w.kube.objects[("agent", NS, "toy")]["metadata"]["annotations"] = {constants.ANNOTATION_PROPOSE: "now"}
    w.watches.sync()
    w.rec.reconcile_agent(NS, "toy")
    assert w.rec.ctx.schedule.next_due(key) == (w.clock.t + 600 * 60, "due")
    w.kube.objects[("agent", NS, "toy")]["spec"]["paused"] = True
    w.watches.sync()
    w.rec.reconcile_agent(NS, "toy")
    assert w.rec.ctx.schedule.next_due(key)[1] == "resync"  # a paused agent plans nothing
    del w.kube.objects[("agent", NS, "toy")]
    w.watches.sync()
    w.rec.reconcile_agent(NS, "toy")
    assert w.rec.ctx.schedule.next_due(key) is None  # a deleted agent is forgotten


def test_a_due_proposal_held_back_by_the_concurrency_limit_is_not_replanned():
    w = CachedWorld().ready()
    w.candidate("busy")
    w.watches.sync()
    w.clock.t += 601 * 60
    w.rec.reconcile_agent(NS, "toy")
    assert w.agent_condition("Improving")["reason"] == "ConcurrencyLimitReached"
    assert w.rec.ctx.schedule.next_due((NS, "toy"))[1] == "resync"


def test_summaries_are_compact():
    """A summary keeps the handful of fields the archive reads, not the object."""
    model = ReadModel()
    big = candidate("c", 1, "Rejected", validation={"improvementScore": 0.1, "tests": {"log": "x" * 10_000},
                                                     "metricsBefore": [{"name": "a", "value": 1}] * 50})
    big["spec"]["changes"] = {"f.py": "y" * 10_000}
    model.summary_event("LISTED", big)
    text = json.dumps(model.list_candidates(NS, "toy"))
    assert len(text) < 600


def test_a_revision_computed_from_a_stale_agent_is_refused_and_computed_again():
    """Two actors for a moment (a peering overlap): the revision history is written only if
    the agent did not change since it was read, so no revision is lost or doubled."""
    from dgm_operator.controller.kubeapi import Conflict
    w = CachedWorld().ready()
    w.candidate("c1")
    w.watches.sync()
    w.run("c1")
    w.kube.finish_job(NS, names.evaluation_job("c1", "full"), message=metrics_message(0.9))
    w.watches.sync()
    agent = w.kube.objects[("agent", NS, "toy")]
    agent["metadata"]["resourceVersion"] = str(int(agent["metadata"]["resourceVersion"]) + 1000)  # another writer
    with pytest.raises(Conflict):
        w.run("c1")
    assert w.agent_status()["currentRevision"] == 1
    assert not w.model.has("agent", NS, "toy")  # the stale copy is dropped: the retry reads the API
    w.run("c1")
    st = w.status("c1")
    assert (st["phase"], st["revision"]) == ("Applied", 2)
    assert [r["revision"] for r in w.agent_status()["revisions"]] == [1, 2]


@pytest.mark.parametrize("selector, labels, expected", [
    ("a=1,!b", {"a": "1"}, True),
    ("a=1,!b", {"a": "1", "b": "x"}, False),
    ("a==1", {"a": "1"}, True),
    ("a!=1", {"a": "2"}, True),
    ("a!=1", {}, True),
    ("a", {"a": ""}, True),
    ("a", {}, False),
    ("", {"x": "y"}, True),
])
def test_label_matcher(selector, labels, expected):
    from dgm_operator.controller.readmodel import label_matcher
    match = label_matcher(selector)
    assert match is not None and match(labels) is expected


def test_set_based_selectors_are_left_to_the_api():
    from dgm_operator.controller.readmodel import label_matcher
    assert label_matcher("env in (a,b)") is None


def test_the_operators_jobs_are_listed_from_memory_and_a_label_write_is_seen_at_once():
    fake, model = FakeKube(), ReadModel()
    managed = {constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER, constants.LABEL_AGENT: "toy"}
    for name, extra in (("p1", {}), ("p2", {"dgm.io/proposal-read": "true"})):
        fake.add({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS,
                                                                       "labels": {**managed, **extra}},
                  "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}})
        model.put(fake.obj("job", NS, name))
    cached = CachedKube(fake, model)
    selector = f"{constants.LABEL_AGENT}=toy,!dgm.io/proposal-read"
    assert [j["metadata"]["name"] for j in cached.list_jobs(NS, selector)] == ["p1"]
    cached.patch_job_metadata(NS, "p1", {"labels": {"dgm.io/proposal-read": "true"}})
    assert cached.list_jobs(NS, selector) == []
    assert [r for r in fake.reads if r[0] == "list"] == []  # nothing asked the API
    assert [j["metadata"]["name"] for j in fake.list_jobs(NS, f"{constants.LABEL_AGENT}=toy")] == ["p1", "p2"]

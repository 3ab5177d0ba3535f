"""Pure helpers of `dgm bench scale` (no cluster)."""

from __future__ import annotations

import json
import random

import pytest

from dgm_dev.bench import scale as bs


def test_agent_names_are_sorted_and_padded():
    names = bs.agent_names(100)
    assert names[0] == "agent-000" and names[-1] == "agent-099" and names == sorted(names)
    assert bs.agent_names(1001)[-1] == "agent-1000"


@pytest.mark.parametrize("total,parts", [(5000, 100), (7, 3), (2, 5), (0, 4)])
def test_split_evenly(total, parts):
    out = bs.split_evenly(total, parts)
    assert len(out) == parts and sum(out) == total and max(out) - min(out) <= 1


def test_agent_objects_are_wired_to_each_other():
    cm, dep, agent = bs.agent_objects("ns", "agent-007", max_candidates=70)
    assert cm["metadata"]["name"] == "agent-007-config" and json.loads(cm["data"]["settings.json"])["accuracy"] == 0.5
    assert dep["metadata"]["name"] == "agent-007" and dep["spec"]["replicas"] == 0
    assert dep["spec"]["selector"]["matchLabels"] == dep["spec"]["template"]["metadata"]["labels"] == {"app": "agent-007"}
    assert dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "agent-007-config"
    spec = agent["spec"]
    assert agent["metadata"]["name"] == "agent-007"
    assert spec["target"] == {"deployment": "agent-007", "container": "agent", "configMap": "agent-007-config"}
    assert spec["archive"]["maxCandidates"] == 70
    assert spec["policy"]["improvementIntervalMinutes"] >= 10 ** 5 and spec["policy"]["autoApply"] is False
    assert all(o["metadata"]["namespace"] == "ns" for o in (cm, dep, agent))


def test_agent_objects_do_not_share_state_between_agents():
    a = bs.agent_objects("ns", "agent-000", max_candidates=50)
    b = bs.agent_objects("ns", "agent-001", max_candidates=50)
    assert a[2]["spec"]["target"]["deployment"] == "agent-000"
    assert b[2]["spec"]["target"]["deployment"] == "agent-001"


def test_finished_candidates_are_terminal_labelled_and_valid():
    from dgm_operator.api import models as api
    rng = random.Random(3)
    phases = set()
    for i in range(60):
        body, status = bs.finished_candidate("ns", "agent-001", i, rng)
        assert body["metadata"]["name"] == f"agent-001-c{i:03d}"
        assert body["metadata"]["labels"][bs.LABEL_AGENT] == "agent-001" == body["spec"]["agentRef"]
        assert status["phase"] in bs.FINAL_PHASES
        phases.add(status["phase"])
        api.ImprovementCandidate.model_validate({**body, "status": status})
        if status["phase"] == "Rejected":
            assert status["validation"]["improvementScore"] <= 0
    assert phases == {"Rejected", "Failed"}


def test_pct_and_dist():
    assert bs.pct([], 0.5) is None
    assert bs.pct([3.0, 1.0, 2.0], 0.5) == 2.0
    assert bs.dist([1.0, 2.0, 3.0]) == {"p50": 2.0, "p95": 3.0, "max": 3.0, "n": 3}
    assert bs.dist([])["n"] == 0


def test_parse_proc_status_and_stat():
    text = "Name:\tpython\nVmPeak:\t  300 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t4\n"
    assert bs.parse_proc_status(text) == {"VmPeak": 300, "VmHWM": 2048, "VmRSS": 1024}
    stat = "123 (py thon) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4"
    assert bs.parse_proc_stat_cpu(stat) == 300


def test_rss_summary_growth_and_steady_state():
    samples = [(float(t), 100.0 + t / 60) for t in range(0, 181, 2)]  # +1 MiB per minute
    r = bs.rss_summary(samples)
    assert r["growth_mib_per_min"] == pytest.approx(1.0, abs=0.01)
    assert r["peak_mib"] == 103.0 and r["first_mib"] == 100.0 and r["steady_mib"] == pytest.approx(101.5, abs=0.05)
    assert bs.rss_summary([]) == {"n": 0}
    assert bs.rss_summary([(0.0, 50.0)])["growth_mib_per_min"] == 0.0


def test_histogram_quantile_and_the_schedule_pace():
    text = "\n".join([
        'dgm_agent_pass_lag_seconds_bucket{le="0.1",trigger="resync"} 50.0',
        'dgm_agent_pass_lag_seconds_bucket{le="1.0",trigger="resync"} 90.0',
        'dgm_agent_pass_lag_seconds_bucket{le="+Inf",trigger="resync"} 100.0',
        'dgm_agent_pass_lag_seconds_bucket{le="0.1",trigger="poke"} 7.0',
        'dgm_agent_pass_lag_seconds_count{trigger="resync"} 100.0',
    ])
    buckets = bs.parse_histogram(text, "dgm_agent_pass_lag_seconds", {"trigger": "resync"})
    assert buckets == {0.1: 50.0, 1.0: 90.0, float("inf"): 100.0}
    assert bs.histogram_quantile(buckets, 0.5) == pytest.approx(0.1)
    assert bs.histogram_quantile(buckets, 0.7) == pytest.approx(0.55)
    assert bs.histogram_quantile(buckets, 0.95) == 1.0  # in the +Inf bucket: its lower bound
    assert bs.histogram_quantile({}, 0.5) is None
    pace = bs.schedule_pace({"resync": 60.0, "event": 3.0}, agents=100, resync=300.0, seconds=180.0, lag_buckets=buckets)
    assert pace["resync_per_s"] == pytest.approx(0.333, abs=1e-3) and pace["resync_due_per_s"] == pytest.approx(0.333, abs=1e-3)
    assert pace["ratio"] == pytest.approx(1.0, abs=0.01) and pace["passes"] == {"event": 3, "resync": 60}
    assert bs.schedule_pace({}, 0, 300.0, 10.0, {})["ratio"] is None


def test_seeded_baselines_are_what_the_operator_writes():
    from dgm_operator.api import models as api
    status = bs.seeded_status("agent-001", "toy:1")
    parsed = api.DGMAgentStatus.model_validate(status)
    assert parsed.current_revision == 1 and parsed.revisions[0].snapshot == "agent-001-rev-1"
    assert parsed.baseline.revision == 1 and parsed.baseline.metrics[0].value == bs.BASELINE_ACCURACY
    cm = bs.snapshot_configmap("ns", "agent-001", {"settings.json": "{}"})
    assert cm["metadata"]["name"] == "agent-001-rev-1" and cm["metadata"]["labels"][bs.LABEL_AGENT] == "agent-001"


def test_parse_prometheus_groups_and_diffs():
    text = "\n".join([
        "# HELP apiserver_request_total x",
        'apiserver_request_total{code="200",resource="configmaps",subresource="",verb="GET"} 10',
        'apiserver_request_total{code="404",resource="configmaps",subresource="",verb="GET"} 2',
        'apiserver_request_total{code="200",resource="improvementcandidates",subresource="status",verb="PATCH"} 5',
        'apiserver_request_total_other{verb="GET"} 99',
    ])
    out = bs.parse_prometheus(text, "apiserver_request_total", ("verb", "resource", "subresource"))
    assert out == {"GET configmaps ": 12.0, "PATCH improvementcandidates status": 5.0}
    assert bs.diff_counters({"a": 1.0, "b": 2.0}, {"a": 4.0, "b": 2.0, "c": 1.0}) == {"a": 3.0, "c": 1.0}

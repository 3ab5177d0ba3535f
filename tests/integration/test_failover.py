"""Two replicas of the operator (kopf peering) on the dev cluster: one acts, the other stands
by without writing anything; the active one is SIGKILLed in the middle of a lifecycle (at
each failpoint, between two writes of one step), and the standby takes over and finishes
it. The checks are those of the single-replica failpoint test: one Job per candidate,
each revision exactly once, the live ConfigMap equal to the last snapshot.

How long the handover takes is measured by `dgm bench failover`, not asserted here."""

from __future__ import annotations

import signal

import pytest

from dgm_dev.toy_agent import toy_objects
from harness import Operator, candidate
from test_lifecycle import FAILPOINTS, assert_nothing_lost_or_duplicated

pytestmark = pytest.mark.integration

PEERING = "dgm-test"
LIFETIME = "10"  # seconds a killed replica's record outlives it: the handover waits that long


def replica(cluster, env, tmp_path, name: str, **start_env: str) -> Operator:
    op = Operator(cluster, env.ns, tmp_path / f"{name}.log", peering=PEERING)
    op.start_env = {"DGM_PEERING_LIFETIME": LIFETIME, **start_env}
    return op.start()


def role(op: Operator) -> str | None:
    answer = op.readiness()
    return None if answer is None else answer["role"]


def test_the_standby_takes_over_a_lifecycle_from_the_killed_replica(env, cluster, tmp_path):
    env.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING, "namespace": env.ns}})
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.1}))
    started: list[Operator] = []
    try:
        first = replica(cluster, env, tmp_path, "first")
        started.append(first)
        env.wait("the first replica acts", lambda: role(first) == "active", timeout=60)
        env.wait_ready()
        first.stop()
        for i, point in enumerate(FAILPOINTS, start=1):
            active = replica(cluster, env, tmp_path, f"active-{i}", DGM_FAILPOINT=point)
            started.append(active)
            env.wait(f"round {i}: the new replica acts", lambda: role(active) == "active", timeout=60)
            standby = replica(cluster, env, tmp_path, f"standby-{i}")
            started.append(standby)
            env.wait(f"round {i}: the second replica stands by", lambda: role(standby) == "standby", timeout=60)
            assert active.readiness()["ready"] is True and standby.readiness()["ready"] is False
            env.apply(candidate(env.ns, f"k{i}", {"accuracy": 0.1 + 0.15 * i}))
            env.wait(f"the active replica killed at {point}", lambda: active.proc.poll() is not None, timeout=60)
            assert active.proc.returncode == -signal.SIGKILL, f"failpoint {point} not reached"
            assert standby.writes() == 0, "the standby wrote while the other replica acted"
            env.wait(f"round {i}: the standby takes over", lambda: role(standby) == "active", timeout=60)
            st = env.wait_phase(f"k{i}", "Applied", "Rejected", "Failed")["status"]
            assert (st["phase"], st["revision"]) == ("Applied", i + 1), (point, st)
            assert standby.writes() > 0
            standby.stop()
    except BaseException:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        for op in started:
            op.stop()
    assert_nothing_lost_or_duplicated(env)

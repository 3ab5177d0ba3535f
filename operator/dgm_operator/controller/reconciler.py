"""The entry points the kopf handlers call: one reconcile per kind over a shared
:class:`~.context.Context`."""

from __future__ import annotations

from . import agent, candidate
from .context import Clock, Context, wall_clock
from .kubeapi import KubeAPI
from .schedule import Schedule


class Reconciler:
    """One per operator process. Locks in the context serialise work on one candidate and
    on one agent inside this process; one replica acts at a time (kopf peering pauses the
    others)."""

    def __init__(self, kube: KubeAPI, clock: Clock = wall_clock, schedule: Schedule | None = None) -> None:
        self.ctx = Context(kube, clock, schedule=schedule if schedule is not None else Schedule(clock=clock))

    @property
    def kube(self) -> KubeAPI:
        return self.ctx.kube

    def reconcile_candidate(self, namespace: str, name: str) -> list[str]:
        return candidate.reconcile(self.ctx, namespace, name)

    def reconcile_agent(self, namespace: str, name: str) -> list[str]:
        return agent.reconcile(self.ctx, namespace, name)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self.ctx.locks.forget(kind, namespace, name)

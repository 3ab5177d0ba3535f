"""The observed state of one object, gathered once per reconcile pass into a typed view
(after Argo Rollouts' rollout context): the raw object for writes, its parsed model and
status, and the related objects the pass needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api import constants
from ..api import models as api
from ..engine.types import Phase
from .kubeapi import Obj


class _ObjectView:
    """What both views read of their own object's metadata."""

    obj: Obj

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def generation(self) -> int | None:
        value = self.obj["metadata"].get("generation")
        return int(value) if value is not None else None


@dataclass
class CandidateView(_ObjectView):
    obj: Obj
    candidate: api.ImprovementCandidate
    status: api.ImprovementCandidateStatus
    agent_obj: Obj
    agent: api.DGMAgent

    @classmethod
    def of(cls, obj: Obj, agent_obj: Obj) -> "CandidateView":
        candidate = api.ImprovementCandidate.model_validate(obj)
        status = api.ImprovementCandidateStatus.model_validate(obj.get("status") or {})
        return cls(obj, candidate, status, agent_obj, api.DGMAgent.model_validate(agent_obj))

    @property
    def agent_name(self) -> str:
        return str(self.agent_obj["metadata"]["name"])

    @property
    def phase(self) -> Phase:
        return self.status.phase or Phase.PROPOSED

    @property
    def action(self) -> str | None:
        """The imperative action (approve | reject) set through the annotation, if any."""
        return (self.obj["metadata"].get("annotations") or {}).get(constants.ANNOTATION_ACTION)

    @property
    def agent_status(self) -> api.DGMAgentStatus:
        return self.agent.status or api.DGMAgentStatus()

    def refresh(self, obj: Obj) -> None:
        """Take the object as the API returned it after a write."""
        self.obj = obj
        self.status = api.ImprovementCandidateStatus.model_validate(obj.get("status") or {})


@dataclass
class AgentView(_ObjectView):
    obj: Obj
    agent: api.DGMAgent
    status: api.DGMAgentStatus
    deployment: Obj | None
    live_configmap: Obj | None
    candidates: list[Obj] = field(default_factory=list)

    @classmethod
    def of(cls, obj: Obj, deployment: Obj | None, live: Obj | None) -> "AgentView":
        agent = api.DGMAgent.model_validate(obj)
        return cls(obj, agent, agent.status or api.DGMAgentStatus(), deployment, live)

    def annotation(self, key: str) -> str | None:
        return (self.obj["metadata"].get("annotations") or {}).get(key)


def candidate_phase(obj: Obj) -> str:
    """The phase of a candidate dict; one the operator has not seen yet is Proposed."""
    return str((obj.get("status") or {}).get("phase") or Phase.PROPOSED.value)


def needs_attention(candidate: Obj) -> bool:
    """Whether a candidate still has a step to take: not decided yet, waiting for approval
    or the baseline, or applied but its rollout not yet verified."""
    phase = candidate_phase(candidate)
    if phase in (Phase.PROPOSED.value, Phase.TESTING.value, Phase.VALIDATED.value):
        return True
    reason: Any = (candidate.get("status") or {}).get("reason")
    return phase == Phase.APPLIED.value and reason not in constants.VERIFIED_REASONS

"""The one home of the API's names: group, version, kinds, plurals, labels, annotations,
the field manager, and the named sets of candidate phases.

Everything that spells ``dgm.io`` or a plural imports it from here.
"""

from __future__ import annotations

from ..engine.types import Phase

GROUP = "dgm.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

AGENT_KIND = "DGMAgent"
CANDIDATE_KIND = "ImprovementCandidate"
AGENTS = "dgmagents"  # plural
CANDIDATES = "improvementcandidates"  # plural

FIELD_MANAGER = "dgm-operator"

LABEL_AGENT = f"{GROUP}/agent"
LABEL_CANDIDATE = f"{GROUP}/candidate"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_ROLE = f"{GROUP}/role"
LABEL_SANDBOX = f"{GROUP}/sandbox"
LABEL_PROPOSAL = f"{GROUP}/proposal"  # on proposal Jobs and pods: the candidate name it proposes
ROLE_PROPOSAL = "proposal"  # LABEL_ROLE of proposal Jobs, their context ConfigMaps and NetworkPolicies
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# On an agent's target Deployment and live ConfigMap (value "true"): the operator's watches
# select them by it, instead of watching every Deployment and ConfigMap.
LABEL_TARGET = f"{GROUP}/target"

ANNOTATION_REVISION = f"{GROUP}/revision"  # on the Deployment's pod template
ANNOTATION_ACTION = f"{GROUP}/action"  # on candidates: approve | reject (imperative, not in Git)
ANNOTATION_ROLLBACK = f"{GROUP}/rollback-to"  # on agents: imperative rollback request
ANNOTATION_PROPOSE = f"{GROUP}/propose"  # on agents: any new value asks for one proposal now
ANNOTATION_PARENT = f"{GROUP}/parent"  # on proposal Jobs: the parent candidate ("" = the baseline)
ANNOTATION_PROPOSAL_RESULT = f"{GROUP}/proposal-result"  # on proposal Jobs: what the read result became
LABEL_PROPOSAL_READ = f"{GROUP}/proposal-read"  # on proposal Jobs: "true" once the result was read

# -- named sets of candidate phases ------------------------------------------------------
#: count against the agent's maxConcurrentCandidates (not yet decided)
ACTIVE_PHASES = frozenset({Phase.PROPOSED.value, Phase.TESTING.value})
#: no step is left for the operator: such candidates leave the operator's watch
FINAL_PHASES = frozenset({Phase.REJECTED.value, Phase.FAILED.value, Phase.ROLLED_BACK.value})
#: the evaluation has been decided (what a person waiting on a candidate waits for)
DECIDED_PHASES = frozenset({Phase.VALIDATED.value, Phase.APPLIED.value, *FINAL_PHASES})

#: candidate reasons that end the post-apply watch of an Applied candidate
VERIFIED_REASONS = frozenset({"Verified", "RolloutComplete"})

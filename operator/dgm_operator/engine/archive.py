"""The DGM archive over candidate records: lineage, best, eligible parents, pruning.

Eligibility (who may be a parent), as in the DGM paper where every child that was
evaluated stays in the archive as a possible stepping stone, good or not:

* the baseline, always;
* candidates that were evaluated: phase Validated, Applied or RolledBack, and Rejected ones
  whose reason says they *were* evaluated (``InsufficientImprovement``, or
  ``StageThresholdNotMet`` or ``StageNotPromoted`` with the score of the stage they reached);
* never Proposed/Testing ones (no score yet), Failed ones (no valid metrics) or Rejected
  ones with any other reason (safety rejections: ``UnsafeChange``), nor anything without a
  score.

"Functioning children" of a node are its eligible children: the paper's n_i counts the
children that compiled and could be evaluated.
"""

from __future__ import annotations

from typing import Iterable

from .types import ArchiveSummary, CandidateRecord, Phase

EVALUATED_PHASES = frozenset({Phase.VALIDATED, Phase.APPLIED, Phase.ROLLED_BACK})
EVALUATED_REJECTION_REASONS = frozenset({"InsufficientImprovement", "StageThresholdNotMet", "StageNotPromoted"})
PRUNABLE_PHASES = frozenset({Phase.REJECTED, Phase.FAILED})


class ArchiveError(ValueError):
    pass


def is_eligible(record: CandidateRecord) -> bool:
    if record.score is None:
        return False
    if record.is_baseline:
        return True
    if record.phase in EVALUATED_PHASES:
        return True
    return record.phase is Phase.REJECTED and record.reason in EVALUATED_REJECTION_REASONS


class Archive:
    """An immutable view over the baseline and the candidate records of one agent."""

    def __init__(self, baseline: CandidateRecord, candidates: Iterable[CandidateRecord] = ()) -> None:
        if not baseline.is_baseline:
            baseline = CandidateRecord(**{**baseline.__dict__, "is_baseline": True})
        self.baseline = baseline
        self._records: dict[str, CandidateRecord] = {baseline.name: baseline}
        for record in candidates:
            if record.name in self._records:
                raise ArchiveError(f"duplicate record name {record.name!r}")
            self._records[record.name] = record
        self._children: dict[str, list[str]] = {name: [] for name in self._records}
        for record in self._records.values():
            if record.is_baseline:
                continue
            parent = self.parent_of(record.name)
            self._children.setdefault(parent, []).append(record.name)

    # --- access -------------------------------------------------------------------------

    def __contains__(self, name: str) -> bool:
        return name in self._records

    def __len__(self) -> int:
        return len(self._records) - 1  # candidates, not the baseline

    def get(self, name: str) -> CandidateRecord:
        try:
            return self._records[name]
        except KeyError:
            raise ArchiveError(f"unknown candidate {name!r}") from None

    @property
    def records(self) -> list[CandidateRecord]:
        return list(self._records.values())

    @property
    def candidates(self) -> list[CandidateRecord]:
        return [r for r in self._records.values() if not r.is_baseline]

    def parent_of(self, name: str) -> str:
        record = self.get(name)
        if record.is_baseline:
            raise ArchiveError("the baseline has no parent")
        return record.parent or self.baseline.name

    # --- lineage and children -----------------------------------------------------------

    def lineage(self, name: str) -> list[str]:
        """`[name, parent, grandparent, ..., baseline]`.

        A parent that is no longer in the archive (pruned or never known) ends the chain
        at the baseline; a cycle raises ArchiveError.
        """
        chain = [name]
        seen = {name}
        current = self.get(name)
        while not current.is_baseline:
            parent = current.parent or self.baseline.name
            if parent not in self._records:
                parent = self.baseline.name
            if parent in seen:
                raise ArchiveError(f"lineage cycle through {parent!r}")
            chain.append(parent)
            seen.add(parent)
            current = self._records[parent]
        return chain

    def ancestors(self, name: str) -> list[str]:
        return self.lineage(name)[1:]

    def children(self, name: str) -> list[str]:
        self.get(name)
        return list(self._children.get(name, []))

    def functioning_children(self, name: str) -> list[str]:
        return [c for c in self.children(name) if is_eligible(self._records[c])]

    def children_counts(self, functioning: bool = True) -> dict[str, int]:
        pick = self.functioning_children if functioning else self.children
        return {name: len(pick(name)) for name in self._records}

    # --- selection inputs ---------------------------------------------------------------

    def eligible(self) -> list[CandidateRecord]:
        return [r for r in self._records.values() if is_eligible(r)]

    def best(self) -> CandidateRecord | None:
        """The eligible record with the highest score (ties: the older one, then the name)."""
        pool = self.eligible()
        if not pool:
            return None
        return max(pool, key=lambda r: (r.score, -r.created, _neg_name(r.name)))

    def summary(self) -> ArchiveSummary:
        best = self.best()
        return ArchiveSummary(
            size=len(self),
            eligible=len(self.eligible()),
            best_score=None if best is None else best.score,
            best_candidate=None if best is None else best.name,
        )

    # --- retention ----------------------------------------------------------------------

    def prune(self, max_candidates: int, protected: Iterable[str] = ()) -> list[str]:
        """Names to delete so that at most `max_candidates` candidates remain.

        Only Rejected and Failed *leaves* go, oldest first (a parent whose children were all
        deleted becomes a leaf and may follow). Never deleted: the baseline, a protected name
        (such as a live revision's candidate) or any ancestor of one. The result may leave
        more than `max_candidates` when nothing else may go.
        """
        if max_candidates < 0:
            raise ArchiveError("max_candidates must be >= 0")
        keep: set[str] = {self.baseline.name}
        for name in protected:
            if name in self._records:
                keep.update(self.lineage(name))
        excess = len(self) - max_candidates
        if excess <= 0:
            return []
        remaining_children = {name: set(kids) for name, kids in self._children.items()}
        deleted: list[str] = []
        while len(deleted) < excess:
            leaves = [
                r for r in self._records.values()
                if r.name not in keep and r.name not in deleted and r.phase in PRUNABLE_PHASES
                and not remaining_children.get(r.name)
            ]
            if not leaves:
                break
            victim = min(leaves, key=lambda r: (r.created, r.name))
            deleted.append(victim.name)
            parent = self.parent_of(victim.name)
            remaining_children.get(parent, set()).discard(victim.name)
        return deleted


def _neg_name(name: str) -> tuple[int, ...]:
    # max() over (score, -created, _neg_name) prefers the lexicographically smaller name
    return tuple(-ord(c) for c in name)


def resolve_parents(lineage: Iterable[tuple[str, str | None]]) -> tuple[dict[str, str | None], dict[str, str]]:
    """The one way a lineage is read: ``(name, declared parent)`` pairs in creation order ->
    (name -> parent or None for the baseline, name -> note). A parent that is not among the
    names (pruned, or never existed) and a parent cycle both re-root the candidate under the
    baseline, with a note saying why, so every reader builds the same tree and none loops."""
    pairs = list(lineage)
    known = {name for name, _ in pairs}
    parent_of: dict[str, str | None] = {}
    notes: dict[str, str] = {}
    for name, parent in pairs:
        if parent and parent not in known:
            notes[name] = f"parent {parent} not found"
            parent = None
        parent_of[name] = parent or None
    for name, _ in pairs:
        seen: set[str] = set()
        cur: str | None = name
        while cur is not None and cur not in seen:
            seen.add(cur)
            cur = parent_of[cur]
        if cur == name:
            notes[name] = f"parent cycle through {parent_of[name]}"
            parent_of[name] = None
    return parent_of, notes

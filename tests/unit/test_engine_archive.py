import pytest

from dgm_operator.engine.archive import Archive, ArchiveError, is_eligible
from dgm_operator.engine.types import CandidateRecord as R, Phase


def make():
    base = R("base", phase=Phase.APPLIED, score=0.0, is_baseline=True)
    recs = [
        R("a", None, Phase.APPLIED, score=0.2, created=1),
        R("b", "a", Phase.REJECTED, score=0.1, reason="InsufficientImprovement", created=2),
        R("c", "a", Phase.REJECTED, reason="UnsafeChange", created=3),
        R("d", "b", Phase.VALIDATED, score=0.5, created=4),
        R("e", "", Phase.FAILED, reason="MetricsUnavailable", created=5),
        R("f", "d", Phase.TESTING, created=6),
        R("g", "a", Phase.REJECTED, score=0.05, reason="InsufficientImprovement", created=7),
    ]
    return Archive(base, recs)


def test_lineage_children_and_best():
    a = make()
    assert a.lineage("d") == ["d", "b", "a", "base"]
    assert a.ancestors("e") == ["base"]
    assert a.children("a") == ["b", "c", "g"]
    assert a.functioning_children("a") == ["b", "g"]
    assert a.children_counts()["base"] == 1  # a (e failed)
    assert a.best().name == "d"
    assert {r.name for r in a.eligible()} == {"base", "a", "b", "d", "g"}
    s = a.summary()
    assert (s.size, s.eligible, s.best_score, s.best_candidate) == (7, 5, 0.5, "d")


def test_eligibility_rules():
    assert not is_eligible(R("x", phase=Phase.REJECTED, score=0.3, reason="UnsafeChange"))
    assert is_eligible(R("x", phase=Phase.REJECTED, score=0.3, reason="StageThresholdNotMet"))
    assert not is_eligible(R("x", phase=Phase.FAILED, score=0.3))
    assert not is_eligible(R("x", phase=Phase.VALIDATED, score=None))
    assert is_eligible(R("x", phase=Phase.ROLLED_BACK, score=0.1))


def test_missing_parent_ends_at_baseline_and_cycles_raise():
    base = R("base", score=0.0, is_baseline=True)
    a = Archive(base, [R("x", "gone", Phase.VALIDATED, score=1)])
    assert a.lineage("x") == ["x", "base"]
    cyc = Archive(base, [R("p", "q", Phase.VALIDATED, score=1), R("q", "p", Phase.VALIDATED, score=1)])
    with pytest.raises(ArchiveError):
        cyc.lineage("p")
    with pytest.raises(ArchiveError):
        Archive(base, [R("x"), R("x")])


def test_prune_oldest_rejected_failed_leaves_never_protected_ancestors():
    a = make()
    assert a.prune(10) == []
    # 7 candidates, keep 4 -> delete 3: leaves among Rejected/Failed: c(3), e(5), g(7); b has child d
    assert a.prune(4) == ["c", "e", "g"]
    # protecting g keeps it (and its ancestors a, base)
    assert a.prune(4, protected=["g"]) == ["c", "e"]
    # b is an ancestor of the protected d: never deleted even with max 0
    assert "b" not in a.prune(0, protected=["d"])


def test_prune_cascades_to_new_leaves():
    base = R("base", score=0.0, is_baseline=True)
    recs = [R("r1", None, Phase.REJECTED, score=0, reason="InsufficientImprovement", created=1),
            R("r2", "r1", Phase.FAILED, created=2),
            R("v", None, Phase.VALIDATED, score=1, created=3)]
    assert Archive(base, recs).prune(1) == ["r2", "r1"]


def test_resolve_parents_reroots_missing_parents_and_cycles():
    from dgm_operator.engine.archive import resolve_parents
    parent_of, notes = resolve_parents([("a", None), ("b", "a"), ("c", "gone"), ("d", "e"), ("e", "d")])
    assert parent_of["a"] is None and parent_of["b"] == "a" and parent_of["c"] is None
    assert notes["c"] == "parent gone not found"
    assert None in (parent_of["d"], parent_of["e"]) and ("d" in notes or "e" in notes)
    assert "b" not in notes

from dgm_operator.engine import policies as p
from dgm_operator.engine.types import Finding, Severity


def test_safety_message_and_none_above_threshold():
    findings = [Finding("path", Severity.CRITICAL, "../x", "path traversal"),
                Finding("import_not_allowed", Severity.HIGH, "a.py", "import of requests")]
    d = p.evaluate_chain(p.SAFETY_CHAIN, p.Facts(safety_score=0.4, findings=findings))
    assert d.reason == "UnsafeChange"
    assert d.message.startswith("safety score 0.40 < threshold 0.80: 2 findings: [critical] path in ../x")
    assert p.evaluate_chain(p.SAFETY_CHAIN, p.Facts(safety_score=0.85)) is None


def test_evaluation_chain_order():
    chain = p.EVALUATION_CHAIN
    assert p.evaluate_chain(chain, p.Facts(evaluation_failed=True, metrics=None)).reason == "EvaluationFailed"
    d = p.evaluate_chain(chain, p.Facts(evaluation_failed=True, job_reason="DeadlineExceeded", timeout_seconds=60,
                                        failure_message="evaluation Job j failed"))
    assert d.reason == "DeadlineExceeded" and "60s" in d.message and "timeoutSeconds" in d.message
    d = p.evaluate_chain(chain, p.Facts(metrics={"a": 1.0, "b": float("inf")}, required_metrics=["a", "b", "c"]))
    assert d.reason == "MetricsUnavailable" and "missing c" in d.message and "b" in d.message
    ok = {"a": 1.0}
    assert p.evaluate_chain(chain, p.Facts(metrics=ok, stage=0, stage_score=0.1, stage_threshold=0.2)).reason \
        == "StageThresholdNotMet"
    assert p.evaluate_chain(chain, p.Facts(metrics=ok, improvement=0.01, min_improvement=0.02)).reason \
        == "InsufficientImprovement"
    assert p.evaluate_chain(chain, p.Facts(metrics=ok, improvement=0.05, min_improvement=0.02, noise_bound=0.06)) \
        .reason == "InsufficientImprovement"
    assert p.evaluate_chain(chain, p.Facts(metrics=ok, improvement=0.05, min_improvement=0.02)).reason \
        == "ImprovementValidated"
    # stage passed, no full result yet: nothing to decide
    assert p.evaluate_chain(chain, p.Facts(metrics=ok, stage_score=0.3, stage_threshold=0.2)) is None


def test_agent_apply_and_post_apply_chains():
    assert p.evaluate_chain(p.PROPOSAL_CHAIN, p.Facts(paused=True, active_candidates=9)).reason == "AgentPaused"
    assert p.evaluate_chain(p.PROPOSAL_CHAIN, p.Facts(active_candidates=3)).reason == "ConcurrencyLimitReached"
    assert p.evaluate_chain(p.PROPOSAL_CHAIN, p.Facts(active_candidates=2)) is None
    assert p.evaluate_chain(p.APPLY_CHAIN, p.Facts()).reason == "AwaitingApproval"
    assert p.evaluate_chain(p.APPLY_CHAIN, p.Facts(approved=True)) is None
    assert p.evaluate_chain(p.APPLY_CHAIN, p.Facts(auto_apply=True)) is None
    assert p.evaluate_chain(p.APPLY_CHAIN, p.Facts(auto_apply=True, paused=True)).reason == "AgentPaused"
    assert p.evaluate_chain(p.ADMISSION_CHAIN, p.Facts(active_candidates=3)).reason == "ConcurrencyLimitReached"
    assert p.evaluate_chain(p.ROLLOUT_CHAIN, p.Facts(rollout="failed", revision=4)).reason == "RolloutFailed"
    assert p.evaluate_chain(p.ROLLOUT_CHAIN, p.Facts(rollout="complete", revision=4)) is None
    assert p.evaluate_chain(p.POST_APPLY_CHAIN, p.Facts(post_apply_improvement=-0.1, regression_tolerance=0.05)) \
        .reason == "Regression"
    assert p.evaluate_chain(p.POST_APPLY_CHAIN, p.Facts(post_apply_improvement=-0.01, regression_tolerance=0.05)) \
        .reason == "Verified"
    assert p.evaluate_chain(p.POST_APPLY_CHAIN, p.Facts(post_apply_metrics_usable=False)).reason \
        == "VerificationInconclusive"


def test_user_action_chain():
    assert p.evaluate_chain(p.USER_ACTION_CHAIN, p.Facts(user_action="reject", phase="Validated")).reason \
        == "RejectedByUser"
    assert p.evaluate_chain(p.USER_ACTION_CHAIN, p.Facts(user_action="reject", phase="Testing")) is None
    assert p.evaluate_chain(p.USER_ACTION_CHAIN, p.Facts(user_action="approve", phase="Proposed")) is None


def test_reasons_are_camel_case():
    import inspect
    src = inspect.getsource(p)
    import re
    for reason in re.findall(r'Decision\("([^"]+)"', src):
        assert re.fullmatch(r"[A-Z][A-Za-z]+", reason), reason


def test_rank_promotion_policy():
    from dgm_operator.engine.policies import Facts, stage_failed
    rank = dict(stage=0, stage_promotion="rank", eta=2.0)
    assert stage_failed(Facts(stage_score=0.3, stage_peers=[0.1, 0.2, 0.5], **rank)) is None  # top 2 of 4
    d = stage_failed(Facts(stage_score=0.15, stage_peers=[0.1, 0.2, 0.5], **rank))
    assert d is not None and d.reason == "StageNotPromoted" and "rank 3 of 4" in d.message
    floor = stage_failed(Facts(stage_score=0.3, stage_peers=[], stage_threshold=0.5, **rank))
    assert floor is not None and floor.reason == "StageNotPromoted" and "floor" in floor.message
    # the threshold rule is unchanged
    assert stage_failed(Facts(stage=0, stage_score=0.05, stage_threshold=0.1)).reason == "StageThresholdNotMet"

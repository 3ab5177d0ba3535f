"""`dgm bench llm-cost`: what one LLM proposal costs in tokens for the sample agent.

No model is called. The prompts are the real ones (engine/llm.py) built from the quickstart
DGMAgent, the sample agent's files and its benchmark's real output; their size is
estimated without a tokenizer as UTF-8 bytes / 3.5 (engine.llm.estimate_tokens), with the
range bytes / 4 (low) to bytes / 3 (high). Replies are assumed: a diagnosis of
``--diagnosis-tokens`` and an edit reply of ``--reply-tokens``.

Scenarios: the first proposal (from the current revision, no lineage); a later one (a parent
candidate with the grader's per-task failures and two children, as in
tests/unit/testdata/llm); and the bounds (failures cut at 4 KiB, six children with 3,000-
character diffs), each with 0 and with 2 fixes (a reply that did not apply, sent back).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import yaml

from dgm_operator.api import models as api
from dgm_operator.controller import proposal_builders as pb
from dgm_operator.engine import llm, proposal

from ..paths import repo_file
from ..sample_agent.bench import run_bench

WORKSPACE = ("devtools", "dgm_dev", "sample_agent", "workspace")
FEEDBACK = ("block 1 (line 2) for config.yaml: the SEARCH part does not match the file exactly; its first line "
            "'  top_k: 4' is not in the file, the closest is line 4: '  top_k: 6' (copy the old lines exactly)")


def _agent() -> api.DGMAgent:
    obj = yaml.safe_load(repo_file("examples", "quickstart", "dgmagent.yaml").read_text())
    return api.DGMAgent.model_validate(obj)


def _files() -> dict[str, str]:
    root = repo_file(*WORKSPACE)
    return {p.name: p.read_text() for p in sorted(root.iterdir()) if p.is_file()}


def contexts() -> dict[str, dict[str, Any]]:
    agent, files = _agent(), _files()
    measured = run_bench(repo_file(*WORKSPACE), "full")
    metrics = [{"name": k, "value": v} for k, v in measured["metrics"].items()]
    agent.status = api.DGMAgentStatus.model_validate({"currentRevision": 1, "baseline": {"revision": 1, "metrics": metrics}})
    first = pb.build_context(agent, proposal_name="sample-agent-g1", parent_files=files, parent=None, candidates=[])

    parent_cfg = files["config.yaml"].replace("top_k: 4 ", "top_k: 6 ")
    failures = [{"task": f"q{i:03d}", "question": "Which river runs through the town of Halden in the north?",
                 "expected": "Tista", "got": None, "why": "abstained (retrieval score 0.0 < min_score 1.0)"}
                for i in range(40)]
    parent = {"metadata": {"name": "sample-agent-g3"}, "spec": {"description": "raise retrieval.top_k to 6"},
              "status": {"validation": {"improvementScore": 0.006, "metricsAfter": metrics,
                                        "tests": {**measured["tests"], "failures": failures[:3]}}}}
    children = [{"metadata": {"name": f"sample-agent-g{4 + i}", "creationTimestamp": f"2026-05-01T10:0{i}:00Z"},
                 "spec": {"parent": "sample-agent-g3", "description": "switch the scorer",
                          "changes": {"config.yaml": parent_cfg.replace("scorer: overlap", "scorer: tfidf  ")}},
                 "status": {"phase": "Rejected", "reason": "InsufficientImprovement",
                            "message": "improvement 0.0030 <= 0.0100 (minImprovement)",
                            "validation": {"improvementScore": 0.003}}} for i in range(2)]
    later_files = dict(files, **{"config.yaml": parent_cfg})
    later = pb.build_context(agent, proposal_name="sample-agent-g9", parent_files=later_files, parent=parent,
                             candidates=[parent, *children])

    big_parent = json.loads(json.dumps(parent))
    big_parent["status"]["validation"]["tests"]["failures"] = failures
    rewrite = "\n".join(f"# line {i} of a rewritten ranker" for i in range(400)) + "\n"
    many = [{"metadata": {"name": f"sample-agent-g{20 + i}", "creationTimestamp": f"2026-05-01T11:{i:02d}:00Z"},
             "spec": {"parent": "sample-agent-g3", "description": "rewrite the ranker " * 10,
                      "changes": {"ranker.py": rewrite}},
             "status": {"phase": "Rejected", "reason": "StageThresholdNotMet", "message": "stage 0 score -0.1 < 0"}}
            for i in range(8)]
    bounds = pb.build_context(agent, proposal_name="sample-agent-g30", parent_files=later_files, parent=big_parent,
                              candidates=[big_parent, *many])
    return {"first proposal": first.to_wire(), "later proposal": later.to_wire(), "at the bounds": bounds.to_wire()}


def conversation(ctx: dict[str, Any], *, diagnosis_tokens: int, reply_tokens: int, fixes: int,
                 chars_per_token: float) -> dict[str, int]:
    """Prompt and completion tokens of one proposal: every call resends the conversation."""
    def tokens(text: str) -> int:
        return int(math.ceil(len(text.encode()) / chars_per_token))

    diagnosis = "d" * int(diagnosis_tokens * chars_per_token)
    reply = "r" * int(reply_tokens * chars_per_token)
    messages = [llm.system_message(), llm.diagnose_message(ctx)]
    prompt = sum(tokens(m["content"]) for m in messages)
    completion = diagnosis_tokens
    messages += [{"role": "assistant", "content": diagnosis}, llm.implement_message()]
    for attempt in range(fixes + 1):
        prompt += sum(tokens(m["content"]) for m in messages)
        completion += reply_tokens
        messages += [{"role": "assistant", "content": reply}, llm.feedback_message(FEEDBACK)]
    first_call = tokens(llm.system_message()["content"]) + tokens(llm.diagnose_message(ctx)["content"])
    return {"calls": 2 + fixes, "first_prompt": first_call, "prompt": prompt, "completion": completion,
            "total": prompt + completion}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dgm bench llm-cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--diagnosis-tokens", type=int, default=200)
    p.add_argument("--reply-tokens", type=int, default=150)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    rows = []
    for name, ctx in contexts().items():
        size = len(proposal.context_document(proposal.ProposalContext.model_validate(ctx)).encode())
        for fixes in (0, 2):
            est = {cpt: conversation(ctx, diagnosis_tokens=args.diagnosis_tokens, reply_tokens=args.reply_tokens,
                                     fixes=fixes, chars_per_token=cpt) for cpt in (llm.CHARS_PER_TOKEN, 4.0, 3.0)}
            rows.append({"scenario": name, "contextBytes": size, "fixes": fixes, **est[llm.CHARS_PER_TOKEN],
                         "totalLow": est[4.0]["total"], "totalHigh": est[3.0]["total"]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'scenario':<16} {'context B':>9} {'fixes':>5} {'calls':>5} {'1st prompt':>10} {'prompt':>7} "
          f"{'compl.':>6} {'total':>7} {'range (B/4..B/3)':>17}")
    for r in rows:
        print(f"{r['scenario']:<16} {r['contextBytes']:>9} {r['fixes']:>5} {r['calls']:>5} {r['first_prompt']:>10} "
              f"{r['prompt']:>7} {r['completion']:>6} {r['total']:>7} {r['totalLow']:>8}..{r['totalHigh']:<8}")
    return 0

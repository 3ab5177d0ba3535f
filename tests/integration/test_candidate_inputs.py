"""Issue 11, item 6, on the real node: every input that used to crash or bypass the safety
analysis is decided Rejected with a finding, end to end (the operator keeps running and
the agent stays Ready); an image candidate is evaluated with its own image and waits for
approval before it reaches the live Deployment."""

from __future__ import annotations

import json

import pytest

from dgm_operator import __version__

from test_lifecycle import quickstart_objects
from test_realnode import _real_node  # noqa: F401 (autouse: skipped without the real node)

pytestmark = pytest.mark.integration

# the sample agent's image under a second tag (hack/build-images.sh): the same files, another
# reference, so it counts as an image change
AGENT_IMAGE_RELEASE = f"dgm-sample-agent:{__version__}"
BASE_IMAGE = "dgm-base:dev"  # Python without the sample agent: it cannot serve A2A


def _aliases() -> str:
    """The billion-laughs document: nine aliases per level, nine levels."""
    levels = "abcdefghi"
    doc = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for prev, cur in zip(levels, levels[1:]):
        doc += f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]\n"
    return doc


def hostile_inputs(ranker: str) -> dict[str, tuple[dict[str, str], str]]:
    """name -> (changes, the finding rule that decides it). Each Python payload keeps the
    sample agent's ranker, so only the attack differs from a working candidate."""
    return {
        "deep-sum": ({"ranker.py": "x = " + "+".join(["1"] * 15000) + "\n" + ranker}, "python_syntax"),
        "deep-brackets": ({"ranker.py": "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n" + ranker}, "analysis_limit"),
        "deep-yaml": ({"config.yaml": "k: " + "[" * 20000 + "]" * 20000 + "\n"}, "config_syntax"),
        "yaml-aliases": ({"config.yaml": _aliases()}, "analysis_limit"),
        "yaml-duplicate-keys": ({"config.yaml": "retrieval:\n  top_k: 3\n  top_k: 5\n"}, "config_syntax"),
        "cookie-raw-unicode-escape": ({"ranker.py": "# -*- coding: raw_unicode_escape -*-\n"
                                                    "#\\u000aimport os\\u000aos.system('id')\n" + ranker},
                                      "coding_cookie"),
        "cookie-utf-7": ({"ranker.py": "# -*- coding: utf-7 -*-\n" + ranker}, "coding_cookie"),
        "key-trailing-newline": ({"ranker.py\n": "import os\nos.system('id')\n"}, "path"),
        "key-atomic-writer": ({"..data": "x"}, "path"),
        "key-too-long": ({"a" * 254 + ".py": "x = 1\n"}, "path"),
        "reexported-os": ({"ranker.py": "import random\nrandom._os.system('id')\n" + ranker},
                          "private_module_attribute"),
        "module-via-attribute": ({"ranker.py": "import logging\nlogging.os.popen('id')\n" + ranker},
                                 "module_via_attribute"),
        "exec-alias": ({"ranker.py": "_run = exec\n_run('import os')\n" + ranker}, "forbidden_call"),
        "module-patch": ({"ranker.py": "import json\njson.loads = lambda s: 1\n" + ranker}, "module_patch"),
        "sitecustomize": ({"sitecustomize.py": "x = 1\n"}, "protected_file"),
        "path-hook": ({"evil.pth": "import os\n"}, "protected_file"),
    }


def candidate(namespace: str, name: str, *, agent: str = "sample-agent", changes=None, image=None, parent=None):
    spec = {"agentRef": agent, "improvementType": "AlgorithmModification", "description": f"input: {name}"}
    if changes is not None:
        spec["changes"] = changes
    if image is not None:
        spec["image"] = image
    if parent is not None:
        spec["parent"] = parent
    return {"apiVersion": "dgm.io/v1alpha1", "kind": "ImprovementCandidate",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _quickstart(env, **policy):
    objs = quickstart_objects(env.ns)
    agent = objs["dgmagent"][0]
    agent["spec"]["policy"].update({"improvementIntervalMinutes": 600, **policy})
    env.apply(*objs["configmap"], *objs["deployment"], *objs["networkpolicy"], agent)
    env.wait_ready(agent="sample-agent", timeout=300)
    return objs


def test_every_crashing_or_bypassing_input_is_decided_rejected_with_a_finding(env, operator):
    objs = _quickstart(env, maxConcurrentCandidates=2)
    inputs = hostile_inputs(objs["configmap"][0]["data"]["ranker.py"])
    # the parent must be a candidate of the same agent: this one belongs to another agent
    env.apply(candidate(env.ns, "elsewhere", agent="another-agent", changes={"config.yaml": "x: 1\n"}))
    env.apply(candidate(env.ns, "foreign-parent", changes=objs["candidate-good"][0]["spec"]["changes"],
                        parent="elsewhere"))
    env.apply(*(candidate(env.ns, name, changes=changes) for name, (changes, _) in inputs.items()))
    expected = {name: rule for name, (_, rule) in inputs.items()} | {"foreign-parent": "parent_agent"}
    for name, rule in expected.items():
        st = env.wait_phase(name, "Rejected", "Failed", "Applied", "Validated", "AwaitingApproval", timeout=180)["status"]
        assert (st["phase"], st["reason"]) == ("Rejected", "UnsafeChange"), (name, st)
        rules = {f["rule"] for f in st["safety"]["findings"]}
        assert rule in rules, (name, rules)
        assert "validation" not in st or not st["validation"].get("jobName"), (name, "it was evaluated")
    assert operator.proc.poll() is None, "the operator exited"
    ready = next(c for c in env.agent_status(agent="sample-agent")["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    # nothing reached the live agent
    assert env.get("configmap", "sample-agent-config")["data"] == objs["configmap"][0]["data"]


def _agent_container_image(env, candidate_name: str) -> str:
    jobs = env.list("jobs", f"dgm.io/candidate={candidate_name}")
    assert jobs, f"no evaluation Job of {candidate_name}: {json.dumps(env.get('improvementcandidates', candidate_name))}"
    images = {c["image"] for j in jobs for c in j["spec"]["template"]["spec"].get("initContainers") or []
              if c["name"] == "agent"}
    assert len(images) == 1, images
    return images.pop()


def test_an_image_candidate_is_evaluated_with_its_image_and_waits_for_approval(env, operator):
    objs = _quickstart(env, autoApply=True, autoApplyCode=True, maxConcurrentCandidates=2)
    good = objs["candidate-good"][0]["spec"]["changes"]
    env.apply(candidate(env.ns, "image-without-agent", image=BASE_IMAGE),
              candidate(env.ns, "image-release", image=AGENT_IMAGE_RELEASE, changes=good))

    # its own image runs as the agent under test: one that cannot serve the agent earns nothing
    broken = env.wait_phase("image-without-agent", "Rejected", "Failed", "Applied", "Validated",
                            timeout=300)["status"]
    assert _agent_container_image(env, "image-without-agent") == BASE_IMAGE
    # the node could not start its agent: a failed evaluation, which names the cause
    assert broken["phase"] == "Failed" and "dgm-sample-agent" in broken["message"], broken
    assert any(f["rule"] == "image_change" for f in broken["safety"]["findings"]), broken["safety"]

    # an image that works is measured, then waits: the image is not in policy.allowedImages,
    # although autoApply and autoApplyCode are both on
    def decided():
        st = (env.get("improvementcandidates", "image-release") or {}).get("status") or {}
        return st if st.get("phase") in ("Rejected", "Failed", "Applied") or st.get("reason") == "AwaitingApproval" \
            else None
    waiting = env.wait("image-release measured and decided", decided, timeout=400)
    assert (waiting["phase"], waiting["reason"]) == ("Validated", "AwaitingApproval"), waiting
    assert "allowedImages" in waiting["message"], waiting["message"]
    assert _agent_container_image(env, "image-release") == AGENT_IMAGE_RELEASE
    assert waiting["validation"].get("agentImageID", "").startswith("sha256:") or "@sha256:" in \
        waiting["validation"].get("agentImageID", ""), waiting["validation"]
    deployment = env.get("deployment", "sample-agent")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "dgm-sample-agent:dev"

    # approved, it becomes the live image, recorded with the node's image ID
    env.cluster.kubectl("patch", "improvementcandidate", "image-release", "-n", env.ns, "--type=merge",
                        "-p", '{"spec": {"approved": true}}')
    applied = env.wait_phase("image-release", "Applied", "Rejected", "Failed", timeout=180)["status"]
    assert applied["phase"] == "Applied", applied
    deployment = env.get("deployment", "sample-agent")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == AGENT_IMAGE_RELEASE
    revisions = env.agent_status(agent="sample-agent")["revisions"]
    assert revisions[-1]["image"] == AGENT_IMAGE_RELEASE and revisions[-1].get("imageID"), revisions[-1]

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from dgm_operator.engine import configfiles as cf
from dgm_operator.engine import proposers as pr
from dgm_operator.engine.safety import SafetyPolicy, analyze
from dgm_operator.engine.types import Bottleneck, ImprovementType, MetricSpec, SearchParam

FILES = {
    "config.yaml": "retrieval:\n  top_k: 5\n  mode: dense\nbatch_size: 32\n",
    "settings.py": "# tuned by hand\nTEMPERATURE = 0.7  # sampling\nUSE_CACHE = False\n",
    "limits.json": '{\n  "timeout": 10.0\n}\n',
}
SPACE = (
    SearchParam("config.yaml", "retrieval.top_k", "int", 1, 20, step=1, hints={"low_accuracy": "increase"}),
    SearchParam("config.yaml", "batch_size", "int", 8, 64, step=8,
                hints={"slow_response": "decrease", "high_memory": "decrease"}),
    SearchParam("config.yaml", "retrieval.mode", "choice", choices=("sparse", "dense", "hybrid")),
    SearchParam("settings.py", "TEMPERATURE", "float", 0.0, 1.0, hints={"high_errors": "decrease"}),
    SearchParam("settings.py", "USE_CACHE", "bool", hints={"slow_response": "increase"}),
    SearchParam("limits.json", "timeout", "float", 1.0, 60.0),
)


def ctx(metrics, **kw):
    return pr.AgentContext(agent_name="agent", files=FILES, metrics=[MetricSpec("accuracy")], search_space=SPACE,
                           baseline_metrics=metrics, **kw)


def test_bottlenecks_and_type_mapping():
    found = pr.detect_bottlenecks({"response_time": 1.5, "memory_usage": 0.9, "error_rate": 0.2, "accuracy": 0.5})
    assert found == [Bottleneck.SLOW_RESPONSE, Bottleneck.HIGH_MEMORY, Bottleneck.HIGH_ERRORS, Bottleneck.LOW_ACCURACY]
    assert pr.detect_bottlenecks({"response_time": 1.0, "accuracy": 0.8}) == []
    assert pr.select_improvement_type(["low_accuracy", "high_errors"]) is ImprovementType.ALGORITHM_MODIFICATION
    assert pr.select_improvement_type(["high_errors"]) is ImprovementType.CONFIGURATION_UPDATE
    assert pr.select_improvement_type(["low_accuracy", "slow_response"]) is ImprovementType.PARAMETER_TUNING
    assert pr.select_improvement_type([]) is ImprovementType.PARAMETER_TUNING


def test_heuristic_slow_response_moves_hinted_params_in_format():
    draft = pr.HeuristicProposer().propose(ctx({"response_time": 2.0}), random.Random(0))
    assert draft.improvement_type is ImprovementType.PARAMETER_TUNING
    assert set(draft.changes) == {"config.yaml", "settings.py"}
    doc = yaml.safe_load(draft.changes["config.yaml"])
    assert doc["batch_size"] == 24 and doc["retrieval"]["top_k"] == 5
    assert draft.changes["settings.py"] == FILES["settings.py"].replace("USE_CACHE = False", "USE_CACHE = True")
    assert analyze(draft.changes, SafetyPolicy(search_space=SPACE)).score == 1.0


def test_heuristic_low_accuracy_and_errors():
    draft = pr.HeuristicProposer().propose(ctx({"accuracy": 0.5, "error_rate": 0.3}), random.Random(0))
    assert draft.improvement_type is ImprovementType.ALGORITHM_MODIFICATION
    assert cf.get_value("config.yaml", draft.changes["config.yaml"], "retrieval.top_k") == 6
    assert cf.get_value("settings.py", draft.changes["settings.py"], "TEMPERATURE") == pytest.approx(0.6)


def test_heuristic_clamps_and_falls_back_to_mutation():
    files = dict(FILES, **{"config.yaml": "retrieval:\n  top_k: 20\nbatch_size: 32\n"})
    c = pr.AgentContext("a", files, search_space=SPACE, baseline_metrics={"accuracy": 0.1})
    draft = pr.HeuristicProposer().propose(c, random.Random(1))  # top_k already at max
    assert "no hinted parameter can move" in draft.description and draft.changes
    draft = pr.HeuristicProposer().propose(ctx({"accuracy": 0.95}), random.Random(2))
    assert "no bottleneck detected" in draft.description and draft.changes


def test_parameters_proposer_stays_in_space_and_uses_parent():
    parent_files = dict(FILES, **{"limits.json": '{\n  "timeout": 59.0\n}\n'})
    rng = random.Random(5)
    c = ctx({}, parent="agent-c1", parent_files=parent_files)
    for _ in range(200):
        draft = pr.ParametersProposer().propose(c, rng)
        assert draft.parent == "agent-c1" and draft.changes
        merged = {**parent_files, **draft.changes}
        report = analyze(draft.changes, SafetyPolicy(search_space=SPACE))
        assert report.score == 1.0, report.findings
        for name, text in draft.changes.items():
            assert text != parent_files[name]
        top_k = cf.get_value("config.yaml", merged["config.yaml"], "retrieval.top_k")
        assert isinstance(top_k, int) and 1 <= top_k <= 20
        assert cf.get_value("config.yaml", merged["config.yaml"], "batch_size") in range(8, 65, 8)


def test_parameters_reproducible_and_empty_space():
    a = pr.ParametersProposer().propose(ctx({}), random.Random(3))
    b = pr.ParametersProposer().propose(ctx({}), random.Random(3))
    assert a == b
    with pytest.raises(pr.ProposerError, match="no search space"):
        pr.ParametersProposer().propose(pr.AgentContext("a", FILES), random.Random(0))


class _Server:
    def __init__(self, status=200, body=b"", delay=0.0):
        self.status, self.body, self.delay, self.requests = status, body, delay, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                outer.requests.append(json.loads(self.rfile.read(length)))
                if outer.delay:
                    import time
                    time.sleep(outer.delay)
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/propose"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


GOOD = {"improvementType": "ConfigurationUpdate", "description": "raise timeout",
        "changes": {"limits.json": '{"timeout": 20.0}\n'}, "expectedImprovement": 0.1, "riskLevel": 0.2}


def test_webhook_roundtrip():
    with _Server(body=json.dumps(GOOD).encode()) as srv:
        draft = pr.WebhookProposer(srv.url, timeout_seconds=5).propose(ctx({"accuracy": 0.7}, parent="p1"), None)
    assert draft.improvement_type is ImprovementType.CONFIGURATION_UPDATE and draft.parent == "p1"
    assert draft.changes == GOOD["changes"]
    req = srv.requests[0]
    assert req["agent"] == "agent" and req["parent"]["name"] == "p1"
    assert req["baselineMetrics"] == {"accuracy": 0.7} and req["searchSpace"][0]["key"] == "retrieval.top_k"
    assert req["metrics"][0] == {"name": "accuracy", "goal": "maximize", "weight": 1.0, "unit": None}


@pytest.mark.parametrize("status,body,match", [
    (500, b'{"error": "boom"}', "HTTP 500"),
    (200, b"not json", "not JSON"),
    (200, b"[1, 2]", "JSON object"),
    (200, json.dumps({**GOOD, "riskLevel": 3}).encode(), "riskLevel"),
    (200, json.dumps({**GOOD, "changes": {}}).encode(), "changes"),
    (200, json.dumps({k: v for k, v in GOOD.items() if k != "improvementType"}).encode(), "improvementType"),
    (200, json.dumps({**GOOD, "extra": 1}).encode(), "extra"),
])
def test_webhook_errors(status, body, match):
    with _Server(status=status, body=body) as srv:
        with pytest.raises(pr.WebhookError, match=match):
            pr.WebhookProposer(srv.url, timeout_seconds=5).propose(ctx({}), None)


def test_webhook_timeout_and_unreachable():
    with _Server(body=json.dumps(GOOD).encode(), delay=1.0) as srv:
        with pytest.raises(pr.WebhookError, match="timed out after 0.2s"):
            pr.WebhookProposer(srv.url, timeout_seconds=0.2).propose(ctx({}), None)
    with _Server() as srv:
        url = srv.url
    with pytest.raises(pr.WebhookError, match="unreachable|failed"):
        pr.WebhookProposer(url, timeout_seconds=1).propose(ctx({}), None)


def test_make_proposer():
    assert isinstance(pr.make_proposer("heuristic"), pr.HeuristicProposer)
    assert isinstance(pr.make_proposer("parameters", {"scale": 0.2}), pr.ParametersProposer)
    assert isinstance(pr.make_proposer("webhook", {"url": "http://127.0.0.1:1/x"}), pr.WebhookProposer)
    with pytest.raises(ValueError):
        pr.make_proposer("webhook")

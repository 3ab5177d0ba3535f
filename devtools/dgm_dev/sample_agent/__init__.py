"""The quickstart sample agent: a small retrieval question-answering agent.

Its behaviour depends on ``config.yaml`` and ``ranker.py`` in its workspace (the agent's
ConfigMap), so dgm-operator candidates can tune parameters and rewrite code. It serves the
Agent2Agent protocol (``server``) and plain HTTP. The package holds the passages it answers
from, never the questions or their answers: those are the grader's task suite
(``devtools/suites/sample-qa.yaml``), outside every installed package.
"""

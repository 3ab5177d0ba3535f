"""The quickstart sample agent: a small retrieval question-answering agent.

Its behaviour depends on ``config.yaml`` and ``ranker.py`` in its workspace (the agent's
ConfigMap), so dgm-operator candidates can tune parameters and rewrite code. The benchmark
(``bench``) and its dataset live in this package, out of the candidates' reach.
"""

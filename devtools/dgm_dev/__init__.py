"""dgm-operator's development tooling: the dev cluster, the demo, the benchmarks and the
sample and toy agents. Its own distribution (``dgm-operator-dev`` in ``devtools/``); the
operator's runtime never imports it. It adds ``dgm dev-cluster``, ``dgm demo`` and
``dgm bench`` to the ``dgm`` command through the ``dgm.commands`` entry-point group.
"""

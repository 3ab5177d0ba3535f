"""Scoring function of the sample QA agent. Lives in the agent's ConfigMap, so
AlgorithmModification candidates may rewrite it. The agent calls

    score(query, doc, stats, method) -> float

query/doc: lists of terms; stats: {"df": {term: document frequency}, "n_docs": int,
"avg_len": float}; method: retrieval.scorer of config.yaml.
"""

import math


def score(query, doc, stats, method="overlap"):
    doc_terms = set(doc)
    if method == "overlap":
        return float(sum(1 for t in set(query) if t in doc_terms))
    n = stats["n_docs"]
    df = stats["df"]
    if method == "tfidf":
        total = 0.0
        for t in set(query):
            if t in doc_terms:
                tf = doc.count(t)
                total += (1.0 + math.log(tf)) * math.log((n + 1) / (df.get(t, 0) + 1))
        return total
    if method == "bm25":
        k1, b = 1.2, 0.75
        avg = stats["avg_len"] or 1.0
        total = 0.0
        for t in set(query):
            tf = doc.count(t)
            if tf:
                idf = math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5))
                total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avg))
        return total
    raise ValueError(f"unknown scorer {method!r}")

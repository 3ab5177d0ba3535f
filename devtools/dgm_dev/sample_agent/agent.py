"""The sample agent proper: retrieval over the bundled passages, then a sentence reader.

The package holds the passages only (``data/towns.json``, the agent's knowledge base); the
questions and their expected answers are the grader's task suite (``devtools/suites``), which is
never installed with the agent.

Answer quality depends on the workspace's ``config.yaml`` (scorer, top_k, chunking, text
normalisation, n-grams, abstention threshold) and on its ``ranker.py`` (the scoring code).
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

# Simulated cost of the downstream reader (an LLM would be priced per context token):
# a query's response time is its measured compute time plus this times the context size.
READER_SECONDS_PER_TOKEN = 0.004
# Declared memory budget of the index; memory_usage is the estimate divided by this.
MEMORY_BUDGET_BYTES = 512 * 1024
BYTES_PER_POSTING = 48

DEFAULT_CONFIG: dict[str, Any] = {
    "retrieval": {"scorer": "overlap", "top_k": 4, "chunk_size": 2, "chunk_overlap": 0, "min_score": 1.0},
    "text": {"lowercase": True, "stemming": False, "stopwords": False, "ngrams": 1},
}

STOPWORDS = frozenset(
    "a an and are as at be by call does each for from has have how in is it its of on or that the their "
    "there this to was were what when where which who whom why with".split()
)
_SUFFIXES = ("ings", "ing", "ers", "er", "eds", "ed", "es", "s", "ly")
_WORD = re.compile(r"[A-Za-z0-9]+")
_SENT = re.compile(r"(?<=[.!?])\s+")


def stem(word: str) -> str:
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            return word[: -len(suf)]
    return word


def load_passages() -> dict[str, Any]:
    """The bundled corpus: ``{"passages": [{"id": ..., "text": ...}, ...]}`` (no questions)."""
    text = resources.files(__package__).joinpath("data/towns.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def default_workspace() -> Path:
    """The bundled default workspace (same files as the quickstart ConfigMap)."""
    return Path(str(resources.files(__package__).joinpath("workspace")))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def load_config(workspace: Path) -> dict[str, Any]:
    path = Path(workspace) / "config.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    return _merge(DEFAULT_CONFIG, data or {})


def load_ranker(workspace: Path) -> Callable[..., float]:
    path = Path(workspace) / "ranker.py"
    if not path.exists():
        path = default_workspace() / "ranker.py"
    spec = importlib.util.spec_from_file_location("dgm_sample_agent_ranker", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.score


@dataclass
class Chunk:
    passage: str
    text: str
    terms: list[str]
    sentences: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass
class Answer:
    text: str | None
    score: float
    passages: list[str]
    context_tokens: int
    seconds: float

    @property
    def abstained(self) -> bool:
        return self.text is None


class QAAgent:
    def __init__(self, workspace: Path | str, corpus: dict[str, Any] | None = None):
        self.workspace = Path(workspace)
        self.config = load_config(self.workspace)
        self.score_fn = load_ranker(self.workspace)
        self.corpus = corpus or load_passages()
        r, t = self.config["retrieval"], self.config["text"]
        self.method = str(r["scorer"])
        self.top_k = max(1, int(r["top_k"]))
        self.chunk_size = max(1, int(r["chunk_size"]))
        self.chunk_overlap = max(0, min(int(r["chunk_overlap"]), self.chunk_size - 1))
        self.min_score = float(r["min_score"])
        self.lowercase = bool(t["lowercase"])
        self.stemming = bool(t["stemming"])
        self.stopwords = bool(t["stopwords"])
        self.ngrams = max(1, min(int(t["ngrams"]), 3))
        self.chunks = self._build_chunks()
        df: dict[str, int] = {}
        for c in self.chunks:
            for term in set(c.terms):
                df[term] = df.get(term, 0) + 1
        self.stats = {
            "df": df,
            "n_docs": len(self.chunks),
            "avg_len": sum(len(c.terms) for c in self.chunks) / max(1, len(self.chunks)),
        }

    # -- text ---------------------------------------------------------------
    def analyze(self, text: str) -> list[str]:
        words = _WORD.findall(text)
        if self.lowercase:
            words = [w.lower() for w in words]
        if self.stopwords:
            words = [w for w in words if w.lower() not in STOPWORDS]
        if self.stemming:
            words = [stem(w) for w in words]
        terms = list(words)
        for n in range(2, self.ngrams + 1):
            terms += ["_".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        return terms

    def _build_chunks(self) -> list[Chunk]:
        chunks = []
        step = self.chunk_size - self.chunk_overlap
        for p in self.corpus["passages"]:
            sents = [s for s in _SENT.split(p["text"].strip()) if s]
            for start in range(0, len(sents), step):
                part = sents[start : start + self.chunk_size]
                text = " ".join(part)
                chunks.append(Chunk(p["id"], text, self.analyze(text), [(s, self.analyze(s)) for s in part]))
                if start + self.chunk_size >= len(sents):
                    break
        return chunks

    def memory_bytes(self) -> int:
        """Estimated index size: postings of every chunk and sentence plus the texts."""
        postings = sum(len(c.terms) + sum(len(t) for _, t in c.sentences) for c in self.chunks)
        postings += len(self.stats["df"]) * 2
        return postings * BYTES_PER_POSTING + sum(len(c.text) for c in self.chunks)

    # -- answering ------------------------------------------------------------
    def answer(self, question: str) -> Answer:
        start = time.perf_counter()
        q = self.analyze(question)
        scored = [(self.score_fn(q, c.terms, self.stats, self.method), i) for i, c in enumerate(self.chunks)]
        scored.sort(key=lambda x: (-x[0], x[1]))
        top = scored[: self.top_k]
        best_score = top[0][0] if top else 0.0
        context_tokens = sum(len(_WORD.findall(self.chunks[i].text)) for _, i in top)
        text = None
        if best_score >= self.min_score:
            best = None
            for rank, (chunk_score, i) in enumerate(top):
                for sent, terms in self.chunks[i].sentences:
                    s = self.score_fn(q, terms, self.stats, self.method) + 0.1 * chunk_score
                    if best is None or s > best[0]:
                        best = (s, sent)
            text = best[1] if best else None
        elapsed = time.perf_counter() - start
        return Answer(
            text=text,
            score=float(best_score),
            passages=[self.chunks[i].passage for _, i in top],
            context_tokens=context_tokens,
            seconds=elapsed + READER_SECONDS_PER_TOKEN * context_tokens,
        )

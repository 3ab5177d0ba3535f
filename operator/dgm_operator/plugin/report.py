"""An HTML report of one agent's improvement run: a chart of scores over the candidates
in creation order (with the best-so-far line) and the lineage tree, as inline SVG so the
file is self-contained. Pure: agent and candidate dicts (as read from the API) in, text out."""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from ..engine.archive import resolve_parents

PHASE_COLOURS = {
    "Applied": "#1a7f37", "Validated": "#2da44e", "Rejected": "#9a6700", "Failed": "#cf222e",
    "RolledBack": "#8250df", "Testing": "#0969da", "Proposed": "#57606a",
}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _score(obj: Mapping[str, Any]) -> float | None:
    return (_status(obj).get("validation") or {}).get("improvementScore")


def ordered(candidates: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(candidates, key=lambda c: (c["metadata"].get("creationTimestamp") or "", c["metadata"]["name"]))


def lineage(candidates: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """parent name ('' = the baseline) -> children names, in creation order."""
    parent_of, _ = resolve_parents((c["metadata"]["name"], (c.get("spec") or {}).get("parent"))
                                   for c in ordered(candidates))
    children: dict[str, list[str]] = {"": []}
    for name, parent in parent_of.items():
        children.setdefault(parent or "", []).append(name)
    return children


def phase_counts(candidates: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in candidates:
        phase = _status(c).get("phase") or "Proposed"
        counts[phase] = counts.get(phase, 0) + 1
    return dict(sorted(counts.items()))


def score_chart(candidates: Sequence[Mapping[str, Any]], width: int = 720, height: int = 260) -> str:
    """SVG: one dot per evaluated candidate (colour = phase), and the best score so far."""
    points = [(i, _score(c), _status(c).get("phase") or "Proposed", c["metadata"]["name"])
              for i, c in enumerate(ordered(candidates))]
    scored = [p for p in points if p[1] is not None]
    pad = 40
    if not scored:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60"><text x="10" y="30">no evaluated candidates yet</text></svg>'
    lo = min(0.0, min(p[1] for p in scored))
    hi = max(0.0, max(p[1] for p in scored))
    hi = hi if hi > lo else lo + 1.0
    n = max(len(points) - 1, 1)

    def xy(i: int, s: float) -> tuple[float, float]:
        return pad + (width - 2 * pad) * i / n, height - pad - (height - 2 * pad) * (s - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<line x1="{pad}" y1="{xy(0, 0)[1]:.1f}" x2="{width - pad}" y2="{xy(0, 0)[1]:.1f}" stroke="#d0d7de"/>',
             f'<text x="4" y="{xy(0, hi)[1] + 4:.1f}">{hi:.3f}</text><text x="4" y="{xy(0, lo)[1] + 4:.1f}">{lo:.3f}</text>',
             f'<text x="{width / 2 - 60:.0f}" y="{height - 8}">candidates in creation order</text>']
    best, path = None, []
    for i, s, _, _ in points:
        if s is not None and (best is None or s > best):
            best = s
        if best is not None:
            x, y = xy(i, best)
            path.append(f"{x:.1f},{y:.1f}")
    parts.append(f'<polyline fill="none" stroke="#0969da" stroke-width="2" points="{" ".join(path)}"/>')
    for i, s, phase, name in scored:
        x, y = xy(i, s)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{PHASE_COLOURS.get(phase, "#57606a")}">'
                     f'<title>{html.escape(name)}: {s:.4f} ({phase})</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def tree_svg(candidates: Sequence[Mapping[str, Any]], row: int = 22, indent: int = 22) -> str:
    """SVG: the lineage tree, one row per candidate, edges from each parent."""
    kids = lineage(candidates)
    by_name = {c["metadata"]["name"]: c for c in candidates}
    rows: list[tuple[str, int]] = [("", 0)]

    def walk(parent: str, depth: int) -> None:
        for child in kids.get(parent, []):
            rows.append((child, depth + 1))
            walk(child, depth + 1)

    walk("", 0)
    position = {name: i for i, (name, _) in enumerate(rows)}
    height = row * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{height}" font-family="monospace" font-size="12">']
    for i, (name, depth) in enumerate(rows):
        x, y = 10 + depth * indent, 16 + i * row
        if name:
            parent = (by_name[name].get("spec") or {}).get("parent") or ""
            parent = parent if parent in position else ""
            px, py = 10 + (depth - 1) * indent + 4, 16 + position[parent] * row
            parts.append(f'<path d="M{px},{py + 4} V{y - 4} H{x - 2}" fill="none" stroke="#8c959f"/>')
            st = _status(by_name[name])
            phase, score = st.get("phase") or "Proposed", _score(by_name[name])
            label = f"{name}  {phase}" + (f"  {score:+.4f}" if score is not None else "") + \
                    (f"  rev {st['revision']}" if st.get("revision") else "")
            colour = PHASE_COLOURS.get(phase, "#57606a")
        else:
            label, colour = "baseline (revision 1)", "#24292f"
        parts.append(f'<circle cx="{x + 4}" cy="{y - 4}" r="4" fill="{colour}"/>'
                     f'<text x="{x + 12}" y="{y}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _revision_row(r: Mapping[str, Any]) -> str:
    score = "" if r.get("score") is None else f"{r['score']:+.4f}"
    cells = [r.get("revision"), r.get("candidate") or "(original)", r.get("image") or "", r.get("appliedAt") or "",
             score, r.get("rolledBackAt") or ""]
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def render_html(agent: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]]) -> str:
    st = agent.get("status") or {}
    name = agent["metadata"]["name"]
    baseline = st.get("baseline") or {}
    revisions = st.get("revisions") or []
    best = max((c for c in candidates if _score(c) is not None), key=_score, default=None)
    rows = "".join(_revision_row(r) for r in revisions)
    phases = ", ".join(f"{k}: {v}" for k, v in phase_counts(candidates).items()) or "none"
    metrics = ", ".join(f"{m['name']}={m['value']:.4g}" for m in baseline.get("metrics") or []) or "not measured"
    best_text = f"{best['metadata']['name']} ({_score(best):+.4f})" if best else "none yet"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dgm-operator report: {html.escape(name)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#24292f}} table{{border-collapse:collapse}}
td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left}} .legend span{{margin-right:1em}}</style></head>
<body><h1>Agent {html.escape(name)}</h1>
<p>Namespace {html.escape(agent['metadata'].get('namespace', ''))} · current revision {st.get('currentRevision', '-')}
 · baseline ({html.escape(metrics)}) · best candidate {html.escape(best_text)} · candidates by phase: {html.escape(phases)}</p>
<h2>Improvement score over candidates</h2>
<p>Each score is against the revision that was current when the candidate was evaluated.</p>
<p class="legend">{''.join(f'<span style="color:{c}">&#9679; {p}</span>' for p, c in PHASE_COLOURS.items())}
<span style="color:#0969da">— best so far</span></p>
{score_chart(candidates)}
<h2>Lineage (the archive)</h2>
{tree_svg(candidates)}
<h2>Revisions</h2>
<table><tr><th>revision</th><th>candidate</th><th>image</th><th>applied</th><th>score</th><th>rolled back</th></tr>{rows}</table>
</body></html>
"""

"""`kubectl dgm`: the kubectl plugin (installed as the `kubectl-dgm` console script).

Every action is imperative and goes through an annotation the operator watches, never
through a spec that Git may own (the same way Argo Rollouts' promote and abort work):

  tree AGENT              the lineage of the agent's candidates, the current revision marked
  approve CANDIDATE       dgm.io/action=approve (the candidate must be Validated)
  reject CANDIDATE        dgm.io/action=reject (Proposed or Validated)
  rollback AGENT [--to N] dgm.io/rollback-to=previous@<time> or N@<time>
  propose AGENT           dgm.io/propose=<time>
  report AGENT [-o FILE]  an HTML report of the agent and its archive

The tree is built and rendered by pure functions (`build_tree`, `render_tree`: dicts in,
text out); annotation values come from `rollback_value`/`propose_value`; the checks that
refuse an action from `check_action`/`check_rollback`. Only `main` talks to the cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..api import constants
from ..engine.archive import resolve_parents
from ..api.constants import AGENTS, CANDIDATES, VERSION
MERGE_PATCH = "application/merge-patch+json"
PLUGIN_MANAGER = "kubectl-dgm"

# phases in which an action makes sense (the operator ignores it elsewhere)
ACTION_PHASES: dict[str, tuple[str, ...]] = {
    "approve": ("Validated",),
    "reject": ("Proposed", "Validated"),
}


class PluginError(Exception):
    """A user-facing error: printed as `error: ...`, exit code 1."""


class Conflict(Exception):
    """The object changed between the read and the patch."""


# -- pure helpers ---------------------------------------------------------------------------

def _status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("status") or {}


def candidate_phase(obj: Mapping[str, Any]) -> str:
    """The phase of a candidate; one the operator has not seen yet is Proposed."""
    return _status(obj).get("phase") or "Proposed"


def check_action(action: str, candidate: Mapping[str, Any], *, force: bool = False) -> None:
    """Raise PluginError when ``action`` makes no sense in the candidate's phase."""
    allowed = ACTION_PHASES[action]
    phase = candidate_phase(candidate)
    if phase in allowed or force:
        return
    name = candidate.get("metadata", {}).get("name", "?")
    reason = _status(candidate).get("reason")
    why = f" ({reason})" if reason else ""
    raise PluginError(f"candidate {name} is {phase}{why}; {action} applies to a candidate that is "
                      f"{' or '.join(allowed)} (use --force to annotate anyway)")


def previous_revision(agent_status: Mapping[str, Any], revision: int) -> int | None:
    """The newest revision below ``revision`` that was not rolled back (as the operator picks it)."""
    older = [int(r["revision"]) for r in agent_status.get("revisions") or []
             if int(r["revision"]) < revision and not r.get("rolledBackAt")]
    return max(older) if older else None


def check_rollback(agent: Mapping[str, Any], to: int | None) -> int:
    """The revision a rollback will restore; PluginError when there is none or it is current."""
    name = agent.get("metadata", {}).get("name", "?")
    status = _status(agent)
    revisions = status.get("revisions") or []
    current = status.get("currentRevision")
    if not revisions or current is None:
        raise PluginError(f"agent {name} has no revision history yet (the operator has not snapshotted it)")
    current = int(current)
    if to is None:
        target = previous_revision(status, current)
        if target is None:
            raise PluginError(f"agent {name} is at revision {current}; there is no earlier revision to roll back to")
        return target
    known = sorted(int(r["revision"]) for r in revisions)
    if to not in known:
        raise PluginError(f"agent {name} has no revision {to} (revisions: {', '.join(map(str, known))})")
    if to == current:
        raise PluginError(f"revision {to} is already the current revision of agent {name}")
    return to


def rollback_value(to: int | None, now: float) -> str:
    """`previous@<unix time>` or `N@<unix time>`: a new value for each request."""
    return f"{'previous' if to is None else int(to)}@{int(now)}"


def propose_value(now: float) -> str:
    return str(int(now))


def annotation_patch(key: str, value: str, resource_version: str | None = None) -> dict[str, Any]:
    """A merge patch touching only metadata.annotations[key] (and, when given, guarded by the
    resourceVersion the decision was made on, so a concurrent change answers 409)."""
    meta: dict[str, Any] = {"annotations": {key: value}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"metadata": meta}


@dataclass
class Node:
    name: str
    obj: Mapping[str, Any] | None = None  # None for the baseline root
    children: list["Node"] = field(default_factory=list)
    note: str = ""


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("creationTimestamp") or "", meta.get("name") or "")


def build_tree(agent_name: str, candidates: Sequence[Mapping[str, Any]]) -> Node:
    """The lineage tree: the baseline at the root, each candidate under ``spec.parent``.

    A candidate whose parent is not among ``candidates`` (pruned, or never existed) hangs
    off the root with a note, as the operator's archive does; a parent cycle cannot loop."""
    root = Node(agent_name)
    ordered = sorted(candidates, key=_sort_key)
    nodes = {c["metadata"]["name"]: Node(c["metadata"]["name"], c) for c in ordered}
    parent_of, notes = resolve_parents(
        (name, ((node.obj or {}).get("spec") or {}).get("parent")) for name, node in nodes.items())
    for name, note in notes.items():
        nodes[name].note = note
    for name, node in nodes.items():
        parent = parent_of[name]
        (nodes[parent].children if parent else root.children).append(node)
    return root


def _fmt_score(value: Any, signed: bool) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):+.3f}" if signed else f"{float(value):.2f}"
    except (TypeError, ValueError):
        return str(value)


def render_tree(agent: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]]) -> str:
    """The lineage as text: one line per candidate with phase, improvement score, safety
    score and revision (if applied); the current revision marked with `*`."""
    meta = agent.get("metadata") or {}
    status = _status(agent)
    current = status.get("currentRevision")
    root = build_tree(meta.get("name", "?"), candidates)
    rows: list[tuple[str, str, str, str, str, str]] = []
    root_rev = "1" if status.get("revisions") else "-"
    root_current = current is not None and int(current) == 1
    rows.append((f"{root.name} (baseline)", status.get("phase") or "-", "-", "-",
                 root_rev + (" *" if root_current else ""), ""))

    def walk(node: Node, prefix: str, last: bool) -> None:
        obj = node.obj or {}
        st = _status(obj)
        phase = candidate_phase(obj)
        revision = st.get("revision")
        rev = "-"
        if revision is not None:
            rev = str(revision)
            if current is not None and int(revision) == int(current) and phase == "Applied":
                rev += " *"
        notes = [n for n in (st.get("reason"), node.note) if n]
        rows.append((prefix + ("`-- " if last else "|-- ") + node.name, phase,
                     _fmt_score((st.get("validation") or {}).get("improvementScore"), True),
                     _fmt_score((st.get("safety") or {}).get("score"), False), rev, "; ".join(notes)))
        child_prefix = prefix + ("    " if last else "|   ")
        for i, child in enumerate(node.children):
            walk(child, child_prefix, i == len(node.children) - 1)

    for i, child in enumerate(root.children):
        walk(child, "", i == len(root.children) - 1)
    header = ("NAME", "PHASE", "SCORE", "SAFETY", "REVISION", "REASON")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
    lines = []
    for r in [header] + rows:
        cells = [r[i].ljust(widths[i]) for i in range(len(widths))] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    if current is not None:
        lines.append(f"\n* current revision: {current}")
    if not candidates:
        lines.append("(no candidates yet)")
    return "\n".join(lines) + "\n"


# -- the cluster --------------------------------------------------------------------------

class Cluster:
    """The few API calls the plugin needs, on the user's kubeconfig/context."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None):
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        self.ApiException = ApiException
        default_ns = "default"
        try:
            self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
            try:
                _, active = config.list_kube_config_contexts(config_file=kubeconfig)
                if context:
                    contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                    active = next((c for c in contexts if c.get("name") == context), active)
                default_ns = ((active or {}).get("context") or {}).get("namespace") or "default"
            except Exception:  # noqa: BLE001 - the namespace default is best effort
                pass
        except config.ConfigException as exc:
            if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise PluginError(f"cannot load kubeconfig: {exc}") from exc
            config.load_incluster_config()
            self.api = client.ApiClient()
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
                    default_ns = fh.read().strip() or "default"
            except OSError:
                pass
        self.namespace = namespace or default_ns
        self.custom = client.CustomObjectsApi(self.api)

    def _error(self, what: str, exc: Any) -> PluginError:
        if exc.status == 404:
            return PluginError(f"{what} not found in namespace {self.namespace}")
        if exc.status == 403:
            return PluginError(f"forbidden: {what} in namespace {self.namespace}: {_api_message(exc)}")
        return PluginError(f"{what}: the API answered {exc.status} {exc.reason}: {_api_message(exc)}")

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self.ApiException as exc:
            if exc.status == 409:
                raise Conflict() from None
            raise self._error(what, exc) from None
        except OSError as exc:  # urllib3 connection errors derive from it
            raise PluginError(f"cannot reach the cluster: {exc}") from None

    def get(self, plural: str, name: str) -> dict[str, Any]:
        what = f"{'DGMAgent' if plural == AGENTS else 'ImprovementCandidate'} {name}"
        return self._call(what, lambda: self.custom.get_namespaced_custom_object(
            constants.GROUP, VERSION, self.namespace, plural, name))

    def candidates(self, agent: str) -> list[dict[str, Any]]:
        out = self._call("ImprovementCandidates", lambda: self.custom.list_namespaced_custom_object(
            constants.GROUP, VERSION, self.namespace, CANDIDATES, label_selector=f"{constants.LABEL_AGENT}={agent}"))
        return list(out.get("items") or [])

    def annotate(self, plural: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        what = f"{'DGMAgent' if plural == AGENTS else 'ImprovementCandidate'} {name}"
        return self._call(what, lambda: self.custom.patch_namespaced_custom_object(
            constants.GROUP, VERSION, self.namespace, plural, name, dict(patch),
            field_manager=PLUGIN_MANAGER, _content_type=MERGE_PATCH))


def _api_message(exc: Any) -> str:
    import json
    try:
        return json.loads(exc.body).get("message") or str(exc.body)
    except Exception:  # noqa: BLE001
        return str(getattr(exc, "body", "") or exc)


# -- commands -----------------------------------------------------------------------------

def _with_retry(fn: Callable[[], str]) -> str:
    """Read, decide, patch guarded by resourceVersion; one more round on a conflict."""
    for attempt in range(3):
        try:
            return fn()
        except Conflict:
            if attempt == 2:
                raise PluginError("the object keeps changing under the request; try again") from None
    raise AssertionError("unreachable")


def cmd_tree(cl: Cluster, args) -> int:
    agent = cl.get(AGENTS, args.agent)
    sys.stdout.write(render_tree(agent, cl.candidates(args.agent)))
    return 0


def cmd_action(cl: Cluster, args) -> int:
    action = args.command

    def attempt() -> str:
        cand = cl.get(CANDIDATES, args.candidate)
        check_action(action, cand, force=args.force)
        cl.annotate(CANDIDATES, args.candidate, annotation_patch(
            constants.ANNOTATION_ACTION, action, cand["metadata"].get("resourceVersion")))
        return candidate_phase(cand)

    phase = _with_retry(attempt)
    verb = "approved" if action == "approve" else "rejected"
    print(f"improvementcandidate.dgm.io/{args.candidate} {verb} (was {phase}; "
          f"{constants.ANNOTATION_ACTION}={action}, the operator acts on it next)")
    return 0


def cmd_rollback(cl: Cluster, args) -> int:
    def attempt() -> str:
        agent = cl.get(AGENTS, args.agent)
        target = check_rollback(agent, args.to)
        value = rollback_value(args.to, time.time())
        cl.annotate(AGENTS, args.agent, annotation_patch(
            constants.ANNOTATION_ROLLBACK, value, agent["metadata"].get("resourceVersion")))
        current = _status(agent).get("currentRevision")
        return f"dgmagent.dgm.io/{args.agent} rollback from revision {current} to {target} requested " \
               f"({constants.ANNOTATION_ROLLBACK}={value})"

    print(_with_retry(attempt))
    return 0


def cmd_propose(cl: Cluster, args) -> int:
    cl.get(AGENTS, args.agent)  # a clear "not found" before patching
    value = propose_value(time.time())
    cl.annotate(AGENTS, args.agent, annotation_patch(constants.ANNOTATION_PROPOSE, value))
    print(f"dgmagent.dgm.io/{args.agent} proposal requested ({constants.ANNOTATION_PROPOSE}={value})")
    return 0


def cmd_report(cl: Cluster, args) -> int:
    agent = cl.get(AGENTS, args.agent)
    candidates = cl.candidates(args.agent)
    try:
        from .report import render_html
    except ImportError as exc:
        raise PluginError(f"the HTML report is not available in this installation: {exc}") from None
    html = render_html(agent, candidates)
    path = args.output or f"{args.agent}-report.html"
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(html)
    except OSError as exc:
        raise PluginError(f"cannot write {path}: {exc}") from None
    print(os.path.abspath(path))
    return 0


COMMANDS: dict[str, Callable[[Cluster, Any], int]] = {
    "tree": cmd_tree, "approve": cmd_action, "reject": cmd_action,
    "rollback": cmd_rollback, "propose": cmd_propose, "report": cmd_report,
}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a revision number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"revisions start at 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS,
                        help="namespace (default: the kubeconfig context's, else default)")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context to use")
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path of the kubeconfig file")
    parser = argparse.ArgumentParser(
        prog="kubectl dgm", parents=[common],
        description="Inspect and steer dgm-operator agents and candidates. Actions are annotations "
                    "the operator watches; no spec that Git may own is ever changed.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("tree", parents=[common], help="lineage tree of an agent's candidates",
                       description="Print the lineage of the agent's candidates (parent in spec.parent; "
                                   "the baseline is the root) with phase, improvement score, safety "
                                   "score and revision; the current revision is marked with *.")
    p.add_argument("agent", help="DGMAgent name")
    for action, phases in ACTION_PHASES.items():
        p = sub.add_parser(action, parents=[common], help=f"{action} a candidate ({constants.ANNOTATION_ACTION}={action})",
                           description=f"Set {constants.ANNOTATION_ACTION}={action} on the candidate. Refused unless "
                                       f"the candidate is {' or '.join(phases)}, unless --force.")
        p.add_argument("candidate", help="ImprovementCandidate name")
        p.add_argument("--force", action="store_true", help="annotate whatever the phase")
    p = sub.add_parser("rollback", parents=[common], help="roll an agent back to an earlier revision",
                       description=f"Set {constants.ANNOTATION_ROLLBACK}=previous@<time> (or N@<time> with --to). "
                                   "The revision must exist in status.revisions and not be the current one. "
                                   "For a rollback declared in Git use spec.rollbackToRevision instead.")
    p.add_argument("agent", help="DGMAgent name")
    p.add_argument("--to", type=positive_int, metavar="N", help="revision to restore (default: the previous one)")
    p = sub.add_parser("propose", parents=[common], help="ask the agent for one proposal now",
                       description=f"Set {constants.ANNOTATION_PROPOSE}=<unix time>: the operator proposes one "
                                   "candidate at its next reconcile (when the agent is Ready and has room).")
    p.add_argument("agent", help="DGMAgent name")
    p = sub.add_parser("report", parents=[common], help="write an HTML report of an agent",
                       description="Write an HTML report of the agent and its candidates; prints the path.")
    p.add_argument("agent", help="DGMAgent name")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: AGENT-report.html)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        cl = Cluster(getattr(args, "kubeconfig", None), getattr(args, "context", None),
                     getattr(args, "namespace", None))
        return COMMANDS[args.command](cl, args)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

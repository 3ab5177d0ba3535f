"""The Python rules of the safety analysis: one syntax tree in, findings out.

Works on the tree :mod:`.pysource` parsed from the bytes Python reads, with an iterative
walk. Module facts (is ``logging.os`` a module? is ``io.open`` the built-in ``open``?) are
taken from the real modules by introspection, without executing anything of the
candidate's: ``inspect.getattr_static`` on standard-library modules the policy allows (they
are imported into the operator if they are not already), ``sys.modules`` for anything else
already loaded, and the syntax tree of the workspace's own modules. The rule table lives in
:mod:`.safety`'s docstring.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import pkgutil
import string
import sys
import types
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Union

from . import pysource
from .types import Finding, Severity

CRIT, HIGH, MEDIUM = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM

# -- policy tables --------------------------------------------------------------------------
DEFAULT_ALLOWED_IMPORTS = frozenset({
    "math", "cmath", "decimal", "fractions", "re", "json", "collections", "itertools", "functools",
    "operator", "statistics", "string", "dataclasses", "typing", "heapq", "bisect", "random", "time",
    "datetime", "enum", "abc", "copy", "textwrap", "unicodedata", "__future__", "numbers", "array",
    "contextlib", "difflib", "hashlib", "base64", "uuid", "logging",
})
FORBIDDEN_MODULES = frozenset({
    # processes, native code, the import system, introspection of live objects
    "subprocess", "ctypes", "cffi", "importlib", "imp", "zipimport", "pkgutil", "runpy", "multiprocessing",
    "concurrent", "threading", "asyncio", "pty", "tty", "termios", "signal", "resource", "fcntl", "mmap",
    "gc", "inspect", "code", "codeop", "pdb", "bdb", "trace", "faulthandler", "site", "sysconfig",
    "builtins", "posix", "nt",
    # deserialisation and persistence
    "marshal", "pickle", "pickletools", "copyreg", "shelve", "dbm",
    # the file system beyond reading
    "shutil", "tempfile",
    # network
    "socket", "ssl", "select", "selectors", "urllib", "http", "ftplib", "telnetlib", "smtplib", "poplib",
    "imaplib", "nntplib", "xmlrpc", "socketserver", "wsgiref", "webbrowser",
})
"""Never importable (any prefix of a dotted name), whatever the allow list says; so is
every top-level module whose name starts with ``_`` (``_thread``, ``_posixsubprocess``, ...)
except ``__future__``. ``os``, ``sys``, ``io`` and ``pathlib`` are merely off the default
allow list; their dangerous members are :data:`FORBIDDEN_MEMBERS`."""
FORBIDDEN_SUBMODULES = frozenset({"logging.config", "logging.handlers"})
"""Submodules of allowed packages that are not allowed with them (``logging.config`` builds
objects from dotted names and can listen on a socket; ``logging.handlers`` sends over the
network)."""
_NEVER_INTROSPECT = frozenset({"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo",
                               "__main__", "__hello__", "__phello__", "ensurepip", "venv"})

FORBIDDEN = "forbidden"  # kinds of dangerous callables and values
DANGEROUS_BUILTINS: dict[str, str] = {
    "eval": FORBIDDEN, "exec": FORBIDDEN, "compile": FORBIDDEN, "__import__": FORBIDDEN,
    "breakpoint": FORBIDDEN, "globals": FORBIDDEN, "locals": FORBIDDEN, "vars": FORBIDDEN, "help": FORBIDDEN,
    "getattr": "getattr", "hasattr": "hasattr", "setattr": "setattr", "delattr": "delattr",
    "open": "open", "type": "type",
}
"""Built-ins checked wherever their name is referenced, not only where it is called:
``_run = exec; _run(src)`` is the same as ``exec(src)``."""
_SYS_FORBIDDEN = ("modules", "settrace", "setprofile", "addaudithook", "meta_path", "path_hooks",
                  "path_importer_cache", "setrecursionlimit", "breakpointhook", "excepthook",
                  "displayhook", "unraisablehook", "setswitchinterval", "call_tracing", "exit")
FORBIDDEN_MEMBERS: dict[str, tuple[str, str]] = {
    **{f"sys.{n}": (FORBIDDEN, "reaches or rewires the interpreter") for n in _SYS_FORBIDDEN},
    **{f"os.{n}": (FORBIDDEN, "runs or signals processes") for n in (
        "system", "popen", "fork", "forkpty", "kill", "killpg", "startfile", "execl", "execle", "execlp",
        "execlpe", "execv", "execve", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
        "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "putenv", "unsetenv", "environ")},
    "io.open_code": (FORBIDDEN, "opens files for the import system"),
    "string.Formatter": (FORBIDDEN, "Formatter.get_field reaches any attribute by name"),
    "typing.get_type_hints": (FORBIDDEN, "evaluates strings as code"),
    "typing.ForwardRef": (FORBIDDEN, "evaluates strings as code"),
    "functools.singledispatch": (FORBIDDEN, "register() evaluates string annotations as code"),
    "functools.singledispatchmethod": (FORBIDDEN, "register() evaluates string annotations as code"),
    "logging.currentframe": (FORBIDDEN, "returns a live frame"),
    "dataclasses.make_dataclass": ("type_factory", "creates a class from a namespace of computed names"),
    "operator.attrgetter": ("attrgetter", "getattr by name"),
    "operator.methodcaller": ("methodcaller", "getattr by name"),
    "logging.FileHandler": ("file_writer", "writes a file"),
    "logging.basicConfig": ("basic_config", "writes a file when given filename="),
}
"""Members of otherwise allowed modules (by the module's real name): forbidden outright, or
checked like the built-in they stand for. A member of any allowed module that *is* one of
these objects, or one of the :data:`DANGEROUS_BUILTINS` (``io.open is open``), is treated the
same (:func:`_identity_kinds`)."""

FRAME_ATTRS = frozenset({
    "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_lasti", "f_lineno", "f_trace",
    "f_trace_lines", "f_trace_opcodes", "tb_frame", "tb_next", "tb_lasti", "tb_lineno",
    "gi_frame", "gi_code", "gi_running", "gi_yieldfrom", "gi_suspended",
    "cr_frame", "cr_code", "cr_await", "cr_running", "cr_origin", "cr_suspended",
    "ag_frame", "ag_code", "ag_await", "ag_running",
    "co_code", "co_consts", "co_names", "co_varnames", "co_freevars", "co_cellvars", "co_filename",
    "co_name", "co_qualname", "co_firstlineno", "co_lnotab", "co_linetable", "co_exceptiontable",
    "co_flags", "co_stacksize", "co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
    "co_lines", "co_positions", "cell_contents", "func_globals", "func_code", "im_func", "im_self",
})
"""Attributes of frames, code objects, generators, coroutines, tracebacks and cells: each
leads to globals, builtins or code of other modules, whatever object it is read from."""
SAFE_DUNDER_ATTRS = frozenset({
    # plain data
    "__name__", "__qualname__", "__doc__", "__module__", "__class__", "__dict__", "__version__", "__file__",
    # data-model methods (calling one does what the operator or built-in does)
    "__init__", "__new__", "__del__", "__repr__", "__str__", "__bytes__", "__format__", "__hash__", "__bool__",
    "__lt__", "__le__", "__eq__", "__ne__", "__gt__", "__ge__", "__len__", "__length_hint__", "__getitem__",
    "__setitem__", "__delitem__", "__missing__", "__iter__", "__reversed__", "__contains__", "__next__",
    "__enter__", "__exit__", "__aenter__", "__aexit__", "__aiter__", "__anext__", "__await__", "__call__",
    "__add__", "__sub__", "__mul__", "__matmul__", "__truediv__", "__floordiv__", "__mod__", "__divmod__",
    "__pow__", "__lshift__", "__rshift__", "__and__", "__xor__", "__or__", "__radd__", "__rsub__", "__rmul__",
    "__rmatmul__", "__rtruediv__", "__rfloordiv__", "__rmod__", "__rdivmod__", "__rpow__", "__rlshift__",
    "__rrshift__", "__rand__", "__rxor__", "__ror__", "__iadd__", "__isub__", "__imul__", "__imatmul__",
    "__itruediv__", "__ifloordiv__", "__imod__", "__ipow__", "__ilshift__", "__irshift__", "__iand__",
    "__ixor__", "__ior__", "__neg__", "__pos__", "__abs__", "__invert__", "__complex__", "__int__",
    "__float__", "__index__", "__round__", "__trunc__", "__floor__", "__ceil__", "__post_init__",
    "__copy__", "__deepcopy__", "__getstate__", "__setstate__", "__sizeof__", "__fspath__",
    "__set_name__", "__class_getitem__", "__init_subclass__", "__instancecheck__", "__subclasscheck__",
    "__get__", "__set__", "__delete__",
})
"""Dunder attributes that may be read on any object. Every other dunder attribute
(``__globals__``, ``__subclasses__``, ``__bases__``, ``__mro__``, ``__builtins__``,
``__code__``, ``__closure__``, ``__self__``, ``__func__``, ``__wrapped__``, ``__reduce__``,
``__getattribute__``, ``__loader__``, ``__spec__``, ...), and writing any dunder attribute,
is refused; on a zero-argument ``super()`` every dunder may be read (it is the instance's
own class chain)."""
SAFE_DUNDER_NAMES = frozenset({"__name__", "__doc__", "__file__", "__debug__", "__class__", "__module__",
                               "__qualname__", "__all__", "__version__", "__author__", "__annotations__"})
RESERVED_NAMES = frozenset({"__builtins__", "__import__", "__loader__", "__spec__", "__path__", "__package__",
                            "__build_class__", "__cached__"})
"""Names no binding (assignment, def, import alias, ...) may take: they change how the module
or code created from it resolves built-ins and imports."""
MODULE_ALIASES = frozenset({"os.path"})
"""Attributes that are another module by design (``os.path`` is ``posixpath``): reached
through them, the dotted name is what the allow list is asked about."""
MAX_MESSAGE = 300
SAFE_MODULE_DUNDERS = frozenset({"__name__", "__doc__", "__file__", "__version__", "__all__"})
MAX_STRING_CODE = 2000
_CODE_NODES = (ast.Call, ast.NamedExpr, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
               ast.GeneratorExp, ast.Await, ast.Yield, ast.YieldFrom)


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


# -- references -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalModule:
    """What other files may see of a workspace module: its import bindings."""

    name: str
    bindings: Mapping[str, "Binding"] = field(default_factory=dict)


@dataclass(frozen=True)
class ModuleRef:
    name: str  # the module's real dotted name ("os" for random._os)
    obj: types.ModuleType | None = None
    local: LocalModule | None = None


@dataclass(frozen=True)
class ObjRef:
    """An object reached through a module; `obj` is None when it could not be resolved."""

    dotted: str
    obj: Any = None
    resolved: bool = False


@dataclass(frozen=True)
class KindRef:
    """A dangerous callable (:data:`DANGEROUS_BUILTINS` kinds and :data:`FORBIDDEN_MEMBERS` kinds)."""

    kind: str
    what: str
    reason: str = ""


Ref = Union[ModuleRef, ObjRef, KindRef, None]


@dataclass(frozen=True)
class Binding:
    """A name bound by an import: to a module, or to a member of one (`ref` resolved)."""

    ref: Ref
    module: bool


@dataclass
class Context:
    allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
    local_modules: Mapping[str, LocalModule] = field(default_factory=dict)


_MISSING = object()


@functools.lru_cache(maxsize=1024)
def _introspect(name: str, may_import: bool) -> types.ModuleType | None:
    """The real module `name` if it can be had without running anything foreign: already
    loaded, or a standard-library module that may be imported."""
    module = sys.modules.get(name)
    if isinstance(module, types.ModuleType):
        return module
    top = name.partition(".")[0]
    if (not may_import or top not in sys.stdlib_module_names or top in _NEVER_INTROSPECT
            or top in FORBIDDEN_MODULES or top.startswith("_")):
        return None
    try:
        module = importlib.import_module(name)
    except Exception:
        return None
    return module if isinstance(module, types.ModuleType) else None


def _static(obj: Any, name: str) -> Any:
    try:
        return inspect.getattr_static(obj, name, _MISSING)
    except Exception:
        return _MISSING


def _module_name(module: types.ModuleType) -> str:
    name = _static(module, "__name__")
    return name if isinstance(name, str) else "?"


def _is_package(module: types.ModuleType | None) -> bool:
    return module is not None and _static(module, "__path__") is not _MISSING


def _is_submodule(package: str, name: str) -> bool:
    submodules = _submodules(package)
    return submodules is None or name in submodules  # cannot tell: assume it is one (the stricter reading)


@functools.lru_cache(maxsize=256)
def _submodules(package: str) -> frozenset[str] | None:
    """Names of a loaded package's submodules, listed once from its path (nothing is imported)."""
    module = sys.modules.get(package)
    path: Any = _static(module, "__path__") if module is not None else _MISSING
    if path is _MISSING:
        return None
    try:
        return frozenset(info.name for info in pkgutil.iter_modules([str(p) for p in path]))
    except Exception:
        return None


@functools.lru_cache(maxsize=1)
def _identity_kinds() -> dict[int, tuple[Any, KindRef]]:
    """id(object) -> (object, kind) for every dangerous callable, so that any alias of one in
    an allowed module (``io.open``) is recognised."""
    out: dict[int, tuple[Any, KindRef]] = {}
    for name, kind in DANGEROUS_BUILTINS.items():
        obj = getattr(builtins, name, None)
        if obj is not None:
            out[id(obj)] = (obj, KindRef(kind, name))
    for dotted, (kind, reason) in FORBIDDEN_MEMBERS.items():
        module_name, _, attr = dotted.rpartition(".")
        module = _introspect(module_name, True) if module_name in ("sys", "os", "io") or module_name in DEFAULT_ALLOWED_IMPORTS else None
        obj = _static(module, attr) if module is not None else _MISSING
        if obj is not _MISSING and (callable(obj) or isinstance(obj, (dict, list))):
            out.setdefault(id(obj), (obj, KindRef(kind, dotted, reason)))
    return out


def _kind_of(obj: Any) -> KindRef | None:
    hit = _identity_kinds().get(id(obj))
    return hit[1] if hit is not None and hit[0] is obj else None


def _known_module_name(name: str) -> bool:
    return name in sys.stdlib_module_names or name in FORBIDDEN_MODULES


# -- imports --------------------------------------------------------------------------------
def import_problem(module: str, ctx: Context) -> tuple[str, Severity, str] | None:
    """(rule, severity, message) when `module` (absolute, dotted) may not be imported."""
    parts = module.split(".")
    if not module or not all(p.isidentifier() for p in parts):
        return ("forbidden_import", CRIT, f"import of {module!r}")
    if parts[0] in ctx.local_modules:
        if len(parts) > 1:
            return ("import_not_allowed", HIGH, f"{module}: a workspace module is not a package")
        return None
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in FORBIDDEN_MODULES or prefix in FORBIDDEN_SUBMODULES:
            return ("forbidden_import", CRIT, f"import of {module}")
    if parts[0].startswith("_") and parts[0] != "__future__" or any(p.startswith("_") for p in parts[1:]):
        return ("forbidden_import", CRIT, f"import of {module}: private module")
    if not any(".".join(parts[:i]) in ctx.allowed_imports for i in range(1, len(parts) + 1)):
        return ("import_not_allowed", HIGH, f"import of {module} is not on the allow list")
    return None


def module_ref(name: str, ctx: Context) -> ModuleRef:
    if name in ctx.local_modules:
        return ModuleRef(name, None, ctx.local_modules[name])
    return ModuleRef(name, _introspect(name, import_problem(name, ctx) is None))


def collect_bindings(tree: ast.AST, ctx: Context) -> tuple[dict[str, Binding], set[str]]:
    """(name -> binding, explicitly imported module names) of every import in `tree`, in any
    scope (flow-insensitive: a name once bound to a module is a module everywhere)."""
    bindings: dict[str, Binding] = {}
    explicit: set[str] = set()

    def bind(name: str, binding: Binding) -> None:
        old = bindings.get(name)
        if old is None or (binding.module and not old.module) or (
                isinstance(binding.ref, KindRef) and not old.module and not isinstance(old.ref, KindRef)):
            bindings[name] = binding

    for node in pysource.statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                explicit.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
                if alias.asname:
                    bind(alias.asname, Binding(module_ref(alias.name, ctx), True))
                else:
                    bind(parts[0], Binding(module_ref(parts[0], ctx), True))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                for alias in node.names:
                    if alias.name != "*":
                        bind(alias.asname or alias.name, Binding(ModuleRef("." * node.level + alias.name), True))
                continue
            base = module_ref(node.module or "", ctx)
            for alias in node.names:
                if alias.name == "*":
                    continue
                binding = _from_binding(base, alias.name, ctx)
                if binding.module and isinstance(binding.ref, ModuleRef):
                    explicit.add(binding.ref.name)
                bind(alias.asname or alias.name, binding)
    return bindings, explicit


def _from_binding(base: ModuleRef, name: str, ctx: Context) -> Binding:
    """What ``from base import name`` binds."""
    if base.local is not None:
        inner = base.local.bindings.get(name)
        return inner if inner is not None else Binding(ObjRef(f"{base.name}.{name}"), False)
    if base.obj is not None:
        member = _static(base.obj, name)
        if isinstance(member, types.ModuleType):
            return Binding(ModuleRef(_module_name(member), member), True)
        if member is _MISSING:
            if _is_package(base.obj) and _is_submodule(base.name, name):
                sub = f"{base.name}.{name}"
                return Binding(module_ref(sub, ctx), True)
            return Binding(ObjRef(f"{base.name}.{name}"), False)
        return Binding(_member_ref(_module_name(base.obj), name, member), False)
    if _known_module_name(name):
        return Binding(ModuleRef(name), True)
    return Binding(ObjRef(f"{base.name}.{name}"), False)


def _member_ref(module: str, name: str, member: Any) -> Ref:
    dotted = f"{module}.{name}"
    if dotted in FORBIDDEN_MEMBERS:
        kind, reason = FORBIDDEN_MEMBERS[dotted]
        return KindRef(kind, dotted, reason)
    if module == "os" and name.startswith(("exec", "spawn", "posix_spawn")):
        return KindRef(FORBIDDEN, dotted, "runs processes")
    alias = _kind_of(member)
    if alias is not None:
        return KindRef(alias.kind, f"{dotted} (= {alias.what})", alias.reason)
    return ObjRef(dotted, member, True)


def local_module(name: str, tree: ast.AST, ctx: Context) -> LocalModule:
    """The import bindings of a workspace module, as other files see them."""
    try:
        bindings, _explicit = collect_bindings(tree, Context(ctx.allowed_imports, {}))
    except Exception:
        bindings = {}
    return LocalModule(name, bindings)


# -- the rules ------------------------------------------------------------------------------
class _FileRules:
    def __init__(self, filename: str, tree: ast.Module, ctx: Context) -> None:
        self.filename = filename
        self.tree = tree
        self.ctx = ctx
        self.findings: list[Finding] = []
        self.bindings, self.explicit = collect_bindings(tree, ctx)
        self.handled: set[int] = set()  # ids of module-valued expressions in a permitted position

    # reporting
    def add(self, rule: str, severity: Severity, node: ast.AST | None, message: str) -> None:
        line = getattr(node, "lineno", None)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "..."
        self.findings.append(Finding(rule, severity, self.filename,
                                     (f"line {line}: " if line else "") + message))

    # entry point
    def run(self) -> list[Finding]:
        entries = pysource.walk(self.tree, typing_call=self._is_typing_call)
        dispatch: dict[type, Callable[[Any, pysource.Entry], None]] = {
            ast.Import: self._import, ast.ImportFrom: self._import_from, ast.Name: self._name,
            ast.Attribute: self._attribute, ast.Subscript: self._subscript, ast.Constant: self._string,
            ast.MatchClass: self._class_pattern,
        }
        binders = _BINDERS
        for entry in entries:
            kind = type(entry.node)
            handler = dispatch.get(kind)
            if handler is not None:
                handler(entry.node, entry)
            if kind in binders:
                self._bound_names(entry.node, entry)
        return self.findings

    def _class_pattern(self, node: ast.MatchClass, entry: pysource.Entry) -> None:
        """``case object(__globals__=g)`` reads the attribute by name."""
        for attr in node.kwd_attrs:
            self._attr_name_rule(attr, node, store=False, on_super=False, how=" in a class pattern")

    def _subscript(self, node: ast.Subscript, entry: pysource.Entry) -> None:
        if not isinstance(node.ctx, ast.Load):
            self._patch_target(node)

    # -- imports
    def _import(self, node: ast.Import, entry: pysource.Entry) -> None:
        for alias in node.names:
            problem = import_problem(alias.name, self.ctx)
            if problem:
                self.add(problem[0], problem[1], node, problem[2])

    def _import_from(self, node: ast.ImportFrom, entry: pysource.Entry) -> None:
        if node.level:
            self.add("import_not_allowed", HIGH, node, "relative import")
            return
        module = node.module or ""
        problem = import_problem(module, self.ctx)
        if problem:
            self.add(problem[0], problem[1], node, problem[2])
            return
        base = module_ref(module, self.ctx)
        for alias in node.names:
            name = alias.name
            if name == "*":
                self.add("import_star", HIGH, node, f"from {module} import *: the names it binds cannot be checked")
                continue
            if is_dunder(name) and module != "__future__":
                self.add("dunder_access", CRIT, node, f"import of {module}.{name}")
                continue
            if name.startswith("_") and module != "__future__":
                self.add("private_module_attribute", CRIT, node, f"import of private {module}.{name}")
                continue
            binding = _from_binding(base, name, self.ctx)
            ref = binding.ref
            if binding.module and isinstance(ref, ModuleRef):
                dotted = f"{module}.{name}"
                if ref.name == dotted or dotted in MODULE_ALIASES:
                    sub_problem = import_problem(dotted, self.ctx)
                    if sub_problem:
                        self.add(sub_problem[0], sub_problem[1], node, sub_problem[2])
                else:
                    sub_problem = import_problem(ref.name, self.ctx)
                    self.add("module_via_attribute", CRIT if sub_problem else HIGH, node,
                             f"{dotted} is the module {ref.name}"
                             + (f": {sub_problem[2]}" if sub_problem else ": import it explicitly"))
            elif isinstance(ref, KindRef) and ref.kind == FORBIDDEN:
                self.add("forbidden_member", CRIT, node, f"import of {ref.what}: {ref.reason}")

    # -- names
    def _name(self, node: ast.Name, entry: pysource.Entry) -> None:
        name = node.id
        if not isinstance(node.ctx, ast.Load):
            return  # bindings are checked in _bound_names
        binding = self.bindings.get(name)
        if binding is not None:
            if binding.module:
                self._module_value(node, entry, binding.ref)
            else:
                self._use(binding.ref, node, entry)
            return
        kind = DANGEROUS_BUILTINS.get(name)
        if kind is None and is_dunder(name) and name not in SAFE_DUNDER_NAMES:
            self.add("dunder_access", CRIT, node, f"reference to {name}")
            return
        if kind == "type" and entry.flags & pysource.IN_ANNOTATION and isinstance(
                entry.parent, (ast.arg, ast.FunctionDef, ast.AsyncFunctionDef, ast.AnnAssign, ast.Subscript,
                               ast.BinOp, ast.Tuple, ast.List)):
            return  # `x: type`, `-> type[T]`: evaluating the annotation only reads the name
        if kind is not None:
            self._use(KindRef(kind, name), node, entry)

    def _bound_names(self, node: ast.AST, entry: pysource.Entry) -> None:
        names: list[str] = []
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names = [node.id]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.asname] if node.asname else []
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names = list(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names = [node.name]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names = [node.name]
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names = [node.rest]
        for name in names:
            if name in RESERVED_NAMES:
                self.add("dunder_access", CRIT, node, f"binding of {name}")

    # -- attributes
    def _attribute(self, node: ast.Attribute, entry: pysource.Entry) -> None:
        store = not isinstance(node.ctx, ast.Load)
        self._attr_name_rule(node.attr, node, store=store, on_super=_is_zero_arg_super(node.value))
        if store:
            self._patch_target(node)
        outermost = not (isinstance(entry.parent, ast.Attribute) and entry.field == "value")
        if outermost:
            chain, root = _chain(node)
            if isinstance(root, ast.Name) and root.id in self.bindings:
                ref = self.bindings[root.id].ref
                for attr, attr_node in chain:
                    ref = self._step(ref, attr, attr_node, report=True)
                    if ref is None:
                        return
                    if isinstance(ref, KindRef) and attr_node is not node:
                        self.add("forbidden_member", CRIT, attr_node, f"reference to {ref.what}: {ref.reason}")
                        return
                if isinstance(ref, ModuleRef) and not store:
                    self._module_value(node, entry, ref)
                elif isinstance(ref, KindRef):
                    self._use(ref, node, entry)

    def _attr_name_rule(self, attr: str, node: ast.AST, *, store: bool, on_super: bool, how: str = "") -> None:
        """Rules on an attribute name whatever the object: frame internals, dunders."""
        if attr in FRAME_ATTRS:
            self.add("frame_access", CRIT, node, f"access to {attr}{how} (frame, code or generator internals)")
        elif is_dunder(attr):
            if store:
                self.add("dunder_access", CRIT, node, f"assignment to {attr}{how}")
            elif not on_super and attr not in SAFE_DUNDER_ATTRS:
                self.add("dunder_access", CRIT, node, f"access to {attr}{how}")

    def _step(self, ref: Ref, attr: str, node: ast.AST, *, report: bool) -> Ref:
        """The reference `ref.attr`, reporting what the module rules refuse; None stops."""
        def add(rule: str, severity: Severity, message: str) -> None:
            if report:
                self.add(rule, severity, node, message)

        if isinstance(ref, ModuleRef):
            if attr.startswith("_"):
                if attr in SAFE_MODULE_DUNDERS:
                    return None
                add("private_module_attribute", CRIT, f"access to {attr} of module {ref.name}")
                return None
            sub = f"{ref.name}.{attr}"
            if sub in self.explicit:
                return module_ref(sub, self.ctx)
            if ref.local is not None:
                inner = ref.local.bindings.get(attr)
                if inner is None:
                    return ObjRef(sub)
                return self._reached(inner.ref, sub, add) if inner.module else inner.ref
            if ref.obj is not None:
                member = _static(ref.obj, attr)
                if isinstance(member, types.ModuleType):
                    return self._reached(ModuleRef(_module_name(member), member), sub, add)
                if member is _MISSING:
                    if _is_package(ref.obj) and _is_submodule(ref.name, attr):
                        return self._reached(ModuleRef(sub), sub, add)
                    return self._maybe_module(attr, sub, add)
                return _member_ref(_module_name(ref.obj), attr, member)
            return self._maybe_module(attr, sub, add)
        if isinstance(ref, ObjRef):
            sub = f"{ref.dotted}.{attr}"
            if attr.startswith("_") and not is_dunder(attr):
                add("private_module_attribute", CRIT, f"access to {attr} reached through a module ({ref.dotted})")
                return None
            if ref.resolved and not is_dunder(attr):
                member = _static(ref.obj, attr)
                if isinstance(member, types.ModuleType):
                    return self._reached(ModuleRef(_module_name(member), member), sub, add)
                if member is not _MISSING:
                    kind = _kind_of(member)
                    return KindRef(kind.kind, f"{sub} (= {kind.what})", kind.reason) if kind else ObjRef(sub, member, True)
            return ObjRef(sub)
        return None

    def _maybe_module(self, attr: str, sub: str, add: Callable[[str, Severity, str], None]) -> Ref:
        """An attribute that cannot be resolved (a module that is not introspected, or a
        member missing here): refused when it is named like a module that may not be imported."""
        if _known_module_name(attr) and import_problem(attr, self.ctx) is not None:
            add("module_via_attribute", CRIT, f"{sub} may be the module {attr}, which may not be imported")
            return None
        return ObjRef(sub)

    def _reached(self, target: Ref, via: str, add: Callable[[str, Severity, str], None]) -> Ref:
        """A module reached through an attribute (``logging.os``): critical unless it could be
        imported as it is; even then it must be imported explicitly (high), ``os.path`` excepted."""
        if not isinstance(target, ModuleRef):
            return target
        problem = import_problem(via if via in MODULE_ALIASES else target.name, self.ctx)
        if problem:
            add("module_via_attribute", CRIT, f"{via} reaches the module {target.name}: {problem[2]}")
            return None
        if via not in MODULE_ALIASES:
            add("module_via_attribute", HIGH, f"{via} is the module {target.name}: import it explicitly")
        return module_ref(target.name, self.ctx) if target.obj is None and target.local is None else target

    # -- module values and patches
    def _module_value(self, node: ast.expr, entry: pysource.Entry, ref: Ref) -> None:
        """A module-valued expression may only be the object of an attribute access."""
        if isinstance(entry.parent, ast.Attribute) and entry.field == "value":
            return
        if id(node) in self.handled:
            return
        what = ref.name if isinstance(ref, ModuleRef) else "a module"
        self.add("module_as_value", CRIT, node, f"the module {what} used as a value (only attribute access is allowed)")

    def _patch_target(self, node: ast.expr) -> None:
        """Writing into an attribute, or an item, reached through a module."""
        through_attribute = False
        base: ast.expr = node
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            through_attribute = through_attribute or isinstance(base, ast.Attribute)
            base = base.value
        if isinstance(base, ast.Name) and through_attribute:
            binding = self.bindings.get(base.id)
            if binding is not None and binding.module:
                self.add("module_patch", CRIT, node, f"assignment into the module {base.id} (monkey-patching)")

    # -- dangerous callables
    def _use(self, ref: Ref, node: ast.expr, entry: pysource.Entry) -> None:
        if not isinstance(ref, KindRef):
            return
        call = entry.parent if isinstance(entry.parent, ast.Call) and entry.field == "func" else None
        what, kind = ref.what, ref.kind
        if kind == FORBIDDEN:
            reason = f": {ref.reason}" if ref.reason else ""
            self.add("forbidden_call", CRIT, node, (f"call of {what}()" if call else f"reference to {what}") + reason)
        elif kind == "type_factory":
            self.add("type_creation", CRIT, node, f"{what}: {ref.reason}")
        elif call is None and kind != "hasattr":
            if kind in ("file_writer", "basic_config"):
                self.add("file_write", HIGH, node, f"reference to {what}: {ref.reason}")
            else:
                self.add("forbidden_call" if kind in ("open", "type") else "dynamic_attribute", CRIT, node,
                         f"reference to {what} other than a direct call")
        elif call is not None:
            getattr(self, f"_call_{kind}")(call, what)

    def _literal_name(self, call: ast.Call, index: int) -> str | None:
        if len(call.args) > index and not any(isinstance(a, ast.Starred) for a in call.args[:index + 1]):
            arg = call.args[index]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return arg.value
        return None

    def _module_arg(self, call: ast.Call) -> Ref:
        if not call.args or isinstance(call.args[0], ast.Starred):
            return None
        target = call.args[0]
        chain, root = _chain(target) if isinstance(target, ast.Attribute) else ([], target)
        if not isinstance(root, ast.Name) or root.id not in self.bindings:
            return None
        ref = self.bindings[root.id].ref
        for attr, attr_node in chain:
            ref = self._step(ref, attr, attr_node, report=False)
        return ref if isinstance(ref, ModuleRef) else None

    def _check_literal_attr(self, name: str, call: ast.Call, how: str, store: bool) -> None:
        for candidate in {name, unicodedata.normalize("NFKC", name)}:
            self._attr_name_rule(candidate, call, store=store, on_super=False, how=how)

    def _call_getattr(self, call: ast.Call, what: str) -> None:
        name = self._literal_name(call, 1)
        if name is None or call.keywords:
            self.add("dynamic_attribute", CRIT, call, f"{what}() with a computed attribute name")
            return
        module = self._module_arg(call)
        if module is not None:
            self.handled.add(id(call.args[0]))
            result = self._step(module, name, call, report=True)
            if isinstance(result, ModuleRef):
                self.add("module_as_value", CRIT, call, f"{what}() returns the module {result.name} as a value")
            elif isinstance(result, KindRef) and result.kind != "hasattr":
                self.add("forbidden_member", CRIT, call, f"{what}() returns {result.what}, which is checked where it is used")
        self._check_literal_attr(name, call, f" via {what}()", store=False)

    def _call_hasattr(self, call: ast.Call, what: str) -> None:
        if self._module_arg(call) is not None:
            self.handled.add(id(call.args[0]))

    def _call_setattr(self, call: ast.Call, what: str) -> None:
        name = self._literal_name(call, 1)
        if self._module_arg(call) is not None:
            self.handled.add(id(call.args[0]))
            self.add("module_patch", CRIT, call, f"{what}() on a module (monkey-patching)")
            return
        if name is None or call.keywords:
            self.add("dynamic_attribute", CRIT, call, f"{what}() with a computed attribute name")
            return
        self._check_literal_attr(name, call, f" via {what}()", store=True)

    _call_delattr = _call_setattr

    def _call_attrgetter(self, call: ast.Call, what: str) -> None:
        if not call.args or call.keywords or any(
                not (isinstance(a, ast.Constant) and isinstance(a.value, str)) for a in call.args):
            self.add("dynamic_attribute", CRIT, call, f"{what}() with computed attribute names")
            return
        for arg in call.args:
            assert isinstance(arg, ast.Constant)
            for part in str(arg.value).split("."):
                self._check_literal_attr(part, call, f" via {what}()", store=False)

    def _call_methodcaller(self, call: ast.Call, what: str) -> None:
        name = self._literal_name(call, 0)
        if name is None:
            self.add("dynamic_attribute", CRIT, call, f"{what}() with a computed method name")
            return
        self._check_literal_attr(name, call, f" via {what}()", store=False)

    def _call_type(self, call: ast.Call, what: str) -> None:
        if len(call.args) != 1 or call.keywords or isinstance(call.args[0], ast.Starred):
            self.add("type_creation", CRIT, call, f"{what}() with other than one argument creates a class dynamically")

    def _call_open(self, call: ast.Call, what: str) -> None:
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            self.add("file_write", HIGH, call, f"{what}() with unpacked arguments: the mode cannot be checked")
            return
        mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
        if any(k.arg == "opener" for k in call.keywords) or len(call.args) > 7:
            self.add("file_write", HIGH, call, f"{what}() with an opener")
        if mode is None:
            return
        if not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)):
            self.add("file_write", HIGH, call, f"{what}() with a computed mode")
            return
        if not any(c in mode.value for c in "wax+"):
            return
        path = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "file"), None)
        if isinstance(path, ast.Constant) and isinstance(path.value, str):
            target = path.value
            if (target.startswith("/") and not target.startswith("/tmp/")) or ".." in target.replace("\\", "/").split("/"):
                self.add("file_write", CRIT, call, f"{what}({target!r}) for writing outside the workspace and /tmp")
                return
        self.add("file_write", HIGH, call, f"{what}() for writing ({mode.value!r})")

    def _call_file_writer(self, call: ast.Call, what: str) -> None:
        self.add("file_write", HIGH, call, f"{what}(): writes a file")

    def _call_basic_config(self, call: ast.Call, what: str) -> None:
        if any(k.arg in (None, "filename") for k in call.keywords):
            self.add("file_write", HIGH, call, f"{what}(filename=...): writes a file")

    # -- strings
    def _string(self, node: ast.Constant, entry: pysource.Entry) -> None:
        value = node.value
        if not isinstance(value, str) or isinstance(entry.parent, ast.Expr):
            return  # a docstring or bare string does nothing
        if "{" in value and "." in value:
            self._format_fields(value, node)
        if entry.flags & (pysource.IN_ANNOTATION | pysource.IN_SUBSCRIPT | pysource.IN_TYPING_CALL):
            strict = bool(entry.flags & (pysource.IN_ANNOTATION | pysource.IN_TYPING_CALL))
            problem = _string_code_problem(value, strict)
            if problem:
                self.add("string_code", CRIT, node, f"{problem} (typing may evaluate it as code)")

    def _format_fields(self, value: str, node: ast.AST) -> None:
        """``"{0.__globals__}".format(f)`` reads attributes by name."""
        pending, seen = [value], 0
        while pending and seen < 4:
            text = pending.pop()
            seen += 1
            try:
                parsed = list(string.Formatter().parse(text))
            except (ValueError, TypeError):
                continue
            for _literal, field_name, spec, _conversion in parsed:
                if field_name:
                    for part in _format_attrs(field_name):
                        self._attr_name_rule(part, node, store=False, on_super=False, how=" in a format string")
                if spec and "{" in spec:
                    pending.append(spec)

    def _is_typing_call(self, call: ast.Call) -> bool:
        func = call.func
        root: ast.expr = func
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name):
            return False
        binding = self.bindings.get(root.id)
        if binding is None:
            return False
        ref = binding.ref
        name = ref.name if isinstance(ref, ModuleRef) else ref.dotted if isinstance(ref, ObjRef) else \
            ref.what if isinstance(ref, KindRef) else ""
        return name.split(".")[0] in ("typing", "typing_extensions")


_BINDERS = frozenset({ast.Name, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.alias, ast.Global,
                      ast.Nonlocal, ast.ExceptHandler, ast.arg, ast.MatchAs, ast.MatchStar, ast.MatchMapping})


def _is_zero_arg_super(node: ast.expr) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
            and not node.args and not node.keywords)


def _chain(node: ast.Attribute) -> tuple[list[tuple[str, ast.Attribute]], ast.expr]:
    """([(attr, node)] from the root outwards, root expression) of ``a.b.c``."""
    chain: list[tuple[str, ast.Attribute]] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        chain.append((current.attr, current))
        current = current.value
    chain.reverse()
    return chain, current


def _format_attrs(field_name: str) -> Iterable[str]:
    """Attribute names in a format field such as ``0.a.b[x].c`` (one linear pass)."""
    for part in field_name.split(".")[1:]:
        yield part.partition("[")[0]


def _string_code_problem(value: str, strict: bool) -> str | None:
    """Why a string typing could evaluate is code; None when it is a plain type expression
    (or, outside annotations, does not parse at all)."""
    pending: list[tuple[str, int]] = [(value, 0)]
    while pending:
        text, depth = pending.pop()
        if depth > 3:
            return "strings nested in strings"
        if len(text) > MAX_STRING_CODE:
            return f"a string of {len(text)} characters in a type position" if strict else None
        try:
            tree = compile(text.strip(), "<string>", "eval", ast.PyCF_ONLY_AST, dont_inherit=True)
        except Exception:  # SyntaxError, ValueError, RecursionError, MemoryError: typing cannot evaluate it either
            continue
        for node in ast.walk(tree):
            if isinstance(node, _CODE_NODES):
                return f"string contains a {type(node).__name__}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                return f"string reaches the attribute {node.attr}"
            if isinstance(node, ast.Name) and is_dunder(node.id) and node.id not in SAFE_DUNDER_NAMES:
                return f"string names {node.id}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value is not text:
                pending.append((node.value, depth + 1))
    return None


def analyse_tree(filename: str, tree: ast.Module, ctx: Context) -> list[Finding]:
    """The findings of the Python rules on one parsed module (SourceError on a limit)."""
    return _FileRules(filename, tree, ctx).run()

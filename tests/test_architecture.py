"""The shape of `src/`: imports run one way (docs/architecture.md's layer order), no circles,
no oversized module, no stage kind known by name outside the kinds.

Every import counts, the ones inside functions too: a lazy import hides a circle, it does
not remove it. Read with `ast`, nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "cai_bootstrap"

#: Lowest first. A module may import from its own layer or a lower one, never a higher one.
#: Keep in step with the table in docs/architecture.md.
LAYERS: list[tuple[str, ...]] = [
    ("cai_bootstrap", "prompt_format", "jsonl", "errors"),
    ("models",),
    ("engines",),
    ("training",),
    ("config",),
    ("constitution", "runs"),
    ("tasks",),
    ("evaluation",),
    ("stages",),
    ("pipeline",),
    ("plan", "plan_measured", "report", "serve", "bench"),
    ("cli", "__main__"),
]
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules that ``module`` imports (a name that is a submodule counts as that module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in known else source)
    return {m for m in out if m != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(p, m, known) & known for m, p in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else parts[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its top-level room {top!r} is in no layer of LAYERS (add it, and to the docs)")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_imports_run_down_the_layers():
    upward = [
        f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
        for m, deps in sorted(_graph().items())
        for d in sorted(deps)
        if _layer(d) > _layer(m)
    ]
    assert upward == []


def test_the_checks_see_a_circle_and_an_upward_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _layer("cai_bootstrap.tasks.checks") < _layer("cai_bootstrap.stages.kind")


def test_no_module_is_oversized():
    big = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}


def test_no_stage_kind_is_named_outside_the_kinds():
    pattern = re.compile(r'kind == "')
    hits = [
        f"{p.relative_to(SRC)}:{i}"
        for m, p in _modules().items()
        if not m.startswith(f"{PACKAGE}.stages.")
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_package_faces_only_re_export():
    """A package's ``__init__`` holds a docstring, imports and ``__all__``; code lives in modules."""
    offenders = []
    for path in (SRC / PACKAGE).rglob("__init__.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # docstring
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
                continue
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
                continue
            if path.parent.name == PACKAGE and isinstance(node, ast.Expr) and "os.environ.setdefault" in ast.unparse(node):
                continue  # the root package sets PyTorch's allocator variable before torch allocates (see it)
            offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []

"""The shape of the code: no import circles, and no lower layer importing a higher one.

Every import is read from the source (module level and inside functions alike, ``TYPE_CHECKING`` blocks
included), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_space", "storage", "sweep")

# lowest first; a module may import its own layer and the ones below it
LAYERS: list[tuple[str, ...]] = [
    ("search_space",),
    ("storage",),
    ("sweep._compat", "sweep.errors", "sweep.inputs", "sweep.progress",
     "sweep.measurement.stats", "sweep.measurement.environment", "sweep.measurement.host", "sweep.measurement.measure",
     "sweep.measurement.prompts", "sweep.pipelines", "sweep.scoring", "sweep.accelerators"),
    ("sweep.measurement.protocol", "sweep.measurement.quality_pass", "sweep.measurement.speed_pass",
     "sweep.measurement", "sweep.study.catalogue", "sweep.study.strategies", "sweep.study.legacy",
     "sweep.study.scope", "sweep.reporting"),
    ("sweep.grading",),
    ("sweep.study.runner",),
    ("sweep.study.worker", "sweep.study"),
    ("sweep.app",),
    ("sweep.fronts.serve",),
    ("sweep.fronts.cli", "sweep.fronts", "sweep.__main__"),
]
# sweep's own top level holds only the application layer and what every layer shares; each concern has a folder
TOP_LEVEL = {"sweep", "sweep.__main__", "sweep.app", "sweep.errors", "sweep.inputs", "sweep.progress", "sweep._compat"}
CONCERNS = {"measurement", "study", "grading", "reporting", "fronts", "accelerators", "scoring", "pipelines"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:  # a migration is frozen history, run by Alembic only
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (``a.b.c`` may be module ``a.b`` and its attribute c)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``from package import module`` names the module, not the package
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    resolved = {_resolve(n) for n in names if n.split(".")[0] in PACKAGES}
    return {m for m in resolved if m is not None and m != module}


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def test_every_module_is_read() -> None:
    assert {"sweep.fronts.cli", "sweep.app", "storage.bounds", "search_space.spec", "sweep.accelerators.deepcache"} <= set(MODULES)
    assert "sweep.app" in GRAPH["sweep.fronts.cli"] and "storage.bounds" in GRAPH["storage.repository"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    higher = sorted(m for m in GRAPH[module] if _layer(m) > _layer(module))
    assert higher == [], f"{module} (layer {_layer(module)}) imports {higher}"


def test_sweep_is_grouped_by_concern() -> None:
    loose = sorted(m for m in MODULES if m.startswith("sweep") and m.count(".") <= 1 and m not in TOP_LEVEL
                   and m.removeprefix("sweep.") not in CONCERNS)
    assert loose == [], f"modules outside a concern's folder: {loose}"
    folders = {m.split(".")[1] for m in MODULES if m.count(".") >= 2 and m.startswith("sweep.")}
    assert folders == CONCERNS


def test_no_import_circles() -> None:
    # Tarjan's strongly connected components: a component of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []


def test_the_checks_can_fail() -> None:
    """The circle finder and the layer rule, on an import graph with a circle and an upward import."""
    saved = dict(GRAPH)
    try:
        GRAPH["search_space.keys"] = {"sweep.fronts.cli"}
        with pytest.raises(AssertionError, match="imports"):
            test_no_module_imports_a_higher_layer("search_space.keys")
        with pytest.raises(AssertionError):
            test_no_import_circles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)

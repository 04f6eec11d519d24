"""The layers of docs/architecture.md, one direction only, checked on the import graph.

Every import statement of ``ps/`` and ``workers/`` counts, at module level or inside a function
(a lazy import still loads the module in that process), and so does everything it imports in
turn: a worker or a shard process must not load the job, service or metrics layers at all.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# layer -> packages nothing in it may reach, directly or through other modules
RULES = {
    "workers": ("ps.server", "ps.jobs", "ps.api", "ps.metrics", "ps.cli", "ps.service"),
    "ps.server": ("workers", "ps.jobs", "ps.api", "ps.metrics", "ps.cli", "ps.service"),
    "ps.protocol": ("workers", "ps.server", "ps.jobs", "ps.api", "ps.metrics", "ps.spec"),
    "ps.spec": ("workers", "ps.server", "ps.jobs", "ps.api", "ps.metrics"),
    "ps.optim": ("workers", "ps.server", "ps.jobs", "ps.api", "ps.metrics"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("ps", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if "v1" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The project modules ``module`` imports (and the packages they sit in)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name in MODULES:
                out.add(name)
                out.update(p for p in _parents(name) if p in MODULES)
    out.discard(module)
    return frozenset(out)


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for dep in direct_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_graph_sees_the_project():
    assert "workers.worker" in MODULES and "ps.server.shard" in MODULES
    assert "ps.protocol.messages" in reachable("ps.server.shard")
    assert "ps.jobs.events" in reachable("ps.metrics")  # a crossing the rules would catch


def test_layers_import_in_one_direction_only():
    crossings = []
    for module in sorted(MODULES):
        for layer, forbidden in RULES.items():
            if not _within(module, layer):
                continue
            for dep in sorted(reachable(module)):
                if any(_within(dep, f) for f in forbidden):
                    direct = dep in direct_imports(module)
                    crossings.append(f"{module} -> {dep}" + ("" if direct else " (through others)"))
    assert not crossings, "\n".join(crossings)

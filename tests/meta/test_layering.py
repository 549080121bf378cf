"""The architecture, enforced (as import-linter's contracts would, with file:line in every
failure):

- the parts form layers, and each part imports only from the parts ``CONTRACT`` allows
  (lower layers; ``dnsserver`` is a library that imports nothing from ``mesh``);
- no module imports itself back through others: no cycle in the import graph, counting
  imports inside functions and under ``TYPE_CHECKING`` (type against a ``Protocol`` instead);
- every package's docstring names its pure cores and its adapters, and every module is
  one or the other; a pure core imports no IO library and no adapter;
- each third-party library enters through its adapter modules only;
- modules carry a docstring and stay small.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Part -> the parts it may import from, lowest layer first. The flow of data reads off it:
# sources -> (kube) -> ring -> routing -> DNS, with the wire and transport beside the ring.
CONTRACT: dict[str, set[str]] = {
    "dnsserver": set(),
    "mesh.endpoints": set(),
    "mesh.model": {"mesh.endpoints"},
    "mesh.address": set(),
    "mesh.swim": {"mesh.model", "mesh.address"},
    "mesh.ring": {"mesh.model", "mesh.address"},
    "mesh.security": {"mesh.model", "mesh.address", "mesh.ring", "mesh.swim"},
    "mesh.sources": {"mesh.model", "mesh.address"},
    "mesh.routing": {"mesh.model", "mesh.address", "mesh.ring", "dnsserver"},
    # The write-back publishes the same view of each service that DNS answers from.
    "mesh.kube": {"mesh.model", "mesh.address", "mesh.sources", "mesh.routing"},
    "mesh.wire": {"mesh.model", "mesh.address", "mesh.ring", "mesh.swim", "mesh.security"},
    "mesh.transport": {
        "mesh.model",
        "mesh.address",
        "mesh.ring",
        "mesh.swim",
        "mesh.security",
        "mesh.wire",
    },
    "mesh.daemon": {
        "mesh.model",
        "mesh.address",
        "mesh.swim",
        "mesh.ring",
        "mesh.security",
        "mesh.sources",
        "mesh.kube",
        "mesh.routing",
        "mesh.wire",
        "mesh.transport",
        "dnsserver",
    },
}
IO_MODULES = {
    "asyncio",
    "socket",
    "time",
    "grpc",
    "kubernetes_asyncio",
    "prometheus_client",
    "uvloop",
    "aiohttp",
    "subprocess",
    "threading",
    "random",
}
# Modules that do IO whatever their part: a pure core may not import these either.
ADAPTER_MODULES = {"dnsserver.server", "dnsserver.tcp", "dnsserver.workers", "dnsserver.loop"}
# Where each third-party library may be imported (its adapters); generated code aside.
ADAPTERS = {
    "grpc": {"mesh/transport/gossip.py", "mesh/transport/tls.py"},
    "google": {"mesh/wire/record_batch.py"},  # protobuf's DecodeError, for sealed records
    "prometheus_client": {"mesh/daemon/metrics.py"},
    # kubernetes_asyncio answers with aiohttp responses; the source reads them raw.
    "aiohttp": {"mesh/daemon/admin.py", "mesh/kube/calls.py", "mesh/kube/reflector.py"},
    "uvloop": {"dnsserver/loop.py"},
    "kubernetes_asyncio": {"mesh/kube/calls.py"},
    "yaml": {"mesh/daemon/flags.py", "mesh/sources/documents.py"},
    "dnslib": {"mesh/daemon/drill.py"},  # meshd drill's DNS client
    "cryptography": {"mesh/security/signing.py", "mesh/security/pki.py"},
}
# The generated protobuf code is the wire's: only the wire and the gRPC transport use it.
GENERATED = "mesh.wire.v1"
GENERATED_USERS = {"mesh.wire", "mesh.transport"}
MAX_LINES = 400


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (a module, not a name inside one)
    where: str  # file:line


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    files = sorted((ROOT / "mesh").rglob("*.py")) + sorted((ROOT / "dnsserver").rglob("*.py"))
    return [p for p in files if "wire/v1" not in p.as_posix()]


MODULES = {module_name(p): p for p in sources()}


def resolve(name: str) -> str:
    """The module an import names: ``mesh.ring.catalog.Change`` -> ``mesh.ring.catalog``."""
    while name and name not in MODULES and not name.startswith(GENERATED):
        name = name.rpartition(".")[0]
    return name


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    rel, source = path.relative_to(ROOT).as_posix(), module_name(path)
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from mesh.security import pki`` imports the module mesh.security.pki
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            found.append(Import(source, name, f"{rel}:{node.lineno}"))
    return found


def part_of(module: str) -> str | None:
    for part in sorted(CONTRACT, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return None


def test_each_part_imports_only_the_parts_below_it() -> None:
    wrong = []
    for path in sources():
        for imp in imports_of(path):
            mine, theirs = part_of(imp.source), part_of(resolve(imp.target))
            if theirs is None or mine is None or theirs == mine:
                continue
            if theirs not in CONTRACT[mine]:
                wrong.append(f"{imp.where}: {mine} may not import {imp.target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def internal_graph() -> dict[str, list[Import]]:
    graph: dict[str, list[Import]] = {m: [] for m in MODULES}
    for path in sources():
        for imp in imports_of(path):
            target = resolve(imp.target)
            # A submodule importing its own package is not an edge of the graph.
            own_package = imp.source.startswith(target + ".")
            if target in MODULES and target != imp.source and not own_package:
                graph[imp.source].append(Import(imp.source, target, imp.where))
    return graph


def cycles(graph: dict[str, list[Import]]) -> list[list[Import]]:
    """One cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph[node]:
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    found = []
    for component in components:
        start = min(component)
        path: list[Import] = []
        seen = {start}
        node = start
        while True:  # walk inside the component until we return to a seen module
            edge = next(e for e in graph[node] if e.target in component)
            path.append(edge)
            if edge.target in seen:
                break
            seen.add(edge.target)
            node = edge.target
        first = next(i for i, e in enumerate(path) if e.source == path[-1].target)
        found.append(path[first:])
    return found


def test_no_import_cycles() -> None:
    found = cycles(internal_graph())
    text = [" -> ".join(f"{e.source} ({e.where})" for e in c) + f" -> {c[0].source}" for c in found]
    assert not found, "import cycles:\n" + "\n".join(text)


def test_the_cycle_check_finds_a_reintroduced_cycle() -> None:
    """The checker itself: the agent importing its metrics again (they read the agent) is
    the cycle ``mesh/app.py`` <-> ``mesh/metrics.py`` this layout removed."""
    graph = internal_graph()
    agent, metrics = "mesh.daemon.agent", "mesh.daemon.metrics"
    assert not any({e.source for e in c} >= {agent, metrics} for c in cycles(graph))
    graph[agent] = [*graph[agent], Import(agent, metrics, "mesh/daemon/agent.py:1")]
    found = cycles(graph)
    assert any({e.source for e in c} >= {agent, metrics} for c in found), found


def declared_roles() -> dict[str, str]:
    """Module -> "pure" or "adapter", from each package docstring's ``Pure cores:`` and
    ``Adapters:`` lines (names relative to the package)."""
    roles: dict[str, str] = {}
    for init in [*sorted((ROOT / "mesh").rglob("__init__.py")), ROOT / "dnsserver/__init__.py"]:
        package = module_name(init)
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        for role, label in (("pure", "Pure cores"), ("adapter", "Adapters")):
            match = re.search(rf"^{label}:(.*?)(?:\n\n|\n[A-Z]|\Z)", doc, re.M | re.S)
            if match is None:
                continue
            for name in re.findall(r"[a-z_][a-z0-9_]*", match.group(1).replace("none", "")):
                roles[f"{package}.{name}"] = role
    return roles


def test_every_module_is_declared_a_pure_core_or_an_adapter() -> None:
    roles = declared_roles()
    undeclared = [m for m in MODULES if m not in roles and not m.endswith("__init__") and "." in m]
    undeclared = [
        m for m in undeclared if m not in ("mesh.model", "mesh.endpoints", "mesh.address")
    ]
    packages = {module_name(p) for p in sources() if p.name == "__init__.py"}
    undeclared = [m for m in undeclared if m not in packages]
    unknown = [m for m in roles if m not in MODULES]
    assert not undeclared, f"say in the package docstring what these are: {undeclared}"
    assert not unknown, f"package docstrings name modules that do not exist: {unknown}"


PURE = sorted([m for m, role in declared_roles().items() if role == "pure"])


@pytest.mark.parametrize("module", [*PURE, "mesh.model", "mesh.endpoints", "mesh.address"])
def test_pure_cores_import_no_io(module: str) -> None:
    bad = []
    roles = declared_roles()
    for imp in imports_of(MODULES[module]):
        target = resolve(imp.target)
        top = imp.target.split(".")[0]
        if top in IO_MODULES or target in ADAPTER_MODULES or roles.get(target) == "adapter":
            bad.append(f"{imp.where}: {imp.target}")
    assert not bad, f"{module} is a pure core but imports IO: {bad}"


def test_third_party_libraries_enter_through_their_adapter() -> None:
    wrong = []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        for imp in imports_of(path):
            top = imp.target.split(".")[0]
            if top in ADAPTERS and rel not in ADAPTERS[top]:
                wrong.append(f"{imp.where}: {imp.target}")
            if imp.target.startswith(GENERATED) and part_of(imp.source) not in GENERATED_USERS:
                wrong.append(f"{imp.where}: generated protobuf code outside the wire")
    assert not wrong, "\n".join(wrong)


def test_modules_have_a_docstring_and_stay_small() -> None:
    problems = []
    for path in sources():
        text = path.read_text()
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            problems.append(f"{path.relative_to(ROOT)} has no module docstring")
        if len(text.splitlines()) > MAX_LINES:
            problems.append(f"{path.relative_to(ROOT)} has {len(text.splitlines())} lines")
    assert not problems, problems

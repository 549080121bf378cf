"""``dnsserver`` is a library: it imports nothing from ``mesh``, its modules import each other
without cycles (and without imports that only exist for the type checker), its pure cores do
no IO (only ``server``, ``tcp``, ``workers``, ``loop`` and ``queries_first`` are adapters),
they stay small, and every file that names the C fast path's sources names the same ones."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dnsserver"
MAX_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    return {f"dnsserver.{p.stem}": p for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"}


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (``from x import y`` gives
    ``x`` and ``x.y``, since ``y`` may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_dnsserver_imports_nothing_from_mesh() -> None:
    bad = {
        f"{name} imports {target}"
        for name, path in modules().items()
        for target in imported(path)
        if target == "mesh" or target.startswith("mesh.")
    }
    assert not bad, sorted(bad)


def test_dnsserver_modules_import_each_other_without_cycles() -> None:
    graph = {
        name: {t for t in imported(path) if t in modules() and t != name}
        for name, path in modules().items()
    }
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError(f"import cycle: {' -> '.join([*trail, name])}")
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_no_imports_for_the_type_checker_only() -> None:
    bad = [name for name, path in modules().items() if "TYPE_CHECKING" in path.read_text()]
    assert not bad, bad


def test_dnsserver_modules_stay_under_400_lines() -> None:
    long = {
        p.name: n
        for p in sorted(PACKAGE.glob("*.[pch]*"))
        if p.suffix in (".py", ".c", ".h") and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def c_sources_in_setup() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    [call] = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Extension"
    ]
    sources = ast.literal_eval(call.args[1])
    depends = [ast.literal_eval(k.value) for k in call.keywords if k.arg == "depends"]
    return sorted([*sources, *(d for group in depends for d in group)])


def test_setup_makefile_and_manifest_name_the_same_fast_path_files() -> None:
    in_setup = c_sources_in_setup()
    on_disk = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.glob("_fastpath*.[ch]"))
    assert in_setup == on_disk
    makefile = (ROOT / "Makefile").read_text()
    [listed] = re.findall(r"^FASTPATH_SOURCES := (.*)$", makefile, re.M)
    assert sorted(listed.split()) == on_disk
    assert "$(FASTPATH_SOURCES)" in makefile
    manifest = [
        word
        for line in (ROOT / "MANIFEST.in").read_text().splitlines()
        if line.startswith("include ")
        for word in line.split()[1:]
    ]
    assert sorted(manifest) == on_disk


def test_c_functions_stay_short() -> None:
    """A function starts at a line opening in column 0 with a type and ends at the first
    ``}`` in column 0 after it."""
    long = []
    for path in sorted(PACKAGE.glob("_fastpath*.c")):
        start = name = None
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if start is None and re.match(r"^[A-Za-z_].*\b(\w+)\(", line) and "=" not in line:
                start, name = number, re.findall(r"(\w+)\(", line)[0]
            elif start is not None and line.startswith("}"):
                if number - start + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{name} has {number - start + 1} lines")
                start = None
    assert not long, long


def test_python_functions_stay_short() -> None:
    long = [
        f"{path.name}:{node.name} has {node.end_lineno - node.lineno + 1} lines"
        for path in modules().values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


# The adapters; every other module of dnsserver is a pure core.
ADAPTERS = {
    "dnsserver.server",
    "dnsserver.tcp",
    "dnsserver.workers",
    "dnsserver.loop",
    "dnsserver.queries_first",
}
IO = ("asyncio", "socket", "time", "select", "selectors", "threading", "multiprocessing", "uvloop")


def test_dnsserver_cores_do_no_io() -> None:
    bad = {
        f"{name} imports {target}"
        for name, path in modules().items()
        if name not in ADAPTERS
        for target in imported(path)
        if target.split(".")[0] in IO or target in ADAPTERS
    }
    assert not bad, sorted(bad)

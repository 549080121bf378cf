"""The layering of STYLE.md, enforced: pure cores import no IO library, and each
third-party library enters through its one adapter module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Pure cores: input and `now` in, output out. No sockets, clocks, event loops, or adapters.
PURE = [
    "mesh/model.py",
    "mesh/catalog.py",
    "mesh/policy.py",
    "mesh/peers.py",
    "mesh/identity.py",
    "mesh/sources/documents.py",
    "mesh/sources/translate.py",
    "mesh/sources/watchstate.py",
    "mesh/mcs_merge.py",
    "mesh/mcs_status.py",
    "mesh/lease.py",
    "mesh/sources/overlay.py",
    "dnsserver/wire.py",
    "dnsserver/zone.py",
    "dnsserver/query.py",
    "dnsserver/answer.py",
    "dnsserver/records.py",
    "mesh/planner.py",
    "mesh/swim.py",
    "mesh/swim_config.py",
    "mesh/swim_messages.py",
    "mesh/swim_table.py",
    "mesh/suspicion.py",
    "mesh/broadcasts.py",
    "mesh/records.py",
    "mesh/record_log.py",
    "mesh/limits.py",
]
IO_MODULES = {
    "asyncio",
    "socket",
    "time",
    "grpc",
    "google",
    "kubernetes_asyncio",
    "prometheus_client",
    "uvloop",
    "aiohttp",
    "subprocess",
    "threading",
    "random",
    "mesh.ring",
    "mesh.app",
    "mesh.wire",
    "mesh.metrics",
    "mesh.admin",
    "dnsserver.server",
}
# Where each third-party library may be imported (its adapter), besides generated code.
ADAPTERS = {
    "grpc": {"mesh/ring.py", "mesh/tls.py"},
    # DecodeError, for envelopes and sealed records decoded from bytes
    "google": {"mesh/signing.py", "mesh/record_codec.py"},
    "prometheus_client": {"mesh/metrics.py"},
    # kubernetes_asyncio answers with aiohttp responses; the source reads them raw.
    "aiohttp": {"mesh/admin.py", "mesh/sources/kubecalls.py", "mesh/sources/reflector.py"},
    "uvloop": {"dnsserver/loop.py"},
    "kubernetes_asyncio": {"mesh/sources/kubecalls.py"},
    "yaml": {"mesh/config.py", "mesh/sources/documents.py"},
    "dnslib": set(),
    "cryptography": {"mesh/signing.py", "mesh/certs.py"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources() -> list[Path]:
    files = sorted((ROOT / "mesh").rglob("*.py")) + sorted((ROOT / "dnsserver").rglob("*.py"))
    return [p for p in files if "wire/v1" not in p.as_posix()]


@pytest.mark.parametrize("module", PURE)
def test_pure_cores_import_no_io(module: str) -> None:
    bad = {
        name
        for name in imports(ROOT / module)
        for io in IO_MODULES
        if name == io or name.startswith(io + ".")
    }
    assert not bad, f"{module} is a pure core but imports {sorted(bad)}"


def test_third_party_libraries_enter_through_their_adapter() -> None:
    wrong = []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        for name in imports(path):
            top = name.split(".")[0]
            if top in ADAPTERS and rel not in ADAPTERS[top]:
                wrong.append(f"{rel} imports {name}")
    assert not wrong, wrong


def test_modules_have_a_docstring_and_stay_small() -> None:
    problems = []
    for path in sources():
        text = path.read_text()
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            problems.append(f"{path.relative_to(ROOT)} has no module docstring")
        if len(text.splitlines()) > 500:
            problems.append(f"{path.relative_to(ROOT)} has {len(text.splitlines())} lines")
    assert not problems, problems

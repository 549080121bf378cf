"""``meshd demo``: three clusters on loopback, from the manifests in ``examples/``.

The manifests are package data (``mesh/daemon/examples/``, also reachable as the checkout's
top-level ``examples/``), so an installed wheel or the image runs the demo as a checkout
does.

east and west are in region ``us``, south in region ``eu``. The manifests are copied to a
temporary directory first, so the operator can edit them and watch the answers change
without touching the checkout. All three agents run in this process, each with its own
DNS and admin ports (consecutive from ``--dns-port-base`` and ``--admin-port-base``) and
an ephemeral gossip port,
joined to each other over gRPC on 127.0.0.1 once all are listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from mesh.daemon.admin import AdminServer
from mesh.daemon.agent import Agent
from mesh.daemon.runner import run_async
from mesh.daemon.settings import AgentSettings
from mesh.security import pki

CLUSTERS = (("east", "us", "us-1a"), ("west", "us", "us-2a"), ("south", "eu", "eu-1a"))


def make_certificates(workdir: Path) -> None:
    """A clusterset CA and each cluster's TLS and signing certificates, as `meshd certs`
    makes them: the demo's ring runs with mutual TLS and origin-signed states."""
    now = datetime.datetime.now(datetime.UTC)
    ca = workdir / "certs" / "ca"
    pki.init_ca("demo", ca, force=False, now=now)
    for cluster, _, _ in CLUSTERS:
        pki.issue(
            cluster, ca, workdir / "certs" / cluster, ["127.0.0.1"], force=False, days=1, now=now
        )


def default_examples() -> Path:
    """The demo manifests installed with this package (package data, not the checkout)."""
    return Path(__file__).resolve().parent / "examples"


def meshd_command() -> str:
    """How the operator's shell runs this meshd: ``meshd`` when that is this one on the
    PATH, else its absolute path (``make demo`` runs ``.venv/bin/meshd``, not on the PATH)."""
    script = Path(sys.argv[0])
    if script.name != "meshd":  # python -m mesh.daemon.cli
        return f"{shlex.quote(sys.executable)} -m mesh.daemon.cli"
    on_path = shutil.which("meshd")
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return "meshd"
    return shlex.quote(str(script.absolute()))


def dig_commands(dns_ports: dict[str, int]) -> list[tuple[str, str]]:
    """(command, what it shows) pairs printed for the operator and used by the tests."""
    east, south = dns_ports["east"], dns_ports["south"]
    zone = "svc.clusterset.local"
    return [
        (
            f"dig @127.0.0.1 -p {east} db.shop.{zone} +short",
            "headless db: ready endpoints of all three clusters",
        ),
        (
            f"dig @127.0.0.1 -p {east} web.shop.{zone} +short",
            "web as east sees it: east's own endpoints first",
        ),
        (
            f"dig @127.0.0.1 -p {south} web.shop.{zone} +short",
            "web as south sees it: south's endpoints",
        ),
        (
            f"dig @127.0.0.1 -p {east} cart.shop.{zone} +short",
            "cart: east's endpoints are not ready, so west (same region) answers",
        ),
        (
            f"dig @127.0.0.1 -p {east} checkout.shop.{zone} +short",
            "checkout: only south exports it",
        ),
        (
            f"dig @127.0.0.1 -p {east} _http._tcp.web.shop.{zone} SRV +short",
            "SRV for the named port http",
        ),
        (
            f"dig @127.0.0.1 -p {east} catalog.shop.{zone} +short",
            "catalog answers ClusterIPs (answer mode cluster-ip): east's and west's",
        ),
        (
            f"dig @127.0.0.1 -p {east} db-0.west.db.shop.{zone} +short",
            "one endpoint of a headless service, by hostname and cluster",
        ),
        (
            f"dig @127.0.0.1 -p {east} search.shop.{zone} +short",
            "search, failover-order west,south: even east's agent answers west",
        ),
        (
            f"for i in $(seq 10); do dig @127.0.0.1 -p {east} api.shop.{zone} +short; done "
            "| sort | uniq -c",
            "api, weights east=70,west=30, max-answers 1: 7 answers east, 3 west",
        ),
    ]


def routing_commands(meshd: str, admin_ports: dict[str, int]) -> list[tuple[str, str]]:
    """(command, what it shows) pairs for the routing policy, drains and drills."""
    east, west = admin_ports["east"], admin_ports["west"]
    return [
        (
            f"{meshd} status --admin 127.0.0.1:{east} --service shop/search",
            "search's tiers as east sees them, and why each cluster is in or out",
        ),
        (
            f"{meshd} drain --admin 127.0.0.1:{west} --reason demo",
            "west takes no traffic: search answers from south, api from east only",
        ),
        (f"{meshd} undrain --admin 127.0.0.1:{west}", "west takes traffic again"),
        (
            f"{meshd} drill --admin 127.0.0.1:{east} --cluster east --service shop/api",
            "drain east, time every agent's answers both ways, undrain",
        ),
    ]


def demo(
    examples: Path | None, dns_port_base: int, admin_port_base: int, duration: float | None
) -> int:
    source = examples or default_examples()
    missing = [c for c, _, _ in CLUSTERS if not (source / c).is_dir()]
    if missing:
        print(
            f"meshd: error: {source} has no manifests for {', '.join(missing)} "
            "(pass --examples DIR with one sub-directory per cluster)",
            file=sys.stderr,
        )
        return 2
    for flag, base in (("--dns-port-base", dns_port_base), ("--admin-port-base", admin_port_base)):
        if not 1024 <= base <= 65533:
            print(f"meshd: error: {flag} must be 1024-65533", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="meshd-demo-"))
    try:
        for cluster, _, _ in CLUSTERS:
            shutil.copytree(source / cluster, workdir / cluster)
        make_certificates(workdir)
        return run_async(lambda stop: _run(workdir, dns_port_base, admin_port_base, duration, stop))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _run(
    workdir: Path,
    dns_port_base: int,
    admin_port_base: int,
    duration: float | None,
    stop: asyncio.Event,
) -> int:
    agents: list[Agent] = []
    admins: list[AdminServer] = []
    dns_ports: dict[str, int] = {}
    admin_ports: dict[str, int] = {}
    try:
        for i, (cluster, region, zone) in enumerate(CLUSTERS):
            dns_ports[cluster] = dns_port_base + i
            settings = AgentSettings(
                cluster_id=cluster,
                region=region,
                zone=zone,
                manifests=workdir / cluster,
                tls_cert=workdir / "certs" / cluster / "tls.crt",
                tls_key=workdir / "certs" / cluster / "tls.key",
                tls_ca=workdir / "certs" / cluster / "ca.crt",
                signing_cert=workdir / "certs" / cluster / "signing.crt",
                signing_key=workdir / "certs" / cluster / "signing.key",
                dns_listen=f"127.0.0.1:{dns_ports[cluster]}",
                grpc_listen="127.0.0.1:0",
                admin_listen=f"127.0.0.1:{admin_port_base + i}",
            )
            agent = Agent(settings)
            agents.append(agent)
            await agent.start()
            admin = AdminServer(agent, settings.admin_listen or "")
            admins.append(admin)
            admin_ports[cluster] = await admin.start()
    except OSError as exc:
        print(
            f"meshd: error: cannot start the demo: {exc} (is another demo running? "
            "try --dns-port-base)",
            file=sys.stderr,
        )
        await _stop(agents, admins)
        return 1
    # Join every agent to the others now that their gossip ports are known.
    addresses = [a.advertised for a in agents]
    for agent in agents:
        for address in addresses:
            agent.join(address)
    await _converged(agents)
    _print_banner(workdir, dns_ports, admin_ports)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    await _stop(agents, admins)
    return 0


async def _converged(agents: list[Agent], timeout_s: float = 10.0) -> None:
    """Wait until every agent holds every cluster's state (or give up after timeout_s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if all(len(a.catalog.clusters()) == len(agents) and a.ready for a in agents):
            return
        await asyncio.sleep(0.05)
    print(
        "meshd: warning: the demo agents did not converge within "
        f"{timeout_s:.0f}s; answers may be partial",
        file=sys.stderr,
    )


async def _stop(agents: list[Agent], admins: list[AdminServer]) -> None:
    for admin in admins:
        await admin.close()
    for agent in agents:
        await agent.stop()


def _print_banner(workdir: Path, dns_ports: dict[str, int], admin_ports: dict[str, int]) -> None:
    lines = ["meshd demo: three clusters on loopback (mutual TLS, signed states)", ""]
    meshd = meshd_command()
    for cluster, region, _ in CLUSTERS:
        lines.append(
            f"  {cluster:<6} region {region}  DNS 127.0.0.1:{dns_ports[cluster]}  "
            f"status: {meshd} status --admin 127.0.0.1:{admin_ports[cluster]}"
        )
    lines += ["", "Try:"]
    for command, what in dig_commands(dns_ports):
        lines.append(f"  {command:<78} # {what}")
    lines += ["", "Routing policy, drains and drills:"]
    for command, what in routing_commands(meshd, admin_ports):
        lines.append(f"  {command}\n      # {what}")
    lines += [
        "",
        f"Edit the manifests under {workdir}/<cluster>/ and the answers change within a second.",
        "Ctrl-C stops the demo.",
        "",
    ]
    print("\n".join(lines), flush=True)

"""``meshd drill``: drain a cluster, watch every member's DNS answers leave it and come back.

The adapter of ``mesh.daemon.drill_plan``: it reads the agent at ``--admin`` (its
``/debug/state`` and ``/debug/service``), asks an agent of the drained cluster to drain
(``POST /drain``, which that agent takes from loopback only), polls every live member's
announced DNS address over UDP (dnslib encodes and parses), holds the drain for ``--hold``
seconds once the members moved (0 by default), and always undrains: after the
measurement, on an error, on Ctrl-C and on SIGTERM.

Exit status: 0 when every member moved both ways within ``--timeout``, 1 otherwise (or
when the drain could not be sent), 2 when the drill cannot run as asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import dnslib

from mesh.address import ip_version, split_host_port
from mesh.daemon.drill_plan import (
    POLL_QUERIES,
    DrillRefusedError,
    Member,
    Watch,
    choose_service,
    members_of,
    own_addresses,
    passed,
    render,
    report,
)

POLL_EVERY_S = 0.05
QUERY_TIMEOUT_S = 0.5
BASELINE_S = 0.5


class DrillError(Exception):
    """The drill could not be carried out (exit status 1)."""


def http_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 5.0) -> Any:
    """GET (or POST ``body``) ``url``; its JSON. ``DrillError`` with the server's words."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        raise DrillError(f"{url}: HTTP {exc.code} {message}".rstrip()) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DrillError(f"cannot read {url}: {exc}") from None


async def _query(sock: socket.socket, target: tuple[str, int], qname: str, qtype: str) -> Any:
    loop = asyncio.get_running_loop()
    question = dnslib.DNSRecord.question(qname, qtype)
    await loop.sock_sendto(sock, question.pack(), target)
    deadline = loop.time() + QUERY_TIMEOUT_S
    while True:  # skip late answers to earlier queries
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), deadline - loop.time())
        with contextlib.suppress(Exception):  # anything unparsable is no answer
            reply = dnslib.DNSRecord.parse(data)
            if reply.header.id == question.header.id:
                return reply


async def poll(
    member: Member, qname: str, qtype: str, own: frozenset[str]
) -> tuple[bool | None, int | None]:
    """``POLL_QUERIES`` queries in a row: whether any answer held one of ``own``, and the
    answers' TTL; (None, None) when nothing answered."""
    host, port = split_host_port(member.dns)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    included, ttl, answered = False, None, False
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for _ in range(POLL_QUERIES):
            try:
                reply = await _query(sock, (host, port), qname, qtype)
            except (TimeoutError, OSError):
                continue
            answered = True
            for rr in reply.rr:
                if dnslib.QTYPE[rr.rtype] == qtype:
                    ttl = int(rr.ttl)
                    included |= str(rr.rdata) in own
    return (included if answered else None), ttl


async def _phase(
    watches: list[Watch],
    step: Callable[[Watch, float, bool | None], None],
    done: Callable[[Watch], bool],
    query: tuple[str, str, frozenset[str]],
    timeout_s: float,
    start: float,
) -> None:
    """Poll every member until each is ``done`` or ``timeout_s`` has passed since
    ``start`` (loop time, when the drain or undrain request was sent)."""
    loop = asyncio.get_running_loop()

    async def one(watch: Watch) -> None:
        while not done(watch) and loop.time() - start < timeout_s:
            sent = loop.time() - start
            included, _ = await poll(watch.member, *query)
            step(watch, sent, included)
            await asyncio.sleep(POLL_EVERY_S)

    await asyncio.gather(*(one(w) for w in watches))


def _drain_target(state: dict[str, Any], admin: str, cluster: str) -> str:
    """The admin address of a live agent of ``cluster``: ``--admin`` itself when it is one."""
    if state["cluster"] == cluster:
        return admin
    for agent in state.get("agents", []):
        if agent["cluster"] == cluster and agent.get("live") and agent.get("admin"):
            return str(agent["admin"])
    raise DrillError(f"no live agent of {cluster} announces an admin address to drain it at")


class Drill:
    def __init__(
        self, admin: str, cluster: str, service: str | None, timeout_s: float, hold_s: float = 0.0
    ) -> None:
        self.admin, self.cluster, self.wanted, self.timeout_s = admin, cluster, service, timeout_s
        self.hold_s = hold_s  # how long the drain stays after the members moved
        self.drained_at: str | None = None  # the admin address that holds our drain

    def prepare(self) -> tuple[str, list[Watch], tuple[str, str, frozenset[str]], str]:
        state = http_json(f"http://{self.admin}/debug/state")
        service = choose_service(state, self.cluster, self.wanted)
        explained = http_json(f"http://{self.admin}/debug/service?name={service}&addresses=1")
        own = own_addresses(explained.get("addresses", {}), self.cluster)
        qtype = "A" if any(ip_version(a) == 4 for a in own) else "AAAA"
        namespace, name = service.split("/")
        qname = f"{name}.{namespace}.svc.{state.get('zone', 'clusterset.local')}"
        members, missing = members_of(state)
        for line in missing:
            print(f"meshd: warning: {line}: not measured", file=sys.stderr)
        watches = [Watch(m) for m in members]
        return service, watches, (qname, qtype, own), _drain_target(state, self.admin, self.cluster)

    async def run(self) -> dict[str, Any]:
        service, watches, query, target = self.prepare()
        for _ in range(round(BASELINE_S / POLL_EVERY_S)):
            results = await asyncio.gather(*(poll(w.member, *query) for w in watches))
            for watch, (included, ttl) in zip(watches, results, strict=True):
                watch.baseline(included, ttl)
            await asyncio.sleep(POLL_EVERY_S)
        loop = asyncio.get_running_loop()
        self.drained_at = target
        sent = loop.time()
        http_json(f"http://{target}/drain", {"reason": f"meshd drill ({service})"})
        try:
            await _phase(watches, Watch.draining, Watch.drained_done, query, self.timeout_s, sent)
            await self._hold()
        finally:
            for watch in watches:
                watch.deadline()
            sent = loop.time()
            self.undrain()
        done: Callable[[Watch], bool] = lambda w: w.restored_s is not None  # noqa: E731
        await _phase(watches, Watch.restoring, done, query, self.timeout_s, sent)
        return report(self.cluster, service, watches)

    async def _hold(self) -> None:
        """Keep the cluster drained for ``hold_s`` (``--hold``), so that its operators can
        watch their clients, dashboards and alerts in the drained state; Ctrl-C ends it."""
        if self.hold_s > 0:
            print(
                f"meshd: drill: holding {self.cluster} drained for {self.hold_s:g} s "
                "(Ctrl-C undrains it now)",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(self.hold_s)

    def undrain(self) -> None:
        """Undrain what this drill drained (also on errors and interrupts); once."""
        target, self.drained_at = self.drained_at, None
        if target is None:
            return
        try:
            http_json(f"http://{target}/undrain", {})
        except DrillError as exc:
            print(
                f"meshd: error: could not undrain {self.cluster}: {exc}; run "
                f"`meshd undrain --admin {target}`",
                file=sys.stderr,
            )


async def _main(drill: Drill) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await drill.run()


def drill_command(
    admin: str, cluster: str, service: str | None, timeout_s: float, raw: bool, hold_s: float = 0.0
) -> int:
    drill = Drill(admin, cluster, service, timeout_s, hold_s)
    try:
        document = asyncio.run(_main(drill))
    except DrillRefusedError as exc:
        print(f"meshd: error: {exc}", file=sys.stderr)
        return 2
    except DrillError as exc:
        drill.undrain()
        print(f"meshd: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        drill.undrain()
        print(f"meshd: drill interrupted; {cluster} is undrained", file=sys.stderr)
        return 1
    finally:
        drill.undrain()
    print(json.dumps(document, indent=2) if raw else render(document, timeout_s))
    return 0 if passed(document) else 1

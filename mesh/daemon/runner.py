"""The run loop shared by ``meshd run`` and ``meshd demo``: an event loop (uvloop where
available) that runs until SIGINT or SIGTERM, and ``serve``, one agent's ordered start-up
and shutdown (as uvicorn's server does it).

``mesh.daemon.heap.tune`` sets the collector's thresholds for a long-running heap first.

Start-up binds every port before the agent counts as running: a port in use ends it with
status 1 and one line. While it runs, a background task that fails ends it with status 1
too; a signal ends it with 0. Shutdown stops the admin server, then the agent (which stops
taking queries and gossip before it stops its source).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from dnsserver.loop import new_event_loop

log = logging.getLogger("meshd")


def run_async(main: Any) -> int:
    """Run ``main`` on uvloop until it returns or SIGINT/SIGTERM asks us to stop."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return int(loop.run_until_complete(main(stop)))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def serve(settings: Any, stop: asyncio.Event) -> int:
    from mesh.daemon import heap
    from mesh.daemon.admin import AdminServer
    from mesh.daemon.agent import Agent

    agent = Agent(settings)
    heap.tune()  # the agent's freezes are its own (mesh.daemon.heap)
    admin = AdminServer(agent, settings.admin_listen) if settings.admin_listen else None
    try:
        # The admin server first: /healthz and /readyz (503 until synced) answer while the
        # agent starts, which may wait for its source's first view (mesh.daemon.agent).
        if admin is not None:
            await admin.start()
        await agent.start()
        if admin is not None:
            admin.announce()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        if admin is not None:
            await admin.close()
        await agent.stop()
        return 1
    log.info(
        "cluster %s: DNS on %s%s (advertised as %s), gossip advertised as %s",
        settings.cluster_id,
        settings.dns_listen,
        f" in {settings.dns_workers} worker processes" if settings.dns_workers else "",
        agent.front.advertised,
        agent.advertised,
    )
    code = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
        failed = agent.failed_tasks()
        if failed:
            log.error("agent task failed: %r", failed[0])
            code = 1
            break
    log.info("shutting down")
    if admin is not None:
        await admin.close()
    await agent.stop()
    return code

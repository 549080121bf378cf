"""The admin HTTP endpoint: /metrics, /healthz, /readyz and /debug/state (aiohttp adapter).

- ``/healthz``: 200 while the agent's background tasks run (the process is worth keeping);
- ``/readyz``: 200 once the first sync is done (the zone answers from real data), else 503;
- ``/metrics``: Prometheus text exposition of this agent's registry;
- ``/debug/state``: JSON of members, clusters and services, read by ``meshd status``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mesh.address import split_host_port
from mesh.daemon.agent import Agent
from mesh.daemon.metrics import AgentMetrics

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def debug_state(agent: Agent) -> dict[str, Any]:
    now = asyncio.get_running_loop().time()
    healthy = agent.healthy_clusters()
    members = []
    if agent.peers is not None:
        for peer in sorted(agent.peers.peers.values(), key=lambda p: p.address):
            members.append(
                {
                    "address": peer.address,
                    "cluster": peer.cluster_id,
                    "seed": peer.seed,
                    "reachable": agent.peers.reachable(peer.address, now),
                    "last_ok_seconds_ago": None
                    if peer.last_ok is None
                    else round(now - peer.last_ok, 3),
                }
            )
    clusters = [
        {
            "cluster": s.cluster_id,
            "region": s.region,
            "zone": s.zone,
            "generation": s.generation,
            "version": s.version,
            "healthy": s.cluster_id in healthy,
            "services": len(s.services),
            "local": s.cluster_id == agent.catalog.local_id,
            "replica": s.replica,
            "replicas": sorted(
                r.replica for r in agent.catalog.states() if r.cluster_id == s.cluster_id
            ),
        }
        for s in agent.catalog.clusters()
    ]
    services: dict[str, dict[str, Any]] = {}
    for s in agent.catalog.clusters():
        for key, svc in sorted(s.services.items()):
            entry = services.setdefault(str(key), {"type": svc.type.value, "clusters": {}})
            entry["clusters"][s.cluster_id] = {
                "ready": sum(1 for e in svc.endpoints if e.ready),
                "endpoints": len(svc.endpoints),
            }
    return {
        "cluster": agent.catalog.local_id,
        "ready": agent.ready,
        "self": agent.peers.self_address if agent.peers else None,
        "members": members,
        "clusters": clusters,
        "services": services,
        "failed_open": [str(k) for k in agent.stats.failed_open],
        "swim": _swim_members(agent),
    }


def _swim_members(agent: Agent) -> list[dict[str, Any]]:
    """The SWIM membership view: every agent replica known, with its state."""
    if agent.swim is None:
        return []
    return [
        {
            "id": m.id,
            "cluster": m.cluster_id,
            "address": m.address,
            "state": m.state.value,
            "incarnation": m.incarnation,
        }
        for m in sorted(agent.swim.membership.members.values(), key=lambda m: m.id)
    ]


def make_app(agent: Agent, exporter: AgentMetrics) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        failed = agent.failed_tasks()
        if failed:
            return web.Response(status=503, text=f"failed: {failed[0]!r}\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if agent.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="waiting for the first sync\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=exporter.exposition(), headers={"Content-Type": CONTENT_TYPE_PROMETHEUS}
        )

    async def state(_: web.Request) -> web.Response:
        return web.json_response(debug_state(agent))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/debug/state", state)
    return app


class AdminServer:
    def __init__(self, agent: Agent, listen: str) -> None:
        self.agent = agent
        self.metrics = AgentMetrics(agent)
        self.host, self.port = split_host_port(listen)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        self._runner = web.AppRunner(make_app(self.agent, self.metrics), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

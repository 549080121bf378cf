"""The admin HTTP endpoint (aiohttp adapter).

- ``/healthz``: 200 while the agent's background tasks run (the process is worth keeping);
- ``/readyz``: 200 once the first sync is done (the zone answers from real data), else 503;
- ``/metrics``: Prometheus text exposition of this agent's registry;
- ``/debug/state``: JSON of members, clusters (with their drains), agents (with the DNS and
  admin addresses they announce) and services, read by ``meshd status`` and ``meshd drill``;
- ``/debug/service?name=NS/NAME[&addresses=1]``: one service explained
  (``mesh.daemon.admin_routing``), read by ``meshd status --service`` and ``meshd drill``;
- ``POST /drain`` (JSON ``{"reason": TEXT}``, optional) and ``POST /undrain``: this cluster
  takes no traffic / takes it again; from a loopback peer only (else 403).

Once bound, the server announces its address on the ring (``--admin-advertise``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mesh.address import split_host_port
from mesh.daemon import admin_routing
from mesh.daemon.agent import Agent
from mesh.daemon.announce import DrainNotKeptError, admin_address
from mesh.daemon.metrics import AgentMetrics
from mesh.model import MAX_DRAIN_REASON

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
    drains = admin_routing.drains_json(agent)
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
            "drain": drains.get(s.cluster_id),
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
        "zone": agent.settings.dns_zone,
        "ready": agent.ready,
        "self": agent.peers.self_address if agent.peers else None,
        "members": members,
        "clusters": clusters,
        "services": services,
        "failed_open": [str(k) for k in agent.stats.failed_open],
        "drained": sorted(c for c, d in drains.items() if d["drained"]),
        "agents": admin_routing.agents_json(agent),
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


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _drain(agent: Agent, request: web.Request, drained: bool) -> web.Response:
    """``POST /drain`` and ``/undrain``: loopback peers only; the decision is kept, then
    announced (``mesh.daemon.announce``)."""
    if not admin_routing.loopback(request.remote):
        return _error(
            403, f"drain and undrain are taken from loopback only, not from {request.remote}"
        )
    reason = ""
    if drained and request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, 'the body must be JSON: {"reason": TEXT}')
        given = body.get("reason", "") if isinstance(body, dict) else None
        if not isinstance(given, str) or len(given) > MAX_DRAIN_REASON:
            return _error(400, f"reason must be text of at most {MAX_DRAIN_REASON} characters")
        reason = given
    try:
        drain = await agent.announcer.set(drained, reason)
    except DrainNotKeptError as exc:
        return _error(503, str(exc))
    return web.json_response(
        {
            "cluster": agent.catalog.local_id,
            "replica": agent.catalog.local.replica,
            "drained": drain.drained,
            "reason": drain.reason,
            "at": drain.at,
            "kept_in": agent.announcer.kept_in,
        }
    )


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

    async def service(request: web.Request) -> web.Response:
        name = request.query.get("name", "")
        key = admin_routing.service_key(name)
        if key is None:
            return _error(400, f"name must be NAMESPACE/NAME, got {name!r}")
        found = admin_routing.explain(agent, key, request.query.get("addresses") == "1")
        if found is None:
            return _error(404, f"no cluster exports {key}")
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/debug/service", service)
    app.router.add_post("/drain", lambda r: _drain(agent, r, True))
    app.router.add_post("/undrain", lambda r: _drain(agent, r, False))
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
        self.bound_port = 0

    async def start(self) -> int:
        self._runner = web.AppRunner(make_app(self.agent, self.metrics), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.bound_port = int(self._runner.addresses[0][1])
        if self.agent.peers is not None:  # started: its gossip address is known
            self.announce()
        return self.bound_port

    def announce(self) -> None:
        """The bound admin address into this replica's cluster record (a change only when
        the port was 0); once the agent has started."""
        address = admin_address(self.agent.settings, self.agent.advertised, self.bound_port)
        self.agent.announcer.advertise_admin(address)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

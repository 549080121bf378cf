"""What the admin server tells about routing: one service explained (``/debug/service``),
the drains and the agents of the clusterset (in ``/debug/state``), and who may write.

Reads the agent's catalog, health and membership; the explaining is done by the pure
``mesh.routing.explain``. Writes (``POST /drain``, ``/undrain``) are taken only from a
loopback peer (``kubectl port-forward`` arrives there too): a drain takes a cluster out of
every answer, so it is never taken anonymously over the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Any

from mesh.model import ServiceKey, is_dns_label
from mesh.routing.drains import cluster_drains
from mesh.routing.explain import explain_service
from mesh.routing.policy import exporters_of
from mesh.swim.messages import MemberState, cluster_liveness
from mesh.wire.swim_codec import member_id

if TYPE_CHECKING:
    from mesh.daemon.agent import Agent

LIVE_STATES = (MemberState.ALIVE, MemberState.SUSPECT)


def loopback(peer: str | None) -> bool:
    """True for a loopback peer address (IPv4, IPv6, or IPv4 mapped into IPv6)."""
    if not peer:
        return False
    try:
        ip = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def service_key(text: str) -> ServiceKey | None:
    """``NS/NAME`` as a service key, or None."""
    namespace, _, name = text.partition("/")
    if is_dns_label(namespace) and is_dns_label(name):
        return ServiceKey(namespace, name)
    return None


def down_reasons(agent: Agent) -> dict[str, str]:
    """Why each cluster out of the answers is out: ``dead`` (SWIM holds every agent of it
    dead or left) or ``unreachable``."""
    healthy = agent.healthy_clusters()
    up = {} if agent.swim is None else cluster_liveness(agent.swim.membership.members.values())
    return {
        s.cluster_id: ("dead" if up.get(s.cluster_id) is False else "unreachable")
        for s in agent.catalog.clusters()
        if s.cluster_id not in healthy
    }


def explain(agent: Agent, key: ServiceKey, addresses: bool) -> dict[str, Any] | None:
    """``/debug/service``: the explanation of ``key`` (None: no cluster exports it); with
    ``addresses``, every exporter's ready addresses too (what ``meshd drill`` looks for)."""
    states = agent.catalog.clusters()
    exporters = exporters_of(key, states, agent.catalog.local_id)
    if not exporters:
        return None
    health = (agent.healthy_clusters(), down_reasons(agent), agent.planner.drained)
    settings = agent.settings
    found = explain_service(
        key, exporters, agent.locality, health, settings.max_addresses, settings.dns_ttl
    )
    found["cluster"] = agent.catalog.local_id
    found["namespace_here"] = key.namespace in agent.catalog.local.namespaces
    if addresses:
        found["addresses"] = {
            st.cluster_id: [a for e in svc.endpoints if e.ready for a in e.addresses]
            for st, svc in exporters
        }
    return found


def drains_json(agent: Agent) -> dict[str, dict[str, Any]]:
    """Each cluster's standing drain decision."""
    return {
        cluster: {"drained": d.drained, "reason": d.reason, "at": d.at or None}
        for cluster, d in sorted(cluster_drains(agent.catalog.states()).items())
    }


def agents_json(agent: Agent) -> list[dict[str, Any]]:
    """Every agent replica whose record this agent holds, with the addresses it announces
    and whether it is live (``meshd drill`` measures at each live one): SWIM holds it alive
    or suspect, or, while SWIM has not heard of it yet (a young ring), this agent's own
    exchanges reach it."""
    members = {} if agent.swim is None else agent.swim.membership.members
    local = agent.catalog.local_origin
    now = asyncio.get_running_loop().time()
    rows = []
    for state in agent.catalog.states():
        member = members.get(member_id(state.cluster_id, state.replica))
        if state.origin == local:
            live = True
        elif member is not None:
            live = member.state in LIVE_STATES
        else:
            peers = agent.peers
            live = peers is not None and peers.replica_reachable(*state.origin, now)
        rows.append(
            {
                "cluster": state.cluster_id,
                "replica": state.replica,
                "dns": state.dns_address or None,
                "admin": state.admin_address or None,
                "live": live,
                "drained": state.drain.drained,
            }
        )
    return rows

"""The port numbers a service's answers carry (pure).

A Service port (``port: 80``) is what kube-proxy listens on; its endpoints listen on the
targetPort (``8080``), which the EndpointSlices carry as their ports, named as the Service's
ports are (``ExportedService.endpoint_ports``). Which of the two a client must dial depends on
what the answer gives it:

- endpoint addresses (answer mode ``endpoints``, and every headless service): the client
  reaches a pod directly, so SRV must carry the endpoints' port. For each Service port, the
  number comes from the first answering cluster (in the policy's order) whose slices name
  that port; with none, the Service port stands. A service whose Service port differs from
  what SRV then answers is *noted* (``PortPlan.note``): a client that dials the Service port
  on an endpoint address fails, which the agent logs once, counts
  (``meshd_target_port_differs_services``) and, on this cluster's export, sets the
  ``meshd.io/Ports`` condition for. Answering clusters that disagree on the number are noted
  too: SRV can carry one number per name, so some connections would fail.
- a ClusterIP or the clusterset VIP (answer modes ``cluster-ip`` and ``clusterset-ip``):
  kube-proxy (or the CNI) maps the Service port to the endpoints' port, so SRV carries the
  Service port and nothing is noted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mesh.model import ExportedService, ServicePort
from mesh.routing.view import port_text

__all__ = ["PortPlan", "plan_ports"]

Port = tuple[str, str, int]  # (name, protocol, number), as ``ServiceRecords.ports``


@dataclass(frozen=True, slots=True)
class PortPlan:
    ports: tuple[Port, ...]
    note: str = ""  # one line when the answers' ports are not the Service's; else empty


def plan_ports(
    ports: Sequence[ServicePort],
    answering: Sequence[tuple[str, ExportedService]],
    mapped: bool,
) -> PortPlan:
    """The ports of the answers for the Service ``ports``; ``answering`` are the clusters
    whose endpoints the answers give, in the policy's order; ``mapped``: the answer is a
    ClusterIP or VIP, whose proxy maps ports."""
    if mapped:
        return PortPlan(tuple((p.name, p.protocol, p.port) for p in ports))
    planned: list[Port] = []
    differs: list[str] = []
    disagree: list[str] = []
    for port in ports:
        known = [(c, n) for c, svc in answering if (n := svc.endpoint_port(port)) is not None]
        number = known[0][1] if known else port.port
        planned.append((port.name, port.protocol, number))
        if number != port.port:
            differs.append(f"{port_text(port)} -> {number}")
        if len({n for _, n in known}) > 1:
            shown = ", ".join(f"{c} {n}" for c, n in known)
            disagree.append(f"{port_text(port)}: clusters disagree ({shown}), SRV gives {number}")
    parts = []
    if differs:
        parts.append(
            "its endpoints do not listen on the Service port ("
            + ", ".join(differs)
            + "): clients of endpoint answers must dial the SRV port"
        )
    parts.extend(disagree)
    return PortPlan(tuple(planned), "; ".join(parts))

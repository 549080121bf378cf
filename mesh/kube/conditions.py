"""Conditions meshd sets on this cluster's ServiceExports besides ``Valid`` and ``Conflict``
(pure; ``mesh.kube.status`` writes them with the others).

- ``meshd.io/Ports``: whether a client that dials the Service port reaches the service
  through the answers it gets. With endpoint answers (answer mode ``endpoints``, and every
  headless service) a client reaches a pod directly, on the port the pod listens on: the
  EndpointSlice port, the Service's targetPort resolved. When that differs from the Service
  port, the condition is ``False`` with reason ``TargetPortDiffers`` and a message that names
  the ports and the ways out (dial the SRV port, make targetPort equal port, or answer with
  a ClusterIP or the clusterset VIP, whose proxy maps the port). Otherwise ``True``:
  ``PortsMatch``, or ``Proxied`` when the service answers a ClusterIP or the VIP.

Each function returns (status, reason, message); ``mesh.kube.status`` adds the times.
"""

from __future__ import annotations

from mesh.model import ExportedService
from mesh.routing.annotations import parse_policy
from mesh.routing.modes import ENDPOINTS, Answering, resolve_mode
from mesh.routing.view import MergedService, port_text

__all__ = ["PORTS", "answer_mode", "ports_condition"]

PORTS = "meshd.io/Ports"


def answer_mode(merged: MergedService | None, answering: Answering) -> str:
    """The mode the clusterset's view of a service answers in (its oldest export's
    ``meshd.io/answer-mode``, else the agent's default)."""
    if merged is None:
        return answering.default
    return resolve_mode(parse_policy(merged.annotations)[0], merged.type, answering)[0]


def ports_condition(local: ExportedService | None, mode: str = ENDPOINTS) -> tuple[str, str, str]:
    """The ``meshd.io/Ports`` condition of this cluster's export of a service that answers
    in ``mode`` (``mesh.routing.modes.resolve_mode``)."""
    if mode != ENDPOINTS:
        return (
            "True",
            "Proxied",
            f"answers are a virtual IP (answer mode {mode}): its proxy maps the Service "
            "port to the endpoints' port",
        )
    differs = []
    for port in local.ports if local is not None else ():
        number = local.endpoint_port(port) if local is not None else None
        if number is not None and number != port.port:
            differs.append(f"{port_text(port)} -> {number}")
    if not differs:
        return "True", "PortsMatch", "its endpoints listen on the Service ports"
    message = (
        f"its endpoints do not listen on the Service port ({', '.join(differs)}): "
        "DNS answers pod addresses (answer mode endpoints), so a client that dials the "
        "Service port fails. Dial the port SRV answers, make targetPort equal port, or "
        "answer with a ClusterIP or the clusterset VIP (meshd.io/answer-mode: cluster-ip "
        "or clusterset-ip), whose proxy maps the port"
    )
    return "False", "TargetPortDiffers", message

"""Conditions meshd sets besides ``Valid`` and ``Conflict`` (pure; ``mesh.kube.status``
and ``mesh.kube.imports`` write them), and how any condition keeps its time.

On this cluster's ServiceExports:

- ``Ready`` (MCS v1beta1): ``True`` ``Exported`` once the export is on the ring (this
  cluster's published state holds it; meshd writes only after the ring has synced);
  ``False`` ``Pending`` while it is valid but not yet published; ``False`` ``Failed`` when it
  is not valid (the message says why, as ``Valid`` does).
- ``meshd.io/Ports``: whether a client that dials the Service port reaches the service
  through the answers it gets. With endpoint answers (answer mode ``endpoints``, and every
  headless service) a client reaches a pod directly, on the port the pod listens on: the
  EndpointSlice port, the Service's targetPort resolved. When that differs from the Service
  port, the condition is ``False`` with reason ``TargetPortDiffers`` and a message that names
  the ports and the ways out (dial the SRV port, make targetPort equal port, or answer with
  a ClusterIP or the clusterset VIP, whose proxy maps the port). Otherwise ``True``:
  ``PortsMatch``, or ``Proxied`` when the service answers a ClusterIP or the VIP; and
  ``Unknown`` ``Pending`` while the export is not yet published (its endpoints' ports are
  not known, so meshd does not claim they match).

On ServiceImports, ``Ready`` (MCS v1beta1): ``True`` ``Ready``, except in answer mode
``clusterset-ip`` until the cluster has allocated the VIP (``False`` ``Pending``).

The condition functions return (status, reason, message); ``condition`` adds the times:
``lastTransitionTime`` moves only when the status changes (metav1.Condition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mesh.model import ExportedService
from mesh.routing.annotations import parse_policy
from mesh.routing.modes import CLUSTERSET_IP, ENDPOINTS, Answering, resolve_mode
from mesh.routing.view import MergedService, port_text

__all__ = [
    "PORTS",
    "READY",
    "answer_mode",
    "condition",
    "export_ready",
    "import_ready",
    "ports_condition",
    "rfc3339",
]

PORTS = "meshd.io/Ports"
READY = "Ready"
Condition = tuple[str, str, str]  # (status, reason, message)


def rfc3339(epoch_s: float) -> str:
    """A metav1.Time: seconds precision, UTC."""
    return datetime.fromtimestamp(int(epoch_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    kind: str,
    found: Condition,
    held: Sequence[Mapping[str, Any]],
    generation: int,
    now: float,
) -> dict[str, Any]:
    """The condition ``kind`` as ``found``, its time kept from ``held`` (the object's
    conditions now) unless its status changes."""
    status, reason, message = found
    old = next((c for c in held if c.get("type") == kind), None)
    since = old.get("lastTransitionTime") if old is not None else None
    if old is None or old.get("status") != status or not isinstance(since, str):
        since = rfc3339(now)
    made: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation:
        made["observedGeneration"] = generation
    return made


def export_ready(
    valid: bool, why_not: str, local: ExportedService | None, cluster_id: str
) -> Condition:
    """``Ready`` of this cluster's export (see the module docstring)."""
    if not valid:
        return "False", "Failed", why_not
    if local is None:
        return "False", "Pending", "valid, not yet published to the clusterset"
    return "True", "Exported", f"exported to the clusterset by cluster {cluster_id}"


def import_ready(mode: str, vip: Sequence[str], derived: str) -> Condition:
    """``Ready`` of a ServiceImport that answers in ``mode``, with the VIP ``vip`` (of the
    derived Service ``derived``) when it has one."""
    if mode != CLUSTERSET_IP:
        return "True", "Ready", f"imported (answer mode {mode})"
    if not vip:
        return "False", "Pending", f"waiting for the cluster to allocate the VIP of {derived}"
    return "True", "Ready", f"clusterset VIP {', '.join(vip)} (Service {derived})"


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
    if local is None:
        return (
            "Unknown",
            "Pending",
            "the export is not published yet: its endpoints' ports are not known",
        )
    differs = []
    for port in local.ports:
        number = local.endpoint_port(port)
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

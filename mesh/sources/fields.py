"""The fields of a Service and of an EndpointSlice endpoint, checked as the API server
checks them (pure): each function returns the model's value or raises
``InvalidFieldError`` with a message that names the field, so ``mesh.sources.translate``
can drop exactly the smallest thing that is wrong.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from mesh.model import (
    ANNOTATION_PREFIX,
    MAX_ANNOTATION_BYTES,
    MAX_ANNOTATIONS,
    Endpoint,
    ServicePort,
    ServiceType,
    is_dns_label,
)
from mesh.sources.documents import SourceProblem, describe

PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
LABEL_RULE = "an RFC 1123 label (lower-case letters, digits and '-', at most 63)"


class InvalidFieldError(ValueError):
    """A field of an object is invalid; the message names the field."""


def service_type(spec: Mapping[str, Any]) -> ServiceType:
    kind = spec.get("type")
    if kind is not None and kind not in SERVICE_TYPES:
        raise InvalidFieldError(
            f"spec.type must be one of {', '.join(SERVICE_TYPES)}, got {kind!r}"
        )
    if kind == "ExternalName":
        raise InvalidFieldError("spec.type ExternalName cannot be exported (it has no endpoints)")
    cluster_ip = spec.get("clusterIP")
    if cluster_ip is None:
        cluster_ips = spec.get("clusterIPs")
        if isinstance(cluster_ips, list) and cluster_ips:
            cluster_ip = cluster_ips[0]
    return ServiceType.HEADLESS if cluster_ip == "None" else ServiceType.CLUSTER_SET_IP


def cluster_ips(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The Service's ClusterIPs (``spec.clusterIPs``, else ``spec.clusterIP``) in canonical
    text, at most one per family; none for a headless Service or one not yet allocated."""
    raw = spec.get("clusterIPs")
    where = "spec.clusterIPs"
    if raw is None:
        single = spec.get("clusterIP")
        raw, where = ([] if single in (None, "") else [single]), "spec.clusterIP"
    if not isinstance(raw, list) or len(raw) > 2:
        raise InvalidFieldError(f"{where} must be a list of at most 2 addresses, got {raw!r}")
    if raw == ["None"]:
        return ()
    found: dict[int, str] = {}
    for text in raw:
        try:
            address = ipaddress.ip_address(text if isinstance(text, str) else "")
        except ValueError:
            raise InvalidFieldError(f"{where}: {text!r} is not an IP address") from None
        if address.version in found:
            raise InvalidFieldError(f"{where}: two IPv{address.version} addresses")
        found[address.version] = str(address)
    return tuple(found.values())


def session_affinity(spec: Mapping[str, Any]) -> tuple[str, int]:
    """(``"ClientIP"`` and its timeout in seconds) or (``""``, 0) for ``None``, as the API
    server defaults and checks ``spec.sessionAffinity`` and ``sessionAffinityConfig``."""
    affinity = spec.get("sessionAffinity")
    if affinity in (None, "None"):
        return "", 0
    if affinity != "ClientIP":
        raise InvalidFieldError(f"spec.sessionAffinity must be ClientIP or None, got {affinity!r}")
    config = spec.get("sessionAffinityConfig")
    client = config.get("clientIP") if isinstance(config, Mapping) else None
    timeout = client.get("timeoutSeconds") if isinstance(client, Mapping) else None
    if timeout is None:
        return "ClientIP", 10800  # the API server's default: 3 hours
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= 86400:
        raise InvalidFieldError(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds must be an integer 1-86400, "
            f"got {timeout!r}"
        )
    return "ClientIP", timeout


def service_ports(raw: Any) -> tuple[ServicePort, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidFieldError(f"spec.ports must be a list, got {describe(raw)}")
    return tuple(_port(f"spec.ports[{i}]", item) for i, item in enumerate(raw))


def _port(where: str, item: Any) -> ServicePort:
    if not isinstance(item, Mapping):
        raise InvalidFieldError(f"{where} must be a mapping, got {describe(item)}")
    name = item.get("name")
    if name is None:
        name = ""
    if not isinstance(name, str) or (name and not is_dns_label(name)):
        raise InvalidFieldError(f"{where}.name must be {LABEL_RULE}, got {name!r}")
    protocol = item.get("protocol")
    if protocol is None:
        protocol = "TCP"
    if protocol not in PROTOCOLS:
        raise InvalidFieldError(f"{where}.protocol must be TCP, UDP or SCTP, got {protocol!r}")
    port = item.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidFieldError(f"{where}.port must be an integer 1-65535, got {port!r}")
    return ServicePort(name=name, protocol=protocol, port=port)


def slice_ports(raw: Any) -> tuple[ServicePort, ...]:
    """An EndpointSlice's ``ports``: the numbers its endpoints listen on, named as the
    Service's ports are. A port without a number (it means "all ports") says nothing and
    is left out."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidFieldError(f"ports must be a list, got {describe(raw)}")
    found = []
    for i, item in enumerate(raw):
        if isinstance(item, Mapping) and item.get("port") is None:
            continue
        found.append(_port(f"ports[{i}]", item))
    return tuple(found)


def endpoint(where: str, item: Any, version: int, publish_not_ready: bool) -> Endpoint:
    if not isinstance(item, Mapping):
        raise InvalidFieldError(f"{where} must be a mapping, got {describe(item)}")
    addresses = _addresses(where, item.get("addresses"), version)
    conditions = item.get("conditions")
    if conditions is None:
        conditions = {}
    if not isinstance(conditions, Mapping):
        raise InvalidFieldError(f"{where}.conditions must be a mapping, got {describe(conditions)}")
    ready = conditions.get("ready")
    if ready is not None and not isinstance(ready, bool):
        raise InvalidFieldError(
            f"{where}.conditions.ready must be true, false or null, got {ready!r}"
        )
    hostname = item.get("hostname") or None
    if hostname is not None and not (isinstance(hostname, str) and is_dns_label(hostname)):
        raise InvalidFieldError(f"{where}.hostname must be {LABEL_RULE}, got {hostname!r}")
    zone = item.get("zone") or None
    if zone is not None and not isinstance(zone, str):
        raise InvalidFieldError(f"{where}.zone must be a string, got {zone!r}")
    is_ready = publish_not_ready or ready is None or ready
    return Endpoint(addresses=addresses, ready=is_ready, hostname=hostname, zone=zone)


def _addresses(where: str, raw: Any, version: int) -> tuple[str, ...]:
    """The addresses of one endpoint, in canonical text form."""
    if not isinstance(raw, list) or not raw:
        raise InvalidFieldError(
            f"{where}.addresses must be a non-empty list of IP addresses, got {raw!r}"
        )
    addresses = []
    for position, text in enumerate(raw):
        at = f"{where}.addresses[{position}]"
        try:
            address = ipaddress.ip_address(text if isinstance(text, str) else "")
        except ValueError:
            raise InvalidFieldError(f"{at} is not an IP address: {text!r}") from None
        if address.version != version:
            raise InvalidFieldError(
                f"{at} {text!r} is not an IPv{version} address (addressType IPv{version})"
            )
        addresses.append(str(address))
    return tuple(addresses)


def routing_annotations(
    metadata: Any, problem: Callable[[str], SourceProblem], problems: list[SourceProblem]
) -> tuple[tuple[str, str], ...]:
    """A ServiceExport's ``meshd.io/`` annotations, sorted by key; other annotations are
    not ours and are ignored. One that cannot be a routing setting (not text, too long, or
    past ``MAX_ANNOTATIONS``) is reported with ``problem`` and left out; what its value
    means is the routing policy's to judge (``mesh.routing.annotations``)."""
    raw = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(raw, Mapping):
        return ()
    kept: list[tuple[str, str]] = []
    for key in sorted(k for k in raw if isinstance(k, str) and k.startswith(ANNOTATION_PREFIX)):
        value = raw[key]
        if not isinstance(value, str):
            problems.append(problem(f"annotation {key} must be a string, got {describe(value)}"))
        elif len(value.encode()) > MAX_ANNOTATION_BYTES:
            problems.append(problem(f"annotation {key} is over {MAX_ANNOTATION_BYTES} bytes"))
        elif len(kept) >= MAX_ANNOTATIONS:
            problems.append(problem(f"more than {MAX_ANNOTATIONS} meshd.io/ annotations"))
            break
        else:
            kept.append((key, value))
    return tuple(kept)


def created_at(metadata: Any) -> float:
    """An object's metadata.creationTimestamp in epoch seconds; 0 when absent or bad."""
    text = metadata.get("creationTimestamp") if isinstance(metadata, Mapping) else None
    try:
        stamp = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return 0.0
    if stamp is None:
        return 0.0
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return max(0.0, stamp.timestamp())

"""What an agent learns about the host it runs on: its address and its replica id.

Kubernetes gives a pod its IP through the resolver (the pod's hostname resolves to it) and
its name as the hostname, so both defaults work in a pod without configuration.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket

from mesh.address import split_host_port

WILDCARDS = ("0.0.0.0", "::", "")


def default_advertise(listen: str, port: int) -> str:
    host, _ = split_host_port(listen)
    if host in WILDCARDS:
        host = local_address()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_dns_advertise(dns_listen: str, advertise: str | None, grpc_listen: str) -> str:
    """``--dns-advertise`` when it is not set: the ``--dns-listen`` host when it names one
    (that is the only address the server answers on), else the ``--advertise`` host (or,
    without it, ``--grpc-listen``'s, a wildcard replaced by this host's address); always
    with the ``--dns-listen`` port. ``--admin-advertise`` follows the same rule with the
    ``--admin-listen`` address in place of ``dns_listen``."""
    host, port = split_host_port(dns_listen)
    if host in WILDCARDS:
        host = split_host_port(advertise or grpc_listen)[0]
    if host in WILDCARDS:
        host = local_address()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address_of(host: str) -> str | None:
    """An IP address of ``host`` (itself when it is one; else the resolver's first answer,
    None when it has none)."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


def local_address() -> str:
    """This host's address as its resolver knows it (a pod's IP in Kubernetes)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def default_replica_id() -> str:
    """This agent replica's id: the pod name in Kubernetes (the hostname), as a DNS label."""
    name = os.environ.get("HOSTNAME") or socket.gethostname()
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "agent"

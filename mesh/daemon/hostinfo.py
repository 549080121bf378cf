"""What an agent learns about the host it runs on: its address and its replica id.

Kubernetes gives a pod its IP through the resolver (the pod's hostname resolves to it) and
its name as the hostname, so both defaults work in a pod without configuration.
"""

from __future__ import annotations

import os
import re
import socket

from mesh.address import split_host_port


def default_advertise(listen: str, port: int) -> str:
    host, _ = split_host_port(listen)
    if host in ("0.0.0.0", "::", ""):
        host = local_address()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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

"""The gossip server's listen address, checked before gRPC binds it.

gRPC's server sets SO_REUSEPORT by default, so a second agent started on the same
``--grpc-listen`` port binds it too and the kernel splits the peers' connections between
the two. ``mesh.transport.gossip`` turns that option off, so gRPC's bind fails instead;
but gRPC then raises a bare ``RuntimeError`` and logs its own line. Binding the address
once here first, with the socket options gRPC uses (SO_REUSEADDR, no SO_REUSEPORT), gives
the operating system's reason ("Address already in use", "Cannot assign requested
address") as an ``OSError`` naming the address, which the daemon reports in one line and
exits 1, as for the DNS and admin ports. (A port taken between this check and gRPC's own
bind still fails there, less clearly.)
"""

from __future__ import annotations

import socket

from mesh.address import split_host_port


def check_listen(listen: str, what: str) -> None:
    """Raise OSError, naming ``listen``, when a TCP server could not bind it now."""
    host, port = split_host_port(listen)
    if port == 0:
        return  # the kernel picks a free port
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise OSError(f"cannot listen for {what} on {listen}: {exc}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                error = OSError(f"cannot listen for {what} on {listen}: {exc.strerror or exc}")
                error.errno = exc.errno
                raise error from None

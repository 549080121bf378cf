"""Network addresses as settings, peers and sources write them: ``HOST:PORT`` and IP text.

Pure and shared by every layer (the flags, the peer table, the codecs and the admin
server), so none of them has to borrow a parser from another part.
"""

from __future__ import annotations

import ipaddress
import re


def split_host_port(value: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``[v6]:port``; raises ValueError with a readable reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif ":" in host:
        raise ValueError(f"{value!r}: write IPv6 addresses as [ADDRESS]:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: port must be 0-65535")
    return host, int(port_text)


def valid_host_port(value: str) -> bool:
    try:
        _host, port = split_host_port(value)
    except ValueError:
        return False
    return port > 0 and len(value) <= 261


# A canonical dotted quad: ASCII digits 0-255, no sign, no leading zero (what ``ipaddress``
# takes as IPv4). One regular expression match is a single C call.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


# ``is_dotted_quad(text)`` is not None when ``text`` is a canonical dotted quad: for a
# caller that checks many addresses and wants the fast path without a call around it.
is_dotted_quad = _DOTTED_QUAD.fullmatch


def ip_version(address: str) -> int:
    """4 or 6 for an IP address in text; ValueError for anything else. Canonical dotted
    quads take a fast path (a regular expression, about 0.3 us): a catch-up checks
    hundreds of thousands of addresses, and ``ipaddress`` is about ten times slower."""
    if _DOTTED_QUAD.fullmatch(address) is not None:
        return 4
    return ipaddress.ip_address(address).version


def _octet(text: str) -> bool:
    """0-255 written canonically: ASCII digits, no sign, no leading zero."""
    return text.isascii() and text.isdigit() and text == str(int(text)) and int(text) <= 255

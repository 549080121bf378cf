"""DNS wire-format encoding helpers (RFC 1035, RFC 6891), used when answers are built.

Nothing here runs per query: the zone builder calls these once per data change to produce
the bytes that the query path later copies. Encoding is deliberately small and strict:
names are ASCII, labels 1-63 octets, names at most 255 octets.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

TYPE_A = 1
TYPE_NS = 2
TYPE_SOA = 6
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_IXFR = 251
TYPE_AXFR = 252
TYPE_ANY = 255
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
RCODE_BADVERS = 16  # extended rcode, carried in the OPT record (RFC 6891 section 9)

# The question's name always starts at offset 12, so an answer owned by the query name is a
# two-byte pointer to it; the owner then echoes the query's exact case (RFC 4343 section 4).
POINTER_TO_QNAME = b"\xc0\x0c"

TYPE_NAMES = {
    TYPE_A: "A",
    TYPE_NS: "NS",
    TYPE_SOA: "SOA",
    TYPE_TXT: "TXT",
    TYPE_AAAA: "AAAA",
    TYPE_SRV: "SRV",
    TYPE_OPT: "OPT",
    TYPE_IXFR: "IXFR",
    TYPE_AXFR: "AXFR",
    TYPE_ANY: "ANY",
}

RCODE_NAMES = {
    RCODE_NOERROR: "NOERROR",
    RCODE_FORMERR: "FORMERR",
    RCODE_SERVFAIL: "SERVFAIL",
    RCODE_NXDOMAIN: "NXDOMAIN",
    RCODE_NOTIMP: "NOTIMP",
    RCODE_REFUSED: "REFUSED",
    RCODE_BADVERS: "BADVERS",
}


class NameEncodingError(ValueError):
    """A name that cannot be encoded. ``reason``: ``label_too_long`` (over 63 octets),
    ``name_too_long`` (over 255 octets) or ``bad_label`` (empty, not ASCII, or a dot inside
    one label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


MAX_NAME = 255
MAX_LABEL = 63


def encode_labels(labels: tuple[str, ...] | list[str], suffix: bytes = b"\x00") -> bytes:
    """``labels`` (each one label, no dots), lower case, followed by the wire name
    ``suffix`` (the root by default): the encoder of every name a zone holds."""
    out = bytearray()
    for label in labels:
        raw = label.lower().encode("ascii") if label.isascii() else b""
        if not raw or b"." in raw:
            raise NameEncodingError("bad_label", f"bad label {label!r}")
        if len(raw) > MAX_LABEL:
            raise NameEncodingError("label_too_long", f"label over 63 octets: {label!r}")
        out.append(len(raw))
        out += raw
    out += suffix
    if len(out) > MAX_NAME:
        raise NameEncodingError(
            "name_too_long", f"name over 255 octets ({len(out)}): {'.'.join(labels)}..."
        )
    return bytes(out)


def encode_name(name: str) -> bytes:
    """Encode a dotted name (trailing dot optional) as uncompressed wire labels, lower case."""
    name = name.rstrip(".")
    return encode_labels(name.split(".")) if name else b"\x00"


def name_text(name: bytes) -> str:
    """The dotted text of a wire name (uncompressed, as ``encode_labels`` makes them)."""
    labels = []
    i = 0
    while i < len(name) and name[i]:
        labels.append(name[i + 1 : i + 1 + name[i]].decode("ascii"))
        i += 1 + name[i]
    return ".".join(labels) + "."


@functools.lru_cache(maxsize=1024)
def rr_head(rtype: int, ttl: int, rdlength: int) -> bytes:
    """Owner (a pointer to the question's name), type, class, TTL and RDLENGTH of a record:
    most records of a zone share one of a few, so they are made once."""
    return POINTER_TO_QNAME + struct.pack("!HHIH", rtype, CLASS_IN, ttl, rdlength)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    """One resource record in class IN."""
    return owner + struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def rdata_address(address: str) -> tuple[int, bytes]:
    """(A or AAAA, packed address) for an IPv4 or IPv6 address string."""
    ip = ipaddress.ip_address(address)
    return (TYPE_A if ip.version == 4 else TYPE_AAAA), ip.packed


def rdata_srv(priority: int, weight: int, port: int, target: bytes) -> bytes:
    """SRV rdata; ``target`` is a wire name (RFC 2782: never compressed)."""
    return struct.pack("!HHH", priority, weight, port) + target


def rdata_txt(*strings: str) -> bytes:
    out = bytearray()
    for s in strings:
        raw = s.encode("utf-8")
        if len(raw) > 255:
            raise ValueError("TXT string longer than 255 octets")
        out.append(len(raw))
        out += raw
    return bytes(out)


def rdata_soa(
    mname: str,
    rname: str,
    serial: int,
    refresh: int,
    retry: int,
    expire: int,
    minimum: int,
) -> bytes:
    return (
        encode_name(mname)
        + encode_name(rname)
        + struct.pack("!IIIII", serial & 0xFFFFFFFF, refresh, retry, expire, minimum)
    )


def opt_record(udp_payload: int, ext_rcode: int = 0) -> bytes:
    """An OPT pseudo-record (RFC 6891): root owner, our payload size, version 0, no options."""
    return b"\x00" + struct.pack("!HHBBHH", TYPE_OPT, udp_payload, ext_rcode, 0, 0, 0)


def packed_ipv4(address: str) -> bytes | None:
    """The 4 octets of a dotted-quad IPv4 address in canonical form, else None. A fast path
    (zones hold hundreds of thousands of addresses; ``ipaddress`` is ~10x slower): callers
    fall back to ``ipaddress`` for everything else, IPv6 included."""
    parts = address.split(".")
    if len(parts) != 4:
        return None
    try:
        octets = bytes(map(int, parts))
    except ValueError:  # not a number, or over 255
        return None
    # Canonical only (no leading zeros, signs or spaces), as ipaddress would accept it.
    if ".".join(map(str, octets)) != address:
        return None
    return octets


def packed_address(address: str) -> tuple[int, bytes]:
    """(4 or 6, packed octets) of an IP address; ValueError for anything else."""
    octets = packed_ipv4(address)
    if octets is not None:
        return 4, octets
    ip = ipaddress.ip_address(address)
    return ip.version, ip.packed


def dashed_packed(version: int, packed: bytes) -> str:
    """``dashed`` of a packed address (4 or 16 octets)."""
    if version == 4:
        return "-".join(map(str, packed))
    return ipaddress.IPv6Address(packed).compressed.replace(":", "-")


def dashed(address: str) -> str:
    """The dashed label form of an address: 10.2.0.7 -> 10-2-0-7, fd00::7 -> fd00--7."""
    if packed_ipv4(address) is not None:
        return address.replace(".", "-")
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return str(ip).replace(".", "-")
    return ip.compressed.replace(":", "-")

"""Are the DNS answers byte-identical? A digest of every response of a zone of every shape.

Builds a zone of ``--services`` seeded random services of every shape (ClusterSetIP plain,
weighted, capped and long rings, both families, bad and duplicate addresses, bad ports,
long and bad names, headless with and without hostnames, TTLs), then asks every name the
general encoder gives (plus upper-case spellings, empty non-terminals, names that do not
exist and names outside the zone) every type of interest, over UDP without EDNS (512),
with EDNS (512, 1,232, 4,096) and over TCP, each ``--rounds`` times in a fixed order (so
rotations move), through the Python path (``query.respond``) and, when it is built, the C
path (``_fastpath.answer``), each on a zone of its own. Prints the count of responses and
a SHA-256 of all of them per path, and the same for a zone before its first sync.

Run it on two checkouts and compare the lines (the C and Python lines of one checkout must
match too): ``PYTHONPATH=/tmp/ref .venv/bin/python bench/answer_identity.py`` against
``.venv/bin/python bench/answer_identity.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

# After PYTHONPATH (a reference checkout) and the installed project: a fallback only.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from dnsserver import wire
from dnsserver.query import QueryStats, respond
from dnsserver.records import HeadlessEndpoint, ServiceRecords, encode_service
from dnsserver.zone import Zone

try:
    from dnsserver import _fastpath
except ImportError:  # the optional extension is not built
    _fastpath = None  # type: ignore[assignment]

ORIGIN = "clusterset.local"
QTYPES = (1, 28, 33, 255, 16, 6, 2, 15)  # A AAAA SRV ANY TXT SOA NS MX
PAYLOADS = (None, 512, 1232, 4096)  # EDNS payload size; None: no OPT record


def _label(rng: random.Random) -> str:
    return rng.choice(
        ["web", "shop", "a" * 63, "b" * 64, "x" * rng.randint(1, 40), "Mixed", "bad.dot", ""]
    )


def _address(rng: random.Random, i: int) -> str:
    kind = rng.random()
    if kind < 0.65:
        return f"10.{rng.randint(0, 3)}.{i // 250 % 250}.{i % 250 + 1}"
    if kind < 0.9:
        return f"fd00::{i:x}"
    return rng.choice(["010.0.0.1", "not-an-ip", "1.2.3", "256.1.1.1"])


def _ports(rng: random.Random) -> tuple[tuple[str, str, int], ...]:
    ports = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5])):
        name = rng.choice(["http", "grpc", "", "dns", "p" * 63, "bad.port"])
        protocol = rng.choice(["TCP", "UDP", "SCTP"])
        port = rng.choice([80, 443, 53, 8080, 65535, 70000])
        ports.append((name, protocol, port))
    return tuple(ports)


def _octets(addresses: tuple[str, ...]) -> bytes:
    return bytes(map(int, ".".join(addresses).split("."))) if addresses else b""


def services(count: int, seed: int) -> list[ServiceRecords]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        plain = rng.random() < 0.5
        size = rng.choice([0, 1, 2, 3, 3, 8, 9, 40, 65, 130, 400])
        if plain:
            addresses = tuple(f"10.9.{(n * 7 + i) // 250 % 250}.{i % 250 + 1}" for i in range(size))
            ports: tuple[tuple[str, str, int], ...] = (("http", "TCP", 80),)
            namespace, name = f"ns{n % 5}", f"s{n}"
        else:
            addresses = tuple(_address(rng, n * 7 + i) for i in range(size))
            ports = _ports(rng)
            namespace, name = rng.choice(["ns1", _label(rng)]), f"{_label(rng)[:20]}{n}"
        headless = not plain and rng.random() < 0.3
        endpoints: tuple[HeadlessEndpoint, ...] = ()
        if headless:
            endpoints = tuple(
                HeadlessEndpoint(
                    rng.choice(["c1", "c2"]), (a,), rng.choice([None, None, f"h{i % 4}"])
                )
                for i, a in enumerate(addresses)
            )
        weighted: tuple[tuple[tuple[str, ...], int], ...] = ()
        if not plain and not headless and addresses and rng.random() < 0.3:
            cut = rng.randint(0, len(addresses))
            weighted = ((addresses[:cut], rng.choice([1, 3])), (addresses[cut:], 2))
        out.append(
            ServiceRecords(
                namespace,
                name,
                headless,
                addresses,
                ports,
                endpoints,
                rng.choice([1, 8, 8, 64]),
                weighted,
                rng.choice([None, None, 30]),
                # A plain service's addresses as routing gives those of packed endpoints
                # too: its octets (the encoders' one-call route takes them).
                packed_v4=_octets(addresses) if plain else b"",
            )
        )
    return out


def _query(qid: int, name: bytes, qtype: int, payload: int | None, rd: int) -> bytes:
    header = struct.pack("!HBBHHHH", qid, rd, 0, 1, 0, 0, 1 if payload else 0)
    question = name + struct.pack("!HH", qtype, 1)
    opt = wire.opt_record(payload) if payload else b""
    return header + question + opt


def _spellings(name: bytes, rng: random.Random) -> list[bytes]:
    """The name, and the same with some letters upper case (answers echo the case)."""
    mixed = bytes(c - 32 if 97 <= c <= 122 and rng.random() < 0.5 else c for c in name)
    return [name, mixed]


def query_names(svcs: list[ServiceRecords], rng: random.Random) -> list[bytes]:
    origin = wire.encode_name(ORIGIN)
    names: list[bytes] = [origin, wire.encode_name(f"svc.{ORIGIN}")]
    for svc in svcs:
        encoded = encode_service(svc, origin, 5)
        for name in encoded.names:
            names.extend(_spellings(name, rng))
        if encoded.service_name:
            own = encoded.service_name
            names.append(wire.encode_labels(("nope",), own))  # below a service: NXDOMAIN
            names.append(own[1 + own[0] :])  # its namespace
    names += [wire.encode_name("nothing.example"), wire.encode_name(f"nope.svc.{ORIGIN}")]
    return names


def digest(
    zone: Zone, names: list[bytes], rounds: int, answer: Callable[[Zone, bytes], bytes | None]
) -> tuple[int, str]:
    h = hashlib.sha256()
    count = 0
    for _ in range(rounds):
        for name in names:
            for qtype in QTYPES:
                for payload in PAYLOADS:
                    reply = answer(zone, _query(count & 0xFFFF, name, qtype, payload, count & 1))
                    h.update(reply or b"-")
                    h.update(b"|")
                    count += 1
    return count, h.hexdigest()


def build(svcs: list[ServiceRecords], synced: bool) -> Zone:
    zone = Zone(ORIGIN, serial=7, ns_address="10.0.0.53", on_skipped=None)
    for svc in svcs:
        zone.set_service(svc.namespace, svc.name, svc)
    zone.synced = synced
    return zone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=600)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    svcs = services(args.services, args.seed)
    names = query_names(svcs, random.Random(args.seed))
    print(f"dnsserver from {Path(wire.__file__).parent}, C path: {_fastpath is not None}")
    print(f"seed {args.seed}, {len(svcs)} services, {len(names)} names, {args.rounds} rounds")

    def python_udp(zone: Zone, q: bytes) -> bytes | None:
        return respond(zone, q, True, stats)

    def python_tcp(zone: Zone, q: bytes) -> bytes | None:
        return respond(zone, q, False, stats)

    def c_udp(zone: Zone, q: bytes) -> bytes | None:
        return _fastpath.answer(zone, q, stats, respond)

    paths = [("python udp", python_udp), ("python tcp", python_tcp)]
    if _fastpath is not None:
        paths.append(("C udp", c_udp))
    for synced in (True, False):
        for label, path in paths:
            stats = QueryStats()
            count, hexdigest = digest(build(svcs, synced), names, args.rounds, path)
            print(f"{'synced' if synced else 'unsynced'} {label}: {count} responses {hexdigest}")


if __name__ == "__main__":
    main()

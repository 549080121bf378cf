"""The propagation bench's prober reads DNS replies without dnspython (it must keep up with
50 replies of 50 records every 10 ms); its walk must agree with dnspython's reading."""

from __future__ import annotations

import importlib.util
import random
import socket
import sys
from pathlib import Path
from types import ModuleType

import dns.flags
import dns.message
import dns.name
import dns.rrset

BENCH = Path(__file__).resolve().parents[2] / "bench"
NAME = "db.shop.svc.clusterset.local."


def load_bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # the bench imports its neighbour ``common``
    try:
        spec = importlib.util.spec_from_file_location(
            "propagation_bench", BENCH / "propagation_bench.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


bench = load_bench()


def reply(addresses: list[str], *, extra_aaaa: bool = False, compress: bool = True) -> bytes:
    query = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text_list(NAME, 5, "IN", "A", addresses))
    if extra_aaaa:  # a record of another type whose data holds the same octets
        response.answer.append(dns.rrset.from_text_list(NAME, 5, "IN", "AAAA", ["c0a8:1::"]))
    return response.to_wire() if compress else _uncompressed(response)


def _uncompressed(response: dns.message.Message) -> bytes:
    # dnspython always compresses owner names; rebuild the answer with full names.
    wire = response.to_wire()
    full = dns.name.from_text(NAME).to_wire()
    assert full is not None
    # From the question on: the header's random ID may hold the same two octets.
    return wire[:12] + wire[12:].replace(b"\xc0\x0c", full)


def test_the_walk_agrees_with_dnspython_on_random_answers() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(200):
        addresses = sorted(
            {
                f"10.{rng.randrange(256)}.0.{rng.randrange(1, 255)}"
                for _ in range(rng.randrange(0, 60))
            }
        )
        wanted = f"10.{rng.randrange(256)}.0.{rng.randrange(1, 255)}"
        if addresses and rng.random() < 0.5:
            wanted = rng.choice(addresses)
        for compress in (True, False):
            data = reply(addresses, compress=compress) if addresses else _empty()
            parsed = dns.message.from_wire(data)
            truth = any(rd.to_text() == wanted for rrset in parsed.answer for rd in rrset)
            got = bench.answer_holds(data, socket.inet_aton(wanted))
            assert got is truth, f"seed {seed}: {wanted} in {addresses} (compress={compress})"


def _empty() -> bytes:
    query = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    return dns.message.make_response(query).to_wire()


def test_only_a_records_count() -> None:
    # c0a8:0001:: starts with the octets of 192.168.0.1, in an AAAA record's data.
    data = reply(["10.0.0.1"], extra_aaaa=True)
    assert bench.answer_holds(data, socket.inet_aton("192.168.0.1")) is False
    assert bench.answer_holds(data, socket.inet_aton("10.0.0.1")) is True


def test_a_truncated_reply_asks_for_tcp() -> None:
    query = dns.message.make_query(NAME, "A")
    response = dns.message.make_response(query)
    response.flags |= dns.flags.TC
    assert bench.answer_holds(response.to_wire(), socket.inet_aton("10.0.0.1")) is None

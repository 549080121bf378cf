"""The link emulator does what the partition tests rely on: cut, lose, delay, one way.

The decision core (``Switch``) with literal times and draws; then the real thing, UDP
between two namespaces of a lab without agents: the round trip takes twice the one-way
delay, a cut link carries nothing, a one-way cut only stops its direction, a TUN device
taken down carries nothing until it is up again, and about the configured share of
packets is lost.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.harness import Lab, RingSettings
from tests.netns.linkemu import LinkRule, Switch
from tests.netns.nsutil import NetnsUnavailableError, list_netns, socket_in

pytestmark = pytest.mark.integration


def ipv4(src: str, dst: str) -> bytes:
    header = bytearray(20)
    header[0] = 0x45
    header[12:16] = socket.inet_aton(src)
    header[16:20] = socket.inet_aton(dst)
    return bytes(header)


def test_switch_routes_by_destination_and_applies_the_directed_rule() -> None:
    switch = Switch()
    switch.attach("a", "10.250.0.1")
    switch.attach("b", "10.250.0.2")
    a_to_b = ipv4("10.250.0.1", "10.250.0.2")
    assert switch.route("a", a_to_b, now=10.0, draw=0.0) == ("b", 10.0)
    switch.set_rule("a", "b", LinkRule(loss=0.05, delay_s=0.02))
    assert switch.route("a", a_to_b, now=10.0, draw=0.049) is None
    assert switch.route("a", a_to_b, now=10.0, draw=0.05) == ("b", 10.02)
    switch.set_rule("a", "b", LinkRule(cut=True))
    assert switch.route("a", a_to_b, now=10.0, draw=0.99) is None
    b_to_a = ipv4("10.250.0.2", "10.250.0.1")
    assert switch.route("b", b_to_a, now=11.0, draw=0.0) == ("a", 11.0)  # the other way
    assert switch.route("a", ipv4("10.250.0.1", "10.250.0.9"), 1.0, 0.5) is None  # nobody
    assert switch.route("a", b"\x60" + bytes(39), 1.0, 0.5) is None  # IPv6
    assert switch.route("a", a_to_b[:19], 1.0, 0.5) is None  # truncated
    assert switch.counts[("a", "b", "lost")] == 1
    assert switch.counts[("a", "b", "cut")] == 1
    assert switch.counts[("a", "b", "sent")] == 2


@pytest.fixture
def bare_lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path, RingSettings(), seed=7)
    try:
        try:
            lab.up()
        except (NetnsUnavailableError, RuntimeError, OSError) as exc:
            pytest.fail(f"cannot build the network namespaces for tests/netns: {exc}")
        yield lab
    finally:
        lab.close()
    assert not [ns for ns in list_netns() if lab.token in ns], "namespaces left behind"


class Pair:
    """A UDP socket in east and one in west, for probing the link between them."""

    def __init__(self, lab: Lab) -> None:
        self.east = socket_in(lab.agents["east"].ns, socket.SOCK_DGRAM)
        self.west = socket_in(lab.agents["west"].ns, socket.SOCK_DGRAM)
        self.east.bind((lab.agents["east"].address, 0))
        self.west.bind((lab.agents["west"].address, 0))
        for s in (self.east, self.west):
            s.settimeout(0.3)

    def send(self, src: socket.socket, dst: socket.socket, payload: bytes = b"x") -> bool:
        src.sendto(payload, dst.getsockname())
        try:
            return dst.recv(64) == payload
        except TimeoutError:
            return False

    def close(self) -> None:
        self.east.close()
        self.west.close()


def test_real_link_delays_cuts_one_way_and_loses(bare_lab: Lab) -> None:
    pair = Pair(bare_lab)
    try:
        assert pair.send(pair.east, pair.west), "the perfect link carries nothing"
        bare_lab.degrade(loss=0.0, delay_s=0.02)
        start = time.monotonic()
        assert pair.send(pair.east, pair.west)
        assert pair.send(pair.west, pair.east)
        assert 0.040 <= time.monotonic() - start < 0.5, "two crossings at 20 ms each"
        bare_lab.cut("east", "west", both_ways=False)
        assert not pair.send(pair.east, pair.west)
        assert pair.send(pair.west, pair.east), "a one-way cut stopped the other way"
        bare_lab.heal()
        bare_lab.link_down("west")
        assert not pair.send(pair.east, pair.west), "a link that is down carried a packet"
        bare_lab.link_up("west")
        assert pair.send(pair.east, pair.west), "the link did not come back up"
        bare_lab.degrade(loss=0.5, delay_s=0.0)
        for i in range(200):
            pair.east.sendto(b"%d" % i, pair.west.getsockname())
        received: set[bytes] = set()
        with contextlib.suppress(TimeoutError):
            while True:
                received.add(pair.west.recv(64))
        arrived = len(received)
        assert 60 <= arrived <= 140, f"{arrived} of 200 arrived at 50% loss (seed 7)"
    finally:
        pair.close()

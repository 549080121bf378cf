"""A seeded in-memory network with a virtual clock that drives SWIM cores
(``mesh.swim.membership.Membership``).

Everything is deterministic for a given seed: one ``random.Random`` draws loss, delay and
duplication, and seeds each member's own ``random.Random``. Time only moves when the event
queue says so; nothing sleeps.

What it can do to the members:

- per-link (directed) loss, delay + uniform jitter, duplication (``Link``; a default link
  for all pairs, overrides per (source, destination));
- partitions, symmetric or asymmetric (``block(a, b)`` drops a->b only);
- stall a member for X s: its timers and receives that fall in the stall are held and
  handled, in their original order, when the stall ends (its clock reads the stall's end,
  so it sees its timers late), as an agent whose event loop was blocked would;
- kill a member (its messages are dropped, its timers never fire) and start another one at
  the same address.

Every event the cores report is logged with the time and the observer's id.
Message sizes are estimated as their protobuf encoding plus gRPC's 5-byte frame prefix
(``wire_size``): strings and ints as protobuf encodes them, nested messages with their tag
and length; HTTP/2 and TLS framing are not counted.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mesh.swim.membership import Config, Membership
from mesh.swim.messages import Event, Member, MemberState, Message


@dataclass(frozen=True)
class Link:
    loss: float = 0.0
    delay_s: float = 0.001
    jitter_s: float = 0.002
    duplicate: float = 0.0


@dataclass
class Node:
    address: str
    membership: Membership
    serial: int
    timer_at: float | None = None
    timer_gen: int = 0
    stalled_until: float = -1.0
    backlog: list[tuple[str, Any]] = field(default_factory=list)
    sent_messages: int = 0
    sent_bytes: int = 0


_DELIVER, _TIMER, _STALL_END, _CALL = "deliver", "timer", "stall_end", "call"


class SimNetwork:
    def __init__(self, seed: int, link: Link = Link(), *, measure_bytes: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.default_link = link
        self.links: dict[tuple[str, str], Link] = {}
        self.blocked: set[tuple[str, str]] = set()
        self.nodes: dict[str, Node] = {}
        self.log: list[tuple[float, str, Event]] = []
        self.measure_bytes = measure_bytes
        self._queue: list[tuple[float, int, str, str, Any]] = []
        self._order = 0
        self._serial = 0

    # ------------------------------------------------------------------ the members

    def add(
        self,
        member_id: str,
        address: str,
        config: Config,
        *,
        cluster_id: str | None = None,
        incarnation: int = 0,
        seeds: Iterable[str] = (),
    ) -> Membership:
        """Start a member now at ``address`` (replacing a killed one there)."""
        cluster = cluster_id if cluster_id is not None else member_id.split("/")[0]
        me = Member(member_id, cluster, address, incarnation)
        membership = Membership(config, me, random.Random(self.rng.getrandbits(64)))
        self._serial += 1
        node = Node(address, membership, self._serial)
        self.nodes[address] = node
        membership.start(self.now, seeds)
        self._pump(node)
        return membership

    def kill(self, address: str) -> None:
        del self.nodes[address]

    def stall(self, address: str, duration_s: float) -> None:
        node = self.nodes[address]
        node.stalled_until = self.now + duration_s
        self._push(node.stalled_until, _STALL_END, address, node.serial)

    def at(self, time: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated ``time``."""
        self._push(time, _CALL, "", action)

    def leave(self, address: str) -> None:
        node = self.nodes[address]
        node.membership.leave(self.now)
        self._pump(node)

    def memberships(self) -> list[Membership]:
        return [n.membership for n in self.nodes.values()]

    # --------------------------------------------------------------------- the links

    def block(self, sources: Iterable[str], destinations: Iterable[str]) -> None:
        """Drop every message from any of ``sources`` to any of ``destinations``."""
        destinations = list(destinations)
        self.blocked.update((s, d) for s in sources for d in destinations)

    def heal(self) -> None:
        self.blocked.clear()

    # ----------------------------------------------------------------------- running

    def run_until(
        self, until: float, stop: Callable[[], bool] | None = None, check_every_s: float = 0.1
    ) -> bool:
        """Advance to ``until``; with ``stop``, return True as soon as it holds (checked every
        ``check_every_s`` of simulated time), False if it never did."""
        next_check = self.now
        while True:
            if stop is not None and self.now >= next_check:
                if stop():
                    return True
                next_check = self.now + check_every_s
            horizon = min(until, next_check) if stop is not None else until
            if not self._queue or self._queue[0][0] > horizon:
                if horizon >= until:
                    self.now = max(self.now, until)
                    return stop() if stop is not None else True
                self.now = horizon
                continue
            self._step()

    def _step(self) -> None:
        time, _, kind, address, payload = heapq.heappop(self._queue)
        self.now = max(self.now, time)
        if kind == _CALL:
            payload()
            return
        node = self.nodes.get(address)
        if node is None:
            return
        if kind == _STALL_END:
            if payload == node.serial and self.now >= node.stalled_until:
                self._end_stall(node)
            return
        if kind == _TIMER and payload != (node.serial, node.timer_gen):
            return
        if self.now < node.stalled_until:
            node.backlog.append((kind, payload))
            return
        self._handle(node, kind, payload)
        self._pump(node)

    def _handle(self, node: Node, kind: str, payload: Any) -> None:
        if kind == _DELIVER:
            message, source = payload
            node.membership.receive(message, source, self.now)
        else:
            node.membership.handle_timer(self.now)

    def _end_stall(self, node: Node) -> None:
        backlog, node.backlog = node.backlog, []
        for kind, payload in backlog:
            self._handle(node, kind, payload)
        self._pump(node, force_timer=True)

    def _pump(self, node: Node, *, force_timer: bool = False) -> None:
        membership = node.membership
        for destination, message in membership.messages_to_send(self.now):
            self._transmit(node, destination, message)
        observer = membership.me.id
        while (event := membership.next_event()) is not None:
            self.log.append((self.now, observer, event))
        timer = membership.get_timer()
        if timer != node.timer_at or force_timer:
            node.timer_gen += 1
            node.timer_at = timer
            if timer is not None:
                self._push(
                    max(timer, self.now), _TIMER, node.address, (node.serial, node.timer_gen)
                )

    def _transmit(self, node: Node, destination: str, message: Message) -> None:
        node.sent_messages += 1
        if self.measure_bytes:
            node.sent_bytes += wire_size(message) + 5
        if (node.address, destination) in self.blocked:
            return
        link = self.links.get((node.address, destination), self.default_link)
        rng = self.rng
        if link.loss and rng.random() < link.loss:
            return
        copies = 2 if link.duplicate and rng.random() < link.duplicate else 1
        for _ in range(copies):
            delay = link.delay_s + rng.random() * link.jitter_s
            self._push(self.now + delay, _DELIVER, destination, (message, node.address))

    def _push(self, time: float, kind: str, address: str, payload: Any) -> None:
        self._order += 1
        heapq.heappush(self._queue, (time, self._order, kind, address, payload))

    # ---------------------------------------------------------------------- queries

    def views_agree(self, expected: dict[str, MemberState]) -> bool:
        """Every running member sees exactly ``expected`` (id -> state) for those ids."""
        for node in self.nodes.values():
            members = node.membership.members
            for member_id, state in expected.items():
                member = members.get(member_id)
                if member is None or member.state != state:
                    return False
        return True


def address_of(i: int) -> str:
    return f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}:7946"


def build_ring(
    net: SimNetwork,
    n: int,
    config: Config,
    *,
    clusters: int = 0,
    settle_s: float = 30.0,
) -> list[str]:
    """Start n members (cluster ``c{i % clusters}``, or one cluster per member) over the first
    second, each joining through member 0, and run until every view holds all n alive.
    Returns the addresses. Raises if the ring does not converge within ``settle_s``."""
    addresses = [address_of(i) for i in range(n)]
    ids = [f"c{i % clusters if clusters else i}/agent-{i}" for i in range(n)]
    for i, address in enumerate(addresses):
        seeds = [addresses[0]] if i else []

        def start(
            member_id: str = ids[i], address: str = address, seeds: list[str] = seeds
        ) -> None:
            net.add(member_id, address, config, seeds=seeds)

        net.at(net.now + i / n, start)

    def converged() -> bool:
        return len(net.nodes) == n and net.views_agree(dict.fromkeys(ids, MemberState.ALIVE))

    if not net.run_until(net.now + settle_s, converged, check_every_s=0.5):
        raise AssertionError(f"seed {net.seed}: ring of {n} did not converge in {settle_s} s")
    return addresses


def member_ids(net: SimNetwork) -> dict[str, str]:
    """address -> member id of the running members."""
    return {a: node.membership.me.id for a, node in net.nodes.items()}


# -------------------------------------------------------------------------- sizes


def _varint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def wire_size(value: Any) -> int:
    """Estimated protobuf size of a message (field tags, lengths, varints, strings)."""
    total = 0
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        total += _field_size(item)
    return total + 2  # the oneof tag and length that would wrap it in a SwimMessage


def _field_size(item: Any) -> int:
    if item is None:
        return 0
    if isinstance(item, bytes):  # a signed claim (empty without TLS)
        return 1 + _varint_len(len(item)) + len(item) if item else 0
    if isinstance(item, float):
        return 9 if item else 0
    if isinstance(item, bool):
        return 2 if item else 0
    if isinstance(item, int):
        return 1 + _varint_len(item) if item else 0
    if isinstance(item, str):
        data = len(item.encode())
        return 1 + _varint_len(data) + data if data else 0
    if isinstance(item, enum.Enum):
        return 2
    if isinstance(item, tuple):
        return sum(_nested(element) for element in item)
    return _nested(item)


def _nested(item: Any) -> int:
    size = wire_size(item)  # includes a 2-byte oneof wrapper, as updates would have
    return 1 + _varint_len(size) + size

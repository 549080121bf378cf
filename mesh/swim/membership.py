"""SWIM membership with Lifeguard, as a pure protocol core (no IO, no clock).

It follows hashicorp/memberlist (``state.go``) and the SWIM paper (Das, Gupta, Motivala,
DSN 2002), with the three Lifeguard extensions (see ``mesh.swim.suspicion``), and it is shaped
like aioquic's ``QuicConnection``: the adapter feeds ``receive(message, source, now)``,
sends what ``messages_to_send(now)`` returns, re-arms one timer at ``get_timer()`` and
calls ``handle_timer(now)`` when it fires, and reads ``next_event()`` until it is None.

One probe at a time, one per probe interval:

1. pick the next live member in a shuffled round-robin (``mesh.swim.table``) and send it a
   ``Ping`` (to a suspect member, with the suspicion attached so it can refute at once:
   Lifeguard's "buddy system");
2. no ``Ack`` within the probe timeout: send ``PingReq`` to ``indirect_checks`` random alive
   members, which ping the target for us and forward its ack, or answer ``Nack`` when none
   came within ``nack_timeout_s``;
3. no ack, direct or forwarded, by the end of the probe interval: the target becomes
   *suspect* (our own accusation, broadcast). The suspicion timer (``mesh.swim.suspicion``) turns
   it *dead* unless the member refutes with a higher incarnation first.

Local health (Lifeguard): the awareness score goes up by the number of missing nacks when a
probe fails (or by 1 if nobody could relay), by 1 when we must refute, and by 1 when
``handle_timer`` is called more than ``lateness_tolerance_s`` after the timer was due (our
event loop stalled); it goes down by 1 on each acked probe. The probe interval and timeout
are multiplied by ``score + 1``, the gossip interval too from half the score's range up.
A probe whose indirect phase starts late ends later, so the relays still get their full
window: we never accuse on a timeout we slept through.

Updates spread by piggybacking on every ``Ping``, ``Ack`` and ``PingReq`` and, while any
are pending, by a ``Gossip`` to ``gossip_nodes`` random members every ``gossip_interval_s``
(``mesh.swim.broadcasts`` bounds each to ``retransmit_mult * ceil(log10(N+1))`` messages). A
``PushPull`` of the whole table goes to one random alive member every push-pull period, to
the seeds on ``start`` (and to a few, ever less often, while we know nobody alive:
``mesh.swim.joining``), and to the last address of one dead or left member every
``reconnect_interval_s``, so a healed partition rejoins by itself. ``leave`` broadcasts
``Left`` and stops probing; the adapter keeps pumping until ``leave_done`` and then stops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mesh.swim.broadcasts import BroadcastQueue
from mesh.swim.config import Config, Rng, push_pull_period_s, retransmit_limit
from mesh.swim.joining import JoinSchedule
from mesh.swim.messages import (
    Ack,
    Event,
    Gossip,
    Member,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    Update,
)
from mesh.swim.suspicion import Awareness
from mesh.swim.table import MemberTable


@dataclass(slots=True)
class _Probe:
    seq: int
    target_id: str
    incarnation: int
    ack_deadline: float
    end: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    requester_address: str
    requester_seq: int
    nack_at: float


@dataclass(slots=True)
class SwimStats:
    """Plain counters for the metrics adapter."""

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    failed_probes: int = 0
    late_timers: int = 0
    misaddressed: int = 0


class Membership:
    def __init__(self, config: Config, self_member: Member, rng: Rng) -> None:
        self.config = config
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.stats = SwimStats()
        self._rng = rng
        self._broadcasts = BroadcastQueue()
        self._table = MemberTable(config, self_member, rng, self.awareness, self._broadcasts)
        self._outbox: list[tuple[str, Message]] = []
        self._join = JoinSchedule(config, rng)
        self._started = False
        self._seq = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._next_probe_at = math.inf
        self._next_gossip_at = math.inf
        self._next_push_pull_at = math.inf
        self._next_reconnect_at = math.inf

    # ------------------------------------------------------------------------ the view

    @property
    def me(self) -> Member:
        return self._table.me

    @property
    def members(self) -> Mapping[str, Member]:
        """Every known member by id, this agent included (read-only)."""
        return self._table.members

    @property
    def refutes(self) -> int:
        return self._table.refutes

    @property
    def refused(self) -> Mapping[str, int]:
        """New members refused for want of room, by reason (``mesh.swim.room``)."""
        return self._table.room.refused

    @property
    def leave_done(self) -> bool:
        """After ``leave``: our ``Left`` was sent as often as the retransmit limit says, or
        nobody is left to tell. Bound the wait anyway: if every message is lost, it never is."""
        table = self._table
        return table.leaving and (self.me.id not in self._broadcasts or table.live_count == 0)

    def live_members(self) -> int:
        return self._table.live_count

    # ------------------------------------------------------------------- the commands

    def start(self, now: float, seeds: Iterable[str] = ()) -> None:
        """Begin probing and gossiping, with each ticker at a random phase (so agents started
        together do not probe in lockstep), and push-pull with the seeds."""
        self._started = True
        c = self.config
        self._next_probe_at = now + self._rng.random() * c.probe_interval_s
        self._next_gossip_at = now + self._rng.random() * c.gossip_interval_s
        self._next_push_pull_at = now + self._rng.random() * c.push_pull_interval_s
        self._next_reconnect_at = now + self._rng.random() * c.reconnect_interval_s
        self.join(seeds, now)

    def join(self, seeds: Iterable[str], now: float) -> None:
        """Add seed addresses and push-pull with them now."""
        for seed in self._join.add(seeds, self.me.address, now):
            self._send(seed, self._push_pull_message(reply=False))

    def reached(self, addresses: Iterable[str], now: float) -> None:
        """The ring just exchanged with ``addresses``: dead members there are back. Push-pull
        with them now (each learns it was declared dead and refutes), not at the reconnect
        pace: each once a probe interval, ``join_fanout`` in all (``mesh.swim.joining``)."""
        interval, back = self.config.probe_interval_s, self._table.down_at(set(addresses))
        budget = self._join.reach_budget(now, self.awareness.scale_when_overloaded(interval))
        for member in back[:budget]:
            if self._table.try_reconnect(member.id, now, interval):
                self._join.reached(now)
                self._send(member.address, self._push_pull_message(reply=False))

    def renew(self, now: float) -> None:
        """Announce a new incarnation of ours now (the adapter's signing key changed)."""
        if not self._table.leaving:
            self._table.renew()
            self._schedule_gossip(now)

    def leave(self, now: float) -> None:
        """Graceful shutdown: broadcast ``Left`` now; stop probing and pulling."""
        self._table.leave(now)
        self._probe = None
        self._schedule_gossip(now)

    def receive(self, message: Message, source: str, now: float) -> None:
        """One message from a peer. ``source`` is the transport's view of the sender, used to
        reply only when the message does not name its sender's address."""
        name = type(message).__name__
        self.stats.received[name] = self.stats.received.get(name, 0) + 1
        if isinstance(message, Ping):
            self._on_ping(message, source, now)
        elif isinstance(message, Ack):
            self._apply(message.updates, now)
            self._on_ack(message)
        elif isinstance(message, Nack):
            if self._probe is not None and message.seq == self._probe.seq:
                self._probe.nacks += 1
        elif isinstance(message, PingReq):
            self._apply(message.updates, now)
            self._on_ping_req(message, source, now)
        elif isinstance(message, Gossip):
            self._apply(message.updates, now)
        else:
            self._table.merge(message.members, now)
            if not message.reply:
                self._send(message.source_address or source, self._push_pull_message(True))
        self._schedule_gossip(now)

    def messages_to_send(self, now: float) -> list[tuple[str, Message]]:
        """(destination address, message) pairs to send now."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        events = self._table.events
        return events.popleft() if events else None

    # ------------------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        if not self._started:
            return None
        times = [min((r.nack_at for r in self._relays.values()), default=math.inf)]
        if self._broadcasts:
            times.append(self._next_gossip_at)
        suspicion = self._table.next_suspicion_deadline()
        if suspicion is not None:
            times.append(suspicion)
        if not self._table.leaving:
            times += [self._next_push_pull_at, self._next_reconnect_at]
            probe = self._probe
            if probe is None:
                times.append(self._next_probe_at)
            else:
                times.append(probe.end if probe.indirect_sent else probe.ack_deadline)
            if self._join.seeds and self._table.live_count <= 1:
                times.append(self._join.next_at)
        return min(times)

    def handle_timer(self, now: float) -> None:
        if not self._started:
            return
        due = self.get_timer()
        if due is not None and now - due > self.config.lateness_tolerance_s:
            self.awareness.apply(1)
            self.stats.late_timers += 1
        self._expire_relays(now)
        self._table.expire_suspicions(now)
        if not self._table.leaving:
            self._advance_probe(now)
            self._periodic(now)
        if self._broadcasts and now >= self._next_gossip_at:
            self._gossip(now)
            # Sure that it is overloaded: gossip less too (piggybacks still spread our news).
            gap = self.awareness.scale_when_overloaded(self.config.gossip_interval_s)
            self._next_gossip_at = now + gap
        self._schedule_gossip(now)

    def _periodic(self, now: float) -> None:
        c = self.config
        if now >= self._next_push_pull_at:
            self._next_push_pull_at = now + push_pull_period_s(
                c.push_pull_interval_s, self._table.live_count
            )
            for member in self._table.random_alive(1):
                self._send(member.address, self._push_pull_message(reply=False))
        if now >= self._next_reconnect_at:
            self._next_reconnect_at = now + c.reconnect_interval_s
            down = self._table.reconnect_candidate(now)
            if down is not None:
                self._send(down.address, self._push_pull_message(reply=False))
        if self._table.live_count > 1:
            self._join.heard_from_a_member(now)
        else:
            for seed in self._join.retry(now):
                self._send(seed, self._push_pull_message(reply=False))

    def _schedule_gossip(self, now: float) -> None:
        # The gossip ticker only runs while updates are pending; when one appears after an
        # idle spell it goes out at once.
        if self._broadcasts and self._next_gossip_at < now:
            self._next_gossip_at = now

    # ------------------------------------------------------------------------ probing

    def _advance_probe(self, now: float) -> None:
        probe = self._probe
        if probe is not None and not probe.indirect_sent and now >= probe.ack_deadline:
            self._send_indirect(probe, now)
        if probe is not None and probe.indirect_sent and now >= probe.end:
            self._probe = None
            self._next_probe_at = probe.end
            self._probe_failed(probe, now)
        if self._probe is None and now >= self._next_probe_at:
            self._start_probe(now)

    def _start_probe(self, now: float) -> None:
        target = self._table.next_probe_target(now)
        interval = self.awareness.scale(self.config.probe_interval_s)
        if target is None:
            self._next_probe_at = now + interval
            return
        self._seq += 1
        buddy: tuple[Update, ...] = ()
        if target.state == MemberState.SUSPECT:
            buddy = (Suspect(target.id, target.incarnation, self.me.id),)
        ping = Ping(self._seq, target.id, self.me.id, self.me.address, self._updates(buddy))
        self._send(target.address, ping)
        timeout = self.awareness.scale(self.config.probe_timeout_s)
        self._probe = _Probe(
            self._seq, target.id, target.incarnation, now + timeout, now + interval
        )

    def _send_indirect(self, probe: _Probe, now: float) -> None:
        probe.indirect_sent = True
        # The relays get their whole window even when we reach this point late.
        window = self.config.probe_interval_s - self.config.probe_timeout_s
        probe.end = max(probe.end, now + self.awareness.scale(window))
        target = self._table.members.get(probe.target_id)
        if target is None or not target.live:
            return
        relays = self._table.random_alive(self.config.indirect_checks, exclude=(target.id,))
        me = self.me
        for relay in relays:
            request = PingReq(
                probe.seq, target.id, target.address, me.id, me.address, self._updates()
            )
            self._send(relay.address, request)
        probe.expected_nacks = len(relays)

    def _probe_failed(self, probe: _Probe, now: float) -> None:
        self.stats.failed_probes += 1
        if probe.expected_nacks:
            self.awareness.apply(max(0, probe.expected_nacks - probe.nacks))
        else:
            self.awareness.apply(1)
        self._table.on_suspect(Suspect(probe.target_id, probe.incarnation, self.me.id), now)

    def _on_ping(self, ping: Ping, source: str, now: float) -> None:
        if ping.target_id and ping.target_id != self.me.id:
            self.stats.misaddressed += 1
            return
        self._apply(ping.updates, now)
        ack = Ack(ping.seq, self.me.id, self._updates())
        self._send(ping.source_address or source, ack)

    def _on_ack(self, ack: Ack) -> None:
        probe = self._probe
        if probe is not None and ack.seq == probe.seq:
            self._probe = None
            self._next_probe_at = probe.end
            self.awareness.apply(-1)
            return
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            forward = Ack(relay.requester_seq, self.me.id, self._updates())
            self._send(relay.requester_address, forward)

    def _on_ping_req(self, request: PingReq, source: str, now: float) -> None:
        if len(self._relays) >= self.config.max_relays:
            return  # a flood of requests: the asker's probe goes on without this relay
        self._seq += 1
        ping = Ping(self._seq, request.target_id, self.me.id, self.me.address, self._updates())
        self._send(request.target_address, ping)
        requester = request.source_address or source
        nack_at = now + self.config.nack_timeout_s
        self._relays[self._seq] = _Relay(requester, request.seq, nack_at)

    def _expire_relays(self, now: float) -> None:
        for seq, relay in list(self._relays.items()):
            if now >= relay.nack_at:
                del self._relays[seq]
                self._send(relay.requester_address, Nack(relay.requester_seq, self.me.id))

    # ---------------------------------------------------------------------- spreading

    def _apply(self, updates: tuple[Update, ...], now: float) -> None:
        for update in updates:
            self._table.apply(update, now)

    def _updates(self, first: tuple[Update, ...] = ()) -> tuple[Update, ...]:
        limit = retransmit_limit(self.config.retransmit_mult, self._table.live_count)
        return first + self._broadcasts.take(self.config.max_piggyback - len(first), limit)

    def _gossip(self, now: float) -> None:
        for target in self._table.gossip_targets(self.config.gossip_nodes, now):
            updates = self._updates()
            if not updates:
                return
            self._send(target.address, Gossip(self.me.id, updates))

    def _push_pull_message(self, reply: bool) -> PushPull:
        me = self.me
        return PushPull(me.id, me.address, tuple(self._table.members.values()), reply)

    def _send(self, address: str, message: Message) -> None:
        name = type(message).__name__
        self.stats.sent[name] = self.stats.sent.get(name, 0) + 1
        self._outbox.append((address, message))

"""The member table of the SWIM core: one record per member and the rules that change it.

Each member's record is (incarnation, state). Only the member itself raises its
incarnation, and it does so only to refute; every other agent orders what it hears about a
member by incarnation, then by how grave the news is:

- ``Alive(i)`` replaces a record whose incarnation is *below* i (whatever its state): the
  member has spoken since. Equal incarnations never revive a suspect, dead or left member.
- ``Suspect(i)`` applies to an *alive* record at incarnation i, and starts a suspicion
  timer; on a record already suspect it counts as a confirmation from its source.
- ``Dead(i)`` applies to an alive or suspect record at incarnation i.
- An accusation about an incarnation *below* the record's is stale (the member refuted it).
- An accusation about an incarnation *above* the record's is dropped, not applied or
  relayed: only the member speaks for its incarnation, and an accuser that names a higher
  one heard an ``Alive`` we missed (its verdict comes again once we have it too) or lies.
  memberlist adopts the accuser's number, which lets one forged accusation push a member's
  incarnation anywhere, up to where its refutation no longer fits in 64 bits; and an
  accusation above the member's own number would never go stale, so any relay could replay
  it after every refutation. A record's incarnation (and its proof) is thus always the one
  of the member's own last claim.
- Lifeguard's independent confirmations of a suspicion count one per *cluster* of accusers:
  a cluster signs for all of its replicas (``mesh.security.swim_claims``), so it cannot
  pose as several.
- ``Left(i)`` applies to any record with incarnation <= i that is not already left (only the
  member itself sends it, so it is worth more than a dead verdict).
- About ourselves: a suspect, dead or left verdict, or an alive record that is newer than
  ours or carries another address, is refuted: our incarnation goes up by one and the new
  ``Alive`` is broadcast (unless we are leaving). It goes above the other's number only
  when that number is a claim of our own (an ``Alive`` or ``Left`` about us, or our record
  in a peer's push-pull table: what we said before a restart) and below
  ``REFUTABLE_INCARNATION``; an accusation's number is the accuser's word, and following it
  would let an accuser push us past 64 bits. Having to refute raises our awareness score
  (Lifeguard: we were likely slow). An accusation *older* than our incarnation means its
  sender missed our refutation (the epidemic skipped it): we broadcast our current
  ``Alive`` again, and since a probe of a suspect carries the suspicion, the prober gets it
  on the very ack. memberlist ignores such accusations and leaves the accuser to time out
  on a live member unless a push-pull comes first.
- Every update that changed the table is re-broadcast (the epidemic), once per new fact.
- A push-pull table from a peer is merged record by record; a *suspect* or *dead* record of
  a member we know teaches us the member's own claim it carries (a newer incarnation), and
  makes us probe that member next: if our own probe fails, our own suspicion follows, as for
  any probe. memberlist suspects the member at once and broadcasts that, in its own name; a
  suspicion so repeated would count as an independent confirmation at every other agent, so
  one peer's table (true or forged) could shorten every timer. A table can make us look
  sooner, never accuse.
- Dead and left members stay known (so their last address can be retried) until
  ``reap_after_s`` after their last state change, or until a new member needs the room:
  the table holds at most so many members per cluster, clusters and members in all, and a
  new member beyond that is refused (``refused``, by reason) while no member that is down
  can make way (``mesh.swim.room``).

The probe order is a shuffled round-robin over the known members: each cycle probes every
live member once; a new member is inserted at a random position; the list is reshuffled (and
reaped) when a cycle ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import replace

from mesh.swim.broadcasts import BroadcastQueue
from mesh.swim.config import Config, Rng, suspicion_confirmations, suspicion_timeout_s
from mesh.swim.messages import (
    Alive,
    Dead,
    Event,
    Left,
    Member,
    MemberAlive,
    MemberDied,
    MemberJoined,
    MemberLeft,
    MemberState,
    MemberSuspected,
    MemberUpdated,
    Suspect,
    Update,
)
from mesh.swim.probes import ProbeOrder, ReconnectLog
from mesh.swim.room import Room
from mesh.swim.suspicion import Awareness, Suspicion

# A claim about us at or above this is not followed (we refute one above our own instead), so
# that a refutation always fits the wire's 64 bits, however often a peer repeats it.
REFUTABLE_INCARNATION = 2**63


def _cluster_of(member_id: str) -> str:
    return member_id.partition("/")[0]


ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)


class MemberTable:
    def __init__(
        self,
        config: Config,
        self_member: Member,
        rng: Rng,
        awareness: Awareness,
        broadcasts: BroadcastQueue,
    ) -> None:
        self.config = config
        self.self_id = self_member.id
        self.rng = rng
        self.awareness = awareness
        self.broadcasts = broadcasts
        self.members: dict[str, Member] = {}
        self.changed_at: dict[str, float] = {}
        self.suspicions: dict[str, Suspicion] = {}
        self.events: deque[Event] = deque()
        self.leaving = False
        self.refutes = 0
        self.live_count = 0
        self.room = Room(
            config.max_members_per_cluster, config.max_clusters, config.max_members, self.self_id
        )
        self._set(replace(self_member, state=ALIVE), 0.0)
        self._probes = ProbeOrder(rng)
        self._reconnects = ReconnectLog()

    @property
    def me(self) -> Member:
        return self.members[self.self_id]

    def _set(self, member: Member, now: float) -> None:
        old = self.members.get(member.id)
        if old is None or (old.cluster_id, old.live) != (member.cluster_id, member.live):
            if old is not None:
                self.room.released(old.id, old.cluster_id)
            self.room.held(member.id, member.cluster_id, member.live)
        if old is None or old.state != member.state:
            self.changed_at[member.id] = now
            self.live_count += int(member.live) - int(old is not None and old.live)
        self.members[member.id] = member

    def apply(self, update: Update, now: float) -> None:
        if isinstance(update, Alive):
            self.on_alive(update, now)
        elif isinstance(update, Suspect):
            self.on_suspect(update, now)
        elif isinstance(update, Dead):
            self.on_dead(update, now)
        else:
            self.on_left(update, now)

    def on_alive(self, alive: Alive, now: float) -> None:
        if alive.member_id == self.self_id:
            me = self.me
            newer = alive.incarnation > me.incarnation
            other = (alive.address, alive.cluster_id) != (me.address, me.cluster_id)
            if not self.leaving and (newer or (alive.incarnation == me.incarnation and other)):
                self.refute(alive.incarnation)
            return
        old = self.members.get(alive.member_id)
        if old is not None and alive.incarnation <= old.incarnation:
            return
        if old is None and not self._make_room(alive.cluster_id):
            return
        new = Member(
            alive.member_id, alive.cluster_id, alive.address, alive.incarnation, ALIVE, alive.proof
        )
        self.suspicions.pop(new.id, None)
        self._set(new, now)
        self.broadcasts.push(alive)
        if old is None:
            self._probes.insert(new.id)
            self.events.append(MemberJoined(new))
        elif old.state != ALIVE:
            self.events.append(MemberAlive(new, old.state))
        elif (old.address, old.cluster_id) != (new.address, new.cluster_id):
            self.events.append(MemberUpdated(new, old))

    def on_suspect(self, suspect: Suspect, now: float) -> None:
        old = self.members.get(suspect.member_id)
        if old is None or self._unfounded(suspect.member_id, suspect.incarnation, old):
            return
        suspicion = self.suspicions.get(suspect.member_id)
        if suspicion is not None:
            if suspicion.confirm(_cluster_of(suspect.source_id)):
                self.broadcasts.push(suspect)
            return
        if old.state != ALIVE:
            return
        if old.id == self.self_id:
            if not self.leaving:
                self.refute()
            return
        new = replace(old, state=SUSPECT)
        self._set(new, now)
        self.broadcasts.push(suspect)
        n = self.live_count
        k = suspicion_confirmations(self.config.suspicion_mult, n)
        min_s = suspicion_timeout_s(self.config.suspicion_mult, n, self.config.probe_interval_s)
        max_s = self.config.suspicion_max_timeout_mult * min_s
        accuser = _cluster_of(suspect.source_id)
        self.suspicions[new.id] = Suspicion(accuser, k, min_s, max_s, now)
        self.events.append(MemberSuspected(new, suspect.source_id))

    def on_dead(self, dead: Dead, now: float) -> None:
        old = self.members.get(dead.member_id)
        if old is None or self._unfounded(dead.member_id, dead.incarnation, old) or not old.live:
            return
        if old.id == self.self_id:
            if not self.leaving:
                self.refute()
            return
        new = replace(old, state=DEAD)
        self.suspicions.pop(new.id, None)
        self._set(new, now)
        self.broadcasts.push(dead)
        self.events.append(MemberDied(new, dead.source_id))

    def on_left(self, left: Left, now: float) -> None:
        old = self.members.get(left.member_id)
        if old is None or left.incarnation < old.incarnation or old.state == LEFT:
            return
        if old.id == self.self_id:
            if not self.leaving:
                self.refute(left.incarnation)
            return
        new = replace(old, incarnation=left.incarnation, state=LEFT, proof=left.proof)
        self.suspicions.pop(new.id, None)
        self._set(new, now)
        self.broadcasts.push(left)
        self.events.append(MemberLeft(new))

    def _unfounded(self, member_id: str, incarnation: int, old: Member) -> bool:
        """True when an accusation is not about the incarnation our record holds: above it
        (see the module docstring), or older. An older one about ourselves means its sender
        missed our last refutation: announce our current incarnation again (without raising
        it), so that it does not time the suspicion out on us."""
        if incarnation > old.incarnation:
            return True
        if incarnation == old.incarnation:
            return False
        if member_id == self.self_id and not self.leaving and member_id not in self.broadcasts:
            self.broadcasts.push(Alive(old.id, old.cluster_id, old.address, old.incarnation))
        return True

    def refute(self, claimed: int = 0) -> None:
        """Raise our incarnation past ours, or past ``claimed``, an earlier claim of our own
        (see the module docstring)."""
        me = self.me
        claimed = claimed if claimed < REFUTABLE_INCARNATION else 0
        incarnation = max(me.incarnation, claimed) + 1
        self.members[me.id] = replace(me, incarnation=incarnation)
        self.broadcasts.push(Alive(me.id, me.cluster_id, me.address, incarnation))
        self.awareness.apply(1)
        self.refutes += 1

    def renew(self) -> None:
        """A new incarnation of ours, broadcast; for new signing keys (our claims made with
        the old ones stop verifying once their certificate expires), not a refutation."""
        me = self.me
        self.members[me.id] = replace(me, incarnation=me.incarnation + 1)
        self.broadcasts.push(Alive(me.id, me.cluster_id, me.address, me.incarnation + 1))

    def leave(self, now: float) -> None:
        self.leaving = True
        me = replace(self.me, state=LEFT)
        self._set(me, now)
        self.broadcasts.push(Left(me.id, me.incarnation))

    def merge(self, records: Iterable[Member], now: float) -> None:
        for record in records:
            if record.id == self.self_id:
                self._merge_self(record)
            elif record.state == ALIVE:
                alive = Alive(
                    record.id, record.cluster_id, record.address, record.incarnation, record.proof
                )
                self.on_alive(alive, now)
            elif record.state == LEFT:
                self.on_left(Left(record.id, record.incarnation, record.proof), now)
            elif record.id in self.members:  # unknown members are learned only from alive
                alive = Alive(
                    record.id, record.cluster_id, record.address, record.incarnation, record.proof
                )
                self.on_alive(alive, now)
                self._probe_next(record.id)

    def _merge_self(self, record: Member) -> None:
        """Our own record in a peer's table. Its incarnation is our own claim (with TLS, the
        proof is our signature), so one above ours is what we said before a restart: refute
        above it. A peer that holds us suspect, dead or left at an older incarnation missed
        our refutation: tell it again."""
        me = self.me
        if self.leaving:
            return
        moved = (record.address, record.cluster_id) != (me.address, me.cluster_id)
        if record.incarnation > me.incarnation or (
            record.incarnation == me.incarnation and (record.state != ALIVE or moved)
        ):
            self.refute(record.incarnation)
        elif record.state != ALIVE and me.id not in self.broadcasts:
            self.broadcasts.push(Alive(me.id, me.cluster_id, me.address, me.incarnation))

    def expire_suspicions(self, now: float) -> None:
        for member_id, suspicion in list(self.suspicions.items()):
            if suspicion.deadline <= now:
                incarnation = self.members[member_id].incarnation
                self.on_dead(Dead(member_id, incarnation, self.self_id), now)

    def next_suspicion_deadline(self) -> float | None:
        if not self.suspicions:
            return None
        return min(s.deadline for s in self.suspicions.values())

    # ------------------------------------------------------------------ choosing members

    def _make_room(self, cluster_id: str) -> bool:
        """Room for one more member of ``cluster_id``, after forgetting members that are
        down if a limit is reached (``mesh.swim.room``); False: refused."""
        gone = self.room.make_way(cluster_id, self.changed_at)
        for member_id in gone or ():
            self._forget(self.members[member_id])
        return gone is not None

    def _forget(self, member: Member) -> None:
        del self.members[member.id], self.changed_at[member.id]
        self._reconnects.forget(member.id)
        self.suspicions.pop(member.id, None)
        self.room.released(member.id, member.cluster_id)

    def _probe_next(self, member_id: str) -> None:
        """Probe ``member_id`` next in the round-robin (it stays once in the cycle)."""
        member = self.members.get(member_id)
        if member is not None and member.live:
            self._probes.probe_next(member_id)

    def _reset_probe_order(self, now: float) -> None:
        for member_id in self._probes.order:
            member = self.members.get(member_id)
            expired = now - self.changed_at.get(member_id, now) > self.config.reap_after_s
            if member is not None and not member.live and expired:
                self._forget(member)
        self._probes.reset([m for m in self.members if m != self.self_id])

    def next_probe_target(self, now: float) -> Member | None:
        """The next live member in the shuffled round-robin, or None if there is none."""
        for _ in range(2 * len(self._probes.order) + 2):
            if self._probes.exhausted:
                self._reset_probe_order(now)
                if not self._probes.order:
                    return None
            member = self.members.get(self._probes.take())
            if member is not None and member.live and member.id != self.self_id:
                return member
        return None

    def random_alive(self, k: int, exclude: Iterable[str] = ()) -> list[Member]:
        skip = {self.self_id, *exclude}
        pool = [m for m in self.members.values() if m.state == ALIVE and m.id not in skip]
        return self.rng.sample(pool, min(k, len(pool)))

    def gossip_targets(self, k: int, now: float) -> list[Member]:
        """Live members, and members dead for less than ``gossip_to_the_dead_s`` (so a member
        wrongly declared dead hears it and refutes)."""
        horizon = now - self.config.gossip_to_the_dead_s
        pool = [
            m
            for m in self.members.values()
            if m.id != self.self_id
            and (m.live or (m.state == DEAD and self.changed_at[m.id] >= horizon))
        ]
        return self.rng.sample(pool, min(k, len(pool)))

    def try_reconnect(self, member_id: str, now: float, min_interval_s: float) -> bool:
        """Note an attempt to reach ``member_id`` now, unless one was made in the last
        ``min_interval_s``; True when this attempt should go out."""
        return self._reconnects.try_now(member_id, now, min_interval_s)

    def down_at(self, addresses: set[str]) -> list[Member]:
        """The dead members at ``addresses``, the least recently tried first."""
        down = [
            m
            for m in self.members.values()
            if m.state is MemberState.DEAD and m.address in addresses and m.id != self.self_id
        ]
        return sorted(down, key=lambda m: (self._reconnects.last(m.id), m.id))

    def reconnect_candidate(self, now: float) -> Member | None:
        """The dead or left member whose last address was tried least recently."""
        down = [m for m in self.members.values() if not m.live and m.id != self.self_id]
        if not down:
            return None
        member = min(down, key=lambda m: (self._reconnects.last(m.id), m.id))
        self._reconnects.tried(member.id, now)
        return member

"""What the SWIM core exchanges and reports: members, messages, events.

Everything is a plain frozen dataclass of strings, ints and tuples, so the gRPC adapter maps
each one to a protobuf message field by field. Ids are agent replica ids (``east/agent-0``),
addresses are ``host:port`` strings as advertised, incarnations are non-negative ints.

Messages (all carry the sender's id; those that expect a reply carry its advertised
address, because the transport's view of a gRPC client is an ephemeral port):

- ``Ping(seq, target_id)`` and its ``Ack(seq)``; ``PingReq`` asks a relay to ping the target
  for us; the relay forwards the target's ack, or sends a ``Nack`` if none came in time;
- ``Gossip`` carries only updates (the gossip ticker's message);
- ``PushPull`` carries the sender's whole member table; ``reply=False`` asks for the
  receiver's table back.

Updates (``Alive``, ``Suspect``, ``Dead``, ``Left``) ride on ``Ping``, ``Ack``, ``PingReq``
and ``Gossip``. ``Dead`` is an accusation by ``source_id``; ``Left`` is only ever sent by the
member itself, on graceful shutdown.

``proof`` is opaque to the core: the bytes that authenticate an update (with TLS, its
author's signature: the member's own for ``Alive`` and ``Left``, the accuser's for
``Suspect`` and ``Dead``; see ``mesh.security.swim_claims``). The core stores and forwards
the proofs it was given and leaves its own updates unproven; the adapter signs those on the
way out and drops what does not verify on the way in. A ``Member`` keeps the proof of the
claim that set its incarnation, so a push-pull can pass the member's own word on.

Events are past tense and carry the member's new record.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.model import ClusterId


class MemberState(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    cluster_id: ClusterId
    address: str
    incarnation: int = 0
    state: MemberState = MemberState.ALIVE
    proof: bytes = b""  # the member's own claim of this incarnation (its Alive, or its Left)

    @property
    def live(self) -> bool:
        """Alive or suspect: still counted as part of the ring."""
        return self.state in (MemberState.ALIVE, MemberState.SUSPECT)


# ------------------------------------------------------------------------------- updates


@dataclass(frozen=True, slots=True)
class Alive:
    member_id: str
    cluster_id: ClusterId
    address: str
    incarnation: int
    proof: bytes = b""


@dataclass(frozen=True, slots=True)
class Suspect:
    member_id: str
    incarnation: int
    source_id: str
    proof: bytes = b""


@dataclass(frozen=True, slots=True)
class Dead:
    member_id: str
    incarnation: int
    source_id: str
    proof: bytes = b""


@dataclass(frozen=True, slots=True)
class Left:
    member_id: str
    incarnation: int
    proof: bytes = b""


Update = Alive | Suspect | Dead | Left

# ------------------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target_id: str
    source_id: str
    source_address: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    source_id: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    seq: int
    source_id: str


@dataclass(frozen=True, slots=True)
class PingReq:
    seq: int
    target_id: str
    target_address: str
    source_id: str
    source_address: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Gossip:
    source_id: str
    updates: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class PushPull:
    source_id: str
    source_address: str
    members: tuple[Member, ...]
    reply: bool = False


Message = Ping | Ack | Nack | PingReq | Gossip | PushPull

# -------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member this agent did not know, alive."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberSuspected:
    member: Member
    source_id: str


@dataclass(frozen=True, slots=True)
class MemberDied:
    member: Member
    source_id: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberAlive:
    """A suspect member refuted, or a dead or left one came back (``previous`` says which)."""

    member: Member
    previous: MemberState


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """An alive member announced a new address (or cluster) with a higher incarnation."""

    member: Member
    previous: Member


Event = MemberJoined | MemberSuspected | MemberDied | MemberLeft | MemberAlive | MemberUpdated


def cluster_liveness(
    members: Iterable[Member], *, suspect_is_down: bool = False
) -> dict[ClusterId, bool]:
    """{cluster_id: up} from a membership view: a cluster is down when every member of it
    that the view holds is dead or left (with ``suspect_is_down``, suspect too).

    ``suspect_is_down=True`` drops a cluster from DNS answers about one probe round plus a
    gossip spread after its last agent stops answering (1-2 s with ``Config.fast()``),
    instead of after the suspicion timeout (several seconds). A false suspicion is refuted
    within about a probe round, and only matters when *every* member of the cluster is
    suspected at once, so a cluster with two replicas practically never blinks."""
    down_states = {MemberState.DEAD, MemberState.LEFT}
    if suspect_is_down:
        down_states.add(MemberState.SUSPECT)
    up: dict[ClusterId, bool] = {}
    for member in members:
        up[member.cluster_id] = up.get(member.cluster_id, False) or (
            member.state not in down_states
        )
    return up

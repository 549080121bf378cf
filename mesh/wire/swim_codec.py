"""SWIM messages (``mesh.swim.messages``) to and from the protobuf ``SwimDatagram``.

Everything decoded comes from a peer and is untrusted: member ids must be
``<cluster>/<replica>`` with RFC 1123 labels (or a bare cluster id), cluster ids labels,
addresses ``host:port``, incarnations and sequence numbers within 64 bits, proofs at most
``MAX_PROOF_BYTES`` (their content is ``mesh.security.swim_claims``'s to check), and lists bounded.
A datagram that breaks a rule raises ``CodecError`` and is dropped whole: SWIM tolerates
lost datagrams by design, so dropping is always safe. A push-pull naming more members than
a table holds (``mesh.model.MAX_AGENTS``) is taken up to that many: ``trim`` drops the
rest before anything is decoded, and says how many, for the caller to count.
"""

from __future__ import annotations

from mesh.address import valid_host_port
from mesh.model import MAX_AGENTS, is_dns_label
from mesh.swim.messages import (
    Ack,
    Alive,
    Dead,
    Gossip,
    Left,
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
from mesh.wire.codec import CodecError
from mesh.wire.v1 import gossip_pb2 as pb

MAX_UPDATES = 256
MAX_MEMBERS = MAX_AGENTS  # a whole table, at most (a push-pull carries one)
MAX_PROOF_BYTES = 128

_STATE_TO_PB = {
    MemberState.ALIVE: pb.SWIM_ALIVE,
    MemberState.SUSPECT: pb.SWIM_SUSPECT,
    MemberState.DEAD: pb.SWIM_DEAD,
    MemberState.LEFT: pb.SWIM_LEFT,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}


def member_id(cluster_id: str, replica: str) -> str:
    return f"{cluster_id}/{replica}" if replica else cluster_id


def _id(value: str) -> str:
    parts = value.split("/")
    if len(parts) > 2 or not all(is_dns_label(p) for p in parts):
        raise CodecError(f"member id {value!r} is not <cluster>/<replica>")
    return value


def _address(value: str, optional: bool = False) -> str:
    if optional and not value:
        return value
    if not valid_host_port(value):
        raise CodecError(f"address {value!r} is not HOST:PORT")
    return value


def _cluster(value: str) -> str:
    if not is_dns_label(value):
        raise CodecError(f"cluster id {value!r} is not an RFC 1123 label")
    return value


# --- encoding ---------------------------------------------------------------------------------


def _update_to_pb(update: Update) -> pb.SwimUpdate:
    if isinstance(update, Alive):
        return pb.SwimUpdate(alive=pb.SwimAlive(
            member_id=update.member_id, cluster_id=update.cluster_id, address=update.address,
            incarnation=update.incarnation, proof=update.proof))  # fmt: skip
    if isinstance(update, Suspect):
        return pb.SwimUpdate(suspect=pb.SwimAccusation(
            member_id=update.member_id, incarnation=update.incarnation,
            source_id=update.source_id, proof=update.proof))  # fmt: skip
    if isinstance(update, Dead):
        return pb.SwimUpdate(dead=pb.SwimAccusation(
            member_id=update.member_id, incarnation=update.incarnation,
            source_id=update.source_id, proof=update.proof))  # fmt: skip
    return pb.SwimUpdate(left=pb.SwimLeft(member_id=update.member_id,
                                          incarnation=update.incarnation,
                                          proof=update.proof))  # fmt: skip


def _member_to_pb(m: Member) -> pb.SwimMember:
    return pb.SwimMember(id=m.id, cluster_id=m.cluster_id, address=m.address,
                         incarnation=m.incarnation, state=_STATE_TO_PB[m.state],
                         proof=m.proof)  # fmt: skip


def to_pb(message: Message) -> pb.SwimDatagram:
    ups = [_update_to_pb(u) for u in getattr(message, "updates", ())]
    if isinstance(message, Ping):
        return pb.SwimDatagram(ping=pb.SwimPing(
            seq=message.seq, target_id=message.target_id, source_id=message.source_id,
            source_address=message.source_address, updates=ups))  # fmt: skip
    if isinstance(message, Ack):
        return pb.SwimDatagram(ack=pb.SwimAck(seq=message.seq, source_id=message.source_id,
                                              updates=ups))  # fmt: skip
    if isinstance(message, Nack):
        return pb.SwimDatagram(nack=pb.SwimNack(seq=message.seq, source_id=message.source_id))
    if isinstance(message, PingReq):
        return pb.SwimDatagram(ping_req=pb.SwimPingReq(
            seq=message.seq, target_id=message.target_id,
            target_address=message.target_address, source_id=message.source_id,
            source_address=message.source_address, updates=ups))  # fmt: skip
    if isinstance(message, Gossip):
        return pb.SwimDatagram(gossip=pb.SwimGossip(source_id=message.source_id, updates=ups))
    return pb.SwimDatagram(push_pull=pb.SwimPushPull(
        source_id=message.source_id, source_address=message.source_address,
        members=[_member_to_pb(m) for m in message.members], reply=message.reply))  # fmt: skip


# --- decoding ---------------------------------------------------------------------------------


def _proof(value: bytes) -> bytes:
    if len(value) > MAX_PROOF_BYTES:
        raise CodecError(f"a proof of {len(value)} bytes")
    return value


def _update_from_pb(msg: pb.SwimUpdate) -> Update:
    kind = msg.WhichOneof("kind")
    if kind == "alive":
        a = msg.alive
        return Alive(_id(a.member_id), _cluster(a.cluster_id), _address(a.address),
                     a.incarnation, _proof(a.proof))  # fmt: skip
    if kind == "suspect":
        s = msg.suspect
        return Suspect(_id(s.member_id), s.incarnation, _id(s.source_id), _proof(s.proof))
    if kind == "dead":
        d = msg.dead
        return Dead(_id(d.member_id), d.incarnation, _id(d.source_id), _proof(d.proof))
    if kind == "left":
        return Left(_id(msg.left.member_id), msg.left.incarnation, _proof(msg.left.proof))
    raise CodecError("empty SWIM update")


def _updates(items: object) -> tuple[Update, ...]:
    seq = list(items)  # type: ignore[call-overload]
    if len(seq) > MAX_UPDATES:
        raise CodecError(f"{len(seq)} updates in one message")
    return tuple(_update_from_pb(u) for u in seq)


def _member_from_pb(m: pb.SwimMember) -> Member:
    if m.state not in _STATE_FROM_PB:
        raise CodecError(f"member {m.id!r}: unknown state {m.state}")
    return Member(_id(m.id), _cluster(m.cluster_id), _address(m.address), m.incarnation,
                  _STATE_FROM_PB[m.state], _proof(m.proof))  # fmt: skip


def trim(msg: pb.SwimDatagram) -> int:
    """Drop a push-pull's members past ``MAX_MEMBERS`` (in place); how many were dropped."""
    if msg.WhichOneof("kind") != "push_pull":
        return 0
    extra = len(msg.push_pull.members) - MAX_MEMBERS
    if extra <= 0:
        return 0
    del msg.push_pull.members[MAX_MEMBERS:]
    return extra


def from_pb(msg: pb.SwimDatagram) -> Message:
    kind = msg.WhichOneof("kind")
    if kind == "ping":
        p = msg.ping
        return Ping(p.seq, _id(p.target_id), _id(p.source_id), _address(p.source_address, True),
                    _updates(p.updates))  # fmt: skip
    if kind == "ack":
        return Ack(msg.ack.seq, _id(msg.ack.source_id), _updates(msg.ack.updates))
    if kind == "nack":
        return Nack(msg.nack.seq, _id(msg.nack.source_id))
    if kind == "ping_req":
        r = msg.ping_req
        return PingReq(r.seq, _id(r.target_id), _address(r.target_address), _id(r.source_id),
                       _address(r.source_address, True), _updates(r.updates))  # fmt: skip
    if kind == "gossip":
        return Gossip(_id(msg.gossip.source_id), _updates(msg.gossip.updates))
    if kind == "push_pull":
        pp = msg.push_pull
        if len(pp.members) > MAX_MEMBERS:
            raise CodecError(f"{len(pp.members)} members in one push-pull")
        members = tuple(_member_from_pb(m) for m in pp.members)
        return PushPull(_id(pp.source_id), _address(pp.source_address, True), members, pp.reply)
    raise CodecError("empty SWIM datagram")

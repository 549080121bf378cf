"""SWIM messages survive the trip through protobuf; bad datagrams are refused, never crash."""

from __future__ import annotations

import contextlib

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

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
)
from mesh.wire.codec import CodecError
from mesh.wire.swim_codec import from_pb, member_id, to_pb
from mesh.wire.v1 import gossip_pb2 as pb

PROOF = bytes(range(80))  # opaque to the codec (mesh.security.swim_claims reads it)
UPDATES = (
    Alive("east/a", "east", "10.0.0.1:7946", 3),
    Suspect("west/b", 2, "east/a"),
    Dead("south", 9, "east/a"),
    Left("west/b", 4),
    Alive("east/a", "east", "10.0.0.1:7946", 2**64 - 1, PROOF),
    Suspect("west/b", 2, "east/a", PROOF),
    Dead("south", 9, "east/a", PROOF),
    Left("west/b", 4, PROOF),
)
MESSAGES: list[Message] = [
    Ping(1, "west/b", "east/a", "10.0.0.1:7946", UPDATES),
    Ping(2, "west/b", "east/a", ""),
    Ack(1, "west/b", UPDATES[:1]),
    Nack(7, "south"),
    PingReq(3, "west/b", "10.0.0.2:7946", "east/a", "10.0.0.1:7946", UPDATES),
    Gossip("east/a", UPDATES),
    PushPull(
        "east/a",
        "[fd00::1]:7946",
        (
            Member("east/a", "east", "10.0.0.1:7946", 1, MemberState.ALIVE),
            Member("west/b", "west", "10.0.0.2:7946", 0, MemberState.LEFT),
            Member("south/c", "south", "10.0.0.3:7946", 5, MemberState.DEAD, PROOF),
        ),
        reply=True,
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    wire = to_pb(message).SerializeToString()
    assert from_pb(pb.SwimDatagram.FromString(wire)) == message


def test_member_ids() -> None:
    assert member_id("east", "agent-0") == "east/agent-0"
    assert member_id("east", "") == "east"


@pytest.mark.parametrize(
    "bad",
    [
        pb.SwimDatagram(),
        pb.SwimDatagram(ping=pb.SwimPing(seq=1, target_id="Bad_Id", source_id="east/a")),
        pb.SwimDatagram(ping=pb.SwimPing(seq=1, target_id="a/b/c", source_id="east/a")),
        pb.SwimDatagram(
            ping=pb.SwimPing(seq=1, target_id="west", source_id="east", source_address="nohost")
        ),
        pb.SwimDatagram(gossip=pb.SwimGossip(source_id="east", updates=[pb.SwimUpdate()])),
        pb.SwimDatagram(
            push_pull=pb.SwimPushPull(
                source_id="east",
                members=[
                    pb.SwimMember(id="west", cluster_id="west", address="10.0.0.2:1", state=0)
                ],
            )
        ),
        pb.SwimDatagram(
            gossip=pb.SwimGossip(
                source_id="east", updates=[pb.SwimUpdate(left=pb.SwimLeft(member_id="x"))] * 300
            )
        ),
        pb.SwimDatagram(
            gossip=pb.SwimGossip(
                source_id="east",
                updates=[pb.SwimUpdate(left=pb.SwimLeft(member_id="x", proof=bytes(129)))],
            )
        ),
        pb.SwimDatagram(
            push_pull=pb.SwimPushPull(
                source_id="east",
                members=[
                    pb.SwimMember(
                        id="west",
                        cluster_id="west",
                        address="10.0.0.2:1",
                        state=1,
                        proof=b"x" * 200,
                    )
                ],
            )
        ),
    ],
    ids=[
        "empty",
        "bad-label",
        "three-parts",
        "bad-address",
        "empty-update",
        "bad-state",
        "too-many-updates",
        "oversized-update-proof",
        "oversized-member-proof",
    ],
)
def test_bad_datagrams_are_refused(bad: pb.SwimDatagram) -> None:
    with pytest.raises(CodecError):
        from_pb(bad)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_refuse(data: bytes) -> None:
    try:
        datagram = pb.SwimDatagram.FromString(data)
    except DecodeError:
        return
    with contextlib.suppress(CodecError):
        from_pb(datagram)

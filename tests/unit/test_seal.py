"""Origin-signed records on a secure ring: a relay forwards the origin's sealed bytes, and
forged, altered, re-attributed or unsigned records never reach the catalog."""

from __future__ import annotations

import pytest

from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.records_kit import KEYS, Node, service, sync, wire
from tests.unit.test_signing import NOW, Clusterset, make_clusterset


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("east", "west", "south"))


@pytest.fixture(scope="module")
def other() -> Clusterset:
    return make_clusterset("prod", ("east",))  # same name, another CA


def node(cluster: str, cs: Clusterset, signer_of: str | None = None) -> Node:
    return Node(
        cluster,
        signer=cs.signers[signer_of or cluster],
        trust=cs.trust(),
        clusterset=cs.name,
    )


def take_all(src: Node, dst: Node) -> None:
    for message in wire(src, dst)[0]:
        dst.take(message, 0.0, wall=NOW)


def test_signed_records_are_taken_and_relayed_byte_for_byte(prod: Clusterset) -> None:
    east, west, south = node("east", prod), node("west", prod), node("south", prod)
    east.export({KEYS[0]: service(KEYS[0], "10.1.0.1")})
    take_all(east, west)
    assert west.dropped == []
    assert KEYS[0] in west.view()["east"]
    from_origin = [m for m in wire(east, south)[0] if m.cluster_id == "east"]
    relayed = [m for m in wire(west, south)[0] if m.cluster_id == "east"]
    assert list(relayed[0].records) == list(from_origin[0].records)
    assert relayed[0].head == from_origin[0].head
    take_all(west, south)
    assert south.dropped == []
    assert south.view()["east"] == east.exports()


def test_a_member_cannot_sign_another_clusters_records(prod: Clusterset) -> None:
    """west holds a valid signing certificate, and publishes records claiming east."""
    forger = node("east", prod, signer_of="west")
    forger.export({KEYS[0]: service(KEYS[0], "10.6.6.6")})
    south = node("south", prod)
    take_all(forger, south)
    assert "east" not in south.view()
    assert south.dropped
    assert set(south.dropped) == {"unknown_key"}


@pytest.mark.parametrize("part", ["record", "head"])
def test_an_altered_record_or_head_is_dropped(prod: Clusterset, part: str) -> None:
    east, south = node("east", prod), node("south", prod)
    east.export({KEYS[0]: service(KEYS[0], "10.1.0.1")})
    message = next(m for m in wire(east, south)[0] if m.cluster_id == "east")
    if part == "record":
        sealed = pb.Sealed.FromString(message.records[-1])
        sealed.body = sealed.body.replace(b"10.1.0.1", b"10.6.6.6")
        message.records[-1] = sealed.SerializeToString()
    else:
        sealed = pb.Sealed.FromString(message.head)
        head = pb.Head.FromString(sealed.body)
        head.live += 1
        sealed.body = head.SerializeToString()
        message.head = sealed.SerializeToString()
    south.take(message, 0.0, wall=NOW)
    assert south.dropped == ["bad_signature"]
    assert "east" not in south.view()


def test_unsigned_records_are_refused_on_a_secure_ring(prod: Clusterset) -> None:
    plain = Node("east")  # an --insecure agent
    plain.export({KEYS[0]: service(KEYS[0], "10.1.0.1")})
    south = node("south", prod)
    for message in wire(plain, south)[0]:
        message.clusterset = prod.name
        south.take(message, 0.0, wall=NOW)
    assert south.dropped == ["unsigned"]
    assert "east" not in south.view()


def test_records_of_another_clusterset_are_refused(prod: Clusterset, other: Clusterset) -> None:
    stranger = node("east", other)
    stranger.export({KEYS[0]: service(KEYS[0], "10.1.0.1")})
    south = node("south", prod)
    take_all(stranger, south)
    assert south.dropped == ["untrusted_certificate"]
    assert "east" not in south.view()


def test_own_records_are_signed_once_when_made(prod: Clusterset) -> None:
    east, south = node("east", prod), node("south", prod)
    east.export({KEYS[0]: service(KEYS[0], "10.1.0.1")})
    first = wire(east, south)[0]
    again = wire(east, south)[0]
    assert [list(m.records) for m in first] == [list(m.records) for m in again]
    sync(east, south, 0.0)  # without the wall clock the certificate looks expired
    assert set(south.dropped) == {"untrusted_certificate"}


def test_a_certificate_of_an_unknown_key_type_is_a_counted_drop_not_a_crash(
    prod: Clusterset,
) -> None:
    east, south = node("east", prod), node("south", prod)
    east.export({KEYS[0]: service(KEYS[0], "10.1.0.1")})
    message = next(m for m in wire(east, south)[0] if m.cluster_id == "east")
    ed25519_oid = bytes.fromhex("06032b6570")
    assert message.certificate.count(ed25519_oid) == 1
    message.certificate = message.certificate.replace(ed25519_oid, bytes.fromhex("06032b657f"))
    south.take(message, 0.0, wall=NOW)  # records_kit.Node.take lets anything else escape
    assert south.dropped == ["untrusted_certificate"]

"""Signed SWIM claims: what an agent signs passes every check, and nothing a member forges
about another member (or under another accuser's name) reaches the core."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.security import signing
from mesh.security import swim_claims as swim_auth
from mesh.security.seal import StateSeal
from mesh.security.signing import REASONS, SWIM_DOMAIN
from mesh.security.swim_claims import SwimAuth, claim_of
from mesh.swim.messages import (
    Alive,
    Dead,
    Gossip,
    Left,
    Member,
    MemberState,
    Message,
    Ping,
    PushPull,
    Suspect,
    Update,
)
from mesh.wire.swim_codec import from_pb, to_pb
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.test_signing import NOW, Clusterset, make_clusterset

ADDRESS = {"east": "10.0.0.1:7946", "west": "10.0.0.2:7946", "south": "10.0.0.3:7946"}


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("east", "west", "south"))


@pytest.fixture(scope="module")
def other() -> Clusterset:
    return make_clusterset("prod", ("south",))  # the same names under another CA


class Agent:
    def __init__(self, cs: Clusterset, cluster: str, signer_of: str | None = None) -> None:
        self.id = f"{cluster}/0"
        self.rejected: list[str] = []
        self.seal = StateSeal(cs.signers[signer_of or cluster], cs.trust())
        self.auth = SwimAuth(self.seal, self.id, self.rejected.append)

    def send(self, message: Message) -> bytes:
        """``message`` as this agent puts it on the wire."""
        signed = self.auth.sign(message)
        datagram = to_pb(signed)
        if isinstance(signed, PushPull):
            datagram.push_pull.certificates.extend(self.auth.certificates(signed, NOW))
        return datagram.SerializeToString()

    def receive(self, wire: bytes) -> Message:
        datagram = pb.SwimDatagram.FromString(wire)
        message = from_pb(datagram)
        certificates = datagram.push_pull.certificates if isinstance(message, PushPull) else ()
        return self.auth.admit(message, certificates, NOW)


def alive(cluster: str, incarnation: int = 1) -> Alive:
    return Alive(f"{cluster}/0", cluster, ADDRESS[cluster], incarnation)


def forged(cs: Clusterset, by: str, update: Update) -> Update:
    """``update`` with a proof made by cluster ``by``'s own (valid) signing key."""
    _cluster, body = claim_of(update)
    sealed = cs.signers[by].seal(SWIM_DOMAIN, body)
    return dataclasses.replace(update, proof=bytes.fromhex(sealed.key_id) + sealed.signature)


def introduce(receiver: Agent, *senders: Agent) -> None:
    """``receiver`` learns the senders' keys, as a push-pull or a record chunk brings them."""
    for sender in senders:
        receiver.seal.trust.add_certificate(sender.seal.signer.key.certificate_der, NOW)


OWN_CLAIMS: list[Update] = [
    alive("west", 3),
    Left("west/0", 3),
    Suspect("south/0", 2, "west/0"),
    Dead("south/0", 2, "west/0"),
]


@pytest.mark.parametrize("update", OWN_CLAIMS, ids=lambda u: type(u).__name__)
def test_a_claim_of_the_agents_own_is_signed_and_verifies(prod: Clusterset, update: Update) -> None:
    west, east = Agent(prod, "west"), Agent(prod, "east")
    introduce(east, west)
    received = east.receive(west.send(Gossip(west.id, (update,))))
    assert isinstance(received, Gossip)
    (got,) = received.updates
    assert len(got.proof) == swim_auth.PROOF_BYTES
    assert dataclasses.replace(got, proof=b"") == update
    assert east.rejected == []


def test_a_relay_forwards_the_authors_proof_untouched(prod: Clusterset) -> None:
    west, east, south = Agent(prod, "west"), Agent(prod, "east"), Agent(prod, "south")
    introduce(east, west)
    introduce(south, west)
    (from_west,) = east.receive(west.send(Gossip(west.id, (alive("west"),)))).updates
    relayed = south.receive(east.send(Gossip(east.id, (from_west,))))
    assert relayed.updates == (from_west,)
    assert south.rejected == []


def forgeries(cs: Clusterset, other: Clusterset) -> dict[str, tuple[Update, str]]:
    """What west, a member with valid certificates, might send about others."""
    south_alive = forged(cs, "south", alive("south", 4))
    return {
        "alive-unsigned": (alive("south", 9), "unsigned"),
        "alive-signed-by-west": (forged(cs, "west", alive("south", 9)), "unknown_key"),
        "moved-by-west": (
            forged(cs, "west", Alive("south/0", "south", "10.6.6.6:7946", 9)),
            "unknown_key",
        ),
        "left-signed-by-west": (forged(cs, "west", Left("south/0", 9)), "unknown_key"),
        "dead-in-easts-name": (forged(cs, "west", Dead("south/0", 4, "east/0")), "unknown_key"),
        "suspect-in-easts-name": (
            forged(cs, "west", Suspect("south/0", 4, "east/0")),
            "unknown_key",
        ),
        "alive-other-cluster-id": (
            forged(cs, "west", Alive("south/0", "west", ADDRESS["west"], 9)),
            "malformed",
        ),
        "alive-incarnation-raised": (
            dataclasses.replace(south_alive, incarnation=2**64 - 1),
            "bad_signature",
        ),
        "alive-address-changed": (
            dataclasses.replace(south_alive, address="10.6.6.6:7946"),
            "bad_signature",
        ),
        "left-with-an-alive-proof": (Left("south/0", 4, south_alive.proof), "bad_signature"),
        "truncated-proof": (
            dataclasses.replace(south_alive, proof=south_alive.proof[:70]),
            "malformed",
        ),
        "another-clustersets-south": (forged(other, "south", alive("south", 9)), "unknown_key"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "alive-unsigned",
        "alive-signed-by-west",
        "moved-by-west",
        "left-signed-by-west",
        "dead-in-easts-name",
        "suspect-in-easts-name",
        "alive-other-cluster-id",
        "alive-incarnation-raised",
        "alive-address-changed",
        "left-with-an-alive-proof",
        "truncated-proof",
        "another-clustersets-south",
    ],
)
def test_forged_claims_are_dropped_and_counted(
    prod: Clusterset, other: Clusterset, case: str
) -> None:
    """A claim an honest relay may pass on (its key unknown here) is dropped alone; one no
    honest sender makes (unsigned, malformed, bad signature) ends the datagram there, so a
    flood of bad proofs costs one check per datagram."""
    west, east, south = Agent(prod, "west"), Agent(prod, "east"), Agent(prod, "south")
    introduce(east, west, south)
    update, reason = forgeries(prod, other)[case]
    good = forged(prod, "south", alive("south", 4))
    received = east.receive(west.send(Gossip(west.id, (update, good))))
    if reason == "unknown_key":
        assert received.updates == (good,), case
        assert east.rejected == [reason], case
    else:
        assert received.updates == (), case
        assert east.rejected == [reason, "rest_of_message"], case


def test_a_push_pull_brings_the_certificates_a_newcomer_needs(prod: Clusterset) -> None:
    west, east = Agent(prod, "west"), Agent(prod, "east")
    introduce(west, Agent(prod, "south"))
    south = forged(prod, "south", alive("south", 4))
    table = (
        Member("west/0", "west", ADDRESS["west"], 2),
        Member("south/0", "south", ADDRESS["south"], 4, MemberState.SUSPECT, south.proof),
    )
    wire = west.send(PushPull(west.id, ADDRESS["west"], table))
    certificates = pb.SwimDatagram.FromString(wire).push_pull.certificates
    assert certificates[0] == west.seal.signer.key.certificate_der
    assert len(certificates) == 2
    between = west.auth.certificates(PushPull(west.id, ADDRESS["west"], table), NOW, everyone=False)
    assert between == [west.seal.signer.key.certificate_der]  # a peer that had them recently
    received = east.receive(wire)  # east knew neither key before
    assert isinstance(received, PushPull)
    assert [(m.id, m.state, m.incarnation) for m in received.members] == [
        ("west/0", MemberState.ALIVE, 2),
        ("south/0", MemberState.SUSPECT, 4),
    ]
    assert east.rejected == []


def test_a_push_pull_record_must_carry_the_members_own_word(prod: Clusterset) -> None:
    west, east = Agent(prod, "west"), Agent(prod, "east")
    introduce(east, west, Agent(prod, "south"))
    proof_at_4 = forged(prod, "south", alive("south", 4)).proof
    table = (
        Member("south/0", "south", ADDRESS["south"], 4, MemberState.DEAD, proof_at_4),
        Member("south/1", "south", "10.0.0.9:7946", 4, MemberState.DEAD, proof_at_4),
        Member("south/0", "south", ADDRESS["south"], 9, MemberState.LEFT, proof_at_4),
    )
    received = east.receive(west.send(PushPull(west.id, ADDRESS["west"], table)))
    assert [m.id for m in received.members] == ["south/0"]
    assert east.rejected == ["bad_signature", "rest_of_message"]


def test_each_claim_is_signed_once_and_verified_once(
    prod: Clusterset, monkeypatch: pytest.MonkeyPatch
) -> None:
    west, east = Agent(prod, "west"), Agent(prod, "east")
    introduce(east, west)
    verified: list[str] = []
    real_verify = signing.verify_sealed

    def counting(*args: object, **kwargs: object) -> None:
        verified.append("x")
        real_verify(*args, **kwargs)

    monkeypatch.setattr(swim_auth, "verify_sealed", counting)
    message = Ping(1, "east/0", west.id, ADDRESS["west"], (alive("west", 5),))
    signer = west.seal.signer
    sealed: list[bytes] = []
    real_seal = signer.seal
    monkeypatch.setattr(signer, "seal", lambda d, b: sealed.append(b) or real_seal(d, b))
    wires = [west.send(message) for _ in range(5)]
    assert len(set(wires)) == 1
    assert len(sealed) == 1
    for wire in wires:
        assert east.receive(wire).updates
    assert len(verified) == 1


def test_renewed_keys_sign_from_then_on(prod: Clusterset) -> None:
    west, east = Agent(prod, "west"), Agent(prod, "east")
    before = west.auth.sign(Gossip(west.id, (alive("west"),)))
    renewed = make_clusterset("prod", ("west",))
    west.seal.replace(renewed.signers["west"], renewed.trust())
    after = west.auth.sign(Gossip(west.id, (alive("west"),)))
    assert before.updates[0].proof[:16] != after.updates[0].proof[:16]
    assert after.updates[0].proof[:16].hex() == renewed.signers["west"].key.key_id
    assert east.rejected == []


def test_a_sender_can_make_us_check_only_so_many_new_signatures(prod: Clusterset) -> None:
    west, east = Agent(prod, "west"), Agent(prod, "east")
    introduce(east, west)
    burst = int(swim_auth.VERIFY_RATE.burst)
    made_up = tuple(
        forged(prod, "west", Alive(f"west/fake-{i}", "west", "10.9.0.1:7946", 1))
        for i in range(burst + 10)
    )
    table = tuple(Member(a.member_id, "west", a.address, 1, proof=a.proof) for a in made_up)
    half = len(table) // 2  # a push-pull names at most MAX_MEMBERS (a table's worth)
    received = [
        east.receive(west.send(PushPull(west.id, ADDRESS["west"], part)))
        for part in (table[:half], table[half:])
    ]
    assert sum(len(r.members) for r in received) == burst
    assert east.rejected == ["verify_budget", "rest_of_message"]
    again = east.receive(west.send(PushPull(west.id, ADDRESS["west"], table[:half])))
    assert len(again.members) == half  # remembered: no new check, no budget


def test_a_remembered_claim_is_not_taken_after_its_key_expired(prod: Clusterset) -> None:
    west, east = Agent(prod, "west"), Agent(prod, "east")
    introduce(east, west)
    wire = west.send(Gossip(west.id, (alive("west"),)))
    assert east.receive(wire).updates
    later = NOW + 31 * 86400.0  # the signing certificates are valid for 30 days
    datagram = pb.SwimDatagram.FromString(wire)
    assert east.auth.admit(from_pb(datagram), (), later).updates == ()
    assert east.rejected == ["untrusted_certificate"]
    table = PushPull(west.id, ADDRESS["west"], (Member("west/0", "west", ADDRESS["west"], 1),))
    assert west.auth.certificates(table, later) == [west.seal.signer.key.certificate_der]


def test_new_signing_keys_are_noticed_once(prod: Clusterset) -> None:
    west = Agent(prod, "west")
    west.auth.sign(Gossip(west.id, (alive("west"),)))
    assert not west.auth.keys_changed()
    renewed = make_clusterset("prod", ("west",))
    west.seal.replace(renewed.signers["west"], renewed.trust())
    assert west.auth.keys_changed()  # the pump then has the core announce a new incarnation
    assert not west.auth.keys_changed()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(proof=st.binary(max_size=128), incarnation=st.integers(0, 2**64 - 1))
def test_any_proof_is_admitted_or_refused_with_a_reason(proof: bytes, incarnation: int) -> None:
    cs = PROD_FOR_FUZZ
    east = Agent(cs, "east")
    update = Alive("south/0", "south", ADDRESS["south"], incarnation, proof)
    received = east.receive(to_pb(Gossip("west/0", (update,))).SerializeToString())
    assert received.updates == ()
    assert len(east.rejected) == 1
    assert east.rejected[0] in {"unsigned", "malformed", *REASONS}


PROD_FOR_FUZZ = make_clusterset("fuzz", ("east", "south"))

"""The ring's use of signatures: forged, altered and unsigned states never reach the catalog,
and relays forward the origin's envelope byte for byte."""

from __future__ import annotations

import pytest

from mesh.catalog import Catalog, Change
from mesh.codec import state_to_pb
from mesh.model import ClusterState
from mesh.peers import PeerTable
from mesh.ring import Ring
from mesh.seal import StateSeal
from mesh.signing import Verifier
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit.test_signing import NOW, Clusterset, make_clusterset, state


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("east", "west", "south"))


def ring_of(cluster: str, cs: Clusterset) -> tuple[Ring, list[Change]]:
    changes: list[Change] = []
    catalog = Catalog(ClusterState(cluster, 1, 1))
    seal = StateSeal(cs.signers[cluster], Verifier(cs.trust()))
    ring = Ring(catalog, PeerTable(cluster, f"{cluster}:1", []), changes.append, seal=seal)
    return ring, changes


def absorb(
    ring: Ring, *, plain: list[pb.ClusterState] = (), signed: list[pb.SignedClusterState] = ()
) -> None:
    ring._absorb([], list(plain), list(signed), 0.0)


def test_a_state_signed_by_its_origin_is_taken_and_forwarded_byte_for_byte(
    prod: Clusterset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mesh.ring.time.time", lambda: NOW)
    relay, changes = ring_of("west", prod)
    envelope = prod.signers["east"].sign(state("east"))
    absorb(relay, signed=[envelope])
    assert relay.catalog.get("east") == state("east")
    assert [c.cluster_id for c in changes] == ["east"]
    forwarded = relay.seal.envelopes(relay.catalog.states(), "west")  # type: ignore[union-attr]
    east = [e for e in forwarded if e.cluster_id == "east"]
    assert [e.SerializeToString() for e in east] == [envelope.SerializeToString()]


@pytest.mark.parametrize("how", ["other_key_same_claim", "other_key_own_claim", "altered"])
def test_forged_or_altered_states_are_dropped_and_counted(
    prod: Clusterset, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A member with a valid certificate (west) cannot make south believe east's services."""
    monkeypatch.setattr("mesh.ring.time.time", lambda: NOW)
    south, changes = ring_of("south", prod)
    forged_state = state("east")
    if how == "other_key_same_claim":  # west's key, envelope claiming east
        envelope = prod.signers["west"].sign_bytes(
            state_to_pb(forged_state).SerializeToString(deterministic=True)
        )
        envelope.cluster_id = "east"
    elif how == "other_key_own_claim":  # west signs a state whose body says east
        envelope = prod.signers["west"].sign_bytes(
            state_to_pb(forged_state).SerializeToString(deterministic=True)
        )
    else:  # east's genuine envelope, with the state bytes changed by a relay
        envelope = prod.signers["east"].sign(forged_state)
        altered = state_to_pb(state("east", version=99)).SerializeToString(deterministic=True)
        envelope.state = altered
    absorb(south, signed=[envelope])
    assert south.catalog.get("east") is None
    assert changes == []
    assert sum(south.seal.dropped.values()) == 1  # type: ignore[union-attr]


def test_unsigned_states_are_ignored_on_a_secure_ring(
    prod: Clusterset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mesh.ring.time.time", lambda: NOW)
    south, changes = ring_of("south", prod)
    absorb(south, plain=[state_to_pb(state("east"))])
    assert south.catalog.get("east") is None
    assert south.stats.rejected_unsigned == 1
    assert changes == []


def test_own_state_is_signed_once_per_version(prod: Clusterset) -> None:
    east, _ = ring_of("east", prod)
    seal = east.seal
    assert seal is not None
    first = seal.envelopes([state("east", 3)], "east")
    again = seal.envelopes([state("east", 3)], "east")
    assert first[0] is again[0]
    newer = seal.envelopes([state("east", 4)], "east")
    assert newer[0] is not first[0]

"""Whose chunks are an origin's own word (mesh/wire/exchange.py): the sender's, of its own
records, when the sender is known to be that origin. Without TLS the message says so; with
TLS only a caller's certificate does (a server's is not checked against the cluster it
answers for), so a relay can never roll a copy back, with or without TLS."""

from __future__ import annotations

import pytest

from mesh.security.seal import StateSeal
from mesh.wire.exchange import RefusedError
from mesh.wire.record_codec import chunk_to_pb
from tests.unit.exchange_kit import WALL, Agent, call, exchange
from tests.unit.test_signing import Clusterset, make_clusterset


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("x", "a", "r"))


def seal(cs: Clusterset, cluster: str) -> StateSeal:
    return StateSeal(cs.signers[cluster], cs.trust())


def test_without_tls_the_origins_answer_wins_back_a_made_up_copy() -> None:
    x, a = Agent("x", "10.0.0.1:7946"), Agent("a", "10.0.0.2:7946")
    x.export("1")
    exchange(a, x)
    forger = Agent("x", "10.0.0.9:7946", generation=99)  # says it is x, a newer generation
    forger.export("6")
    exchange(forger, a)
    assert a.view("x") == forger.exports()
    exchange(a, x)  # a calls x: x answers with its own copy, which a takes from x
    assert a.view("x") == x.exports()
    assert a.store.logs[("x", "")].generation == 1


def test_with_tls_only_the_origins_own_request_rolls_its_copy_back(prod: Clusterset) -> None:
    """x restarted with its clock stepped back (no --state-dir): its new generation is below
    the one it signed before. A server's reply naming x is not x's word (its certificate
    is not checked against x); x's own request is, and wins."""
    before = Agent("x", "10.0.0.1:7946", generation=50, seal=seal(prod, "x"))
    before.export("1")
    a = Agent("a", "10.0.0.2:7946", seal=seal(prod, "a"))
    exchange(a, before, tls=True)
    x = Agent("x", "10.0.0.1:7946", generation=40, seal=seal(prod, "x"))  # the clock went back
    x.export("2")
    exchange(a, x, tls=True)  # a calls x: x's answer is a server's, not proven x's
    assert a.view("x") == before.exports()
    assert a.exchange.stats.rejected == {"chunk:stale": 1}
    exchange(x, a, tls=True)  # x calls a: its certificate is x's
    assert a.view("x") == x.exports()
    assert a.store.logs[("x", "")].generation == 40


def test_with_tls_a_relay_cannot_roll_a_copy_back_nor_speak_for_the_origin(
    prod: Clusterset,
) -> None:
    old = Agent("x", "10.0.0.1:7946", generation=40, seal=seal(prod, "x"))
    old.export("0")
    relay = Agent("r", "10.0.0.3:7946", seal=seal(prod, "r"))
    exchange(relay, old, tls=True)  # the relay keeps x's older generation, signed by x
    x = Agent("x", "10.0.0.1:7946", generation=50, seal=seal(prod, "x"))
    x.export("1")
    a = Agent("a", "10.0.0.2:7946", seal=seal(prod, "a"))
    exchange(a, x, tls=True)
    sent = relay.exchange.request_for(a.address, 2.0)
    kept = [c for c in relay.store.select(None, 1 << 20)[0] if c.cluster_id == "x"]
    sent.request.chunks.extend(chunk_to_pb(c, "prod") for c in kept)
    a.exchange.answer(sent.request, "r", 2.0, WALL)  # x's sealed bytes, from a relay
    assert a.view("x") == x.exports()  # no rollback
    assert a.exchange.stats.rejected == {"chunk:stale": 1}
    sent.request.sender.cluster_id = "x"  # and saying it is x: its certificate is r's
    with pytest.raises(RefusedError) as refused:
        a.exchange.answer(sent.request, "r", 2.0, WALL)
    assert refused.value.kind == "identity"
    assert a.view("x") == x.exports()


def test_a_record_forged_at_the_origins_own_version_is_caught_by_the_head_hash() -> None:
    x, a = Agent("x", "10.0.0.1:7946"), Agent("a", "10.0.0.2:7946")
    x.export("1")
    exchange(a, x)
    forger = Agent("x", "10.0.0.9:7946")  # x's generation, x's versions, other content
    forger.export("1")
    forger.export("6")
    exchange(forger, a)
    x.export("2")  # x reaches the forger's version with its own records
    theirs = next(d for d in a.store.digests() if d.cluster_id == "x")
    mine = next(d for d in x.store.digests() if d.cluster_id == "x")
    assert (theirs.generation, theirs.version, theirs.checked) == (
        mine.generation,
        mine.version,
        mine.checked,
    )
    assert theirs.head_hash != mine.head_hash
    call(a, x)
    assert a.view("x") == x.exports()

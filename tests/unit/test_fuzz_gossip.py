"""Fuzzing the gossip decoders and the exchange (issue 13): any input, whole, split byte by
byte or with trailing junk, gives a result or the documented error (``CodecError``,
``ChunkError``, ``RefusedError``; protobuf's ``DecodeError`` where gRPC would drop the
bytes), never anything else; the state it leaves stays within its bounds; and a genuine
message is still taken afterwards (h11's ``fuzz/`` invariant; tests/unit/fuzz_kit.py).

Bounded in the suite (``MAX_EXAMPLES`` each, derandomized so a failure reproduces);
``bench/fuzz_bench.py --seed N --seconds S`` runs the same properties for longer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.security.seal import StateSeal
from mesh.security.swim_claims import SwimAuth
from mesh.wire.v1 import gossip_pb2 as pb
from tests.unit import fuzz_kit as fk
from tests.unit.test_signing import Clusterset, make_clusterset

MAX_EXAMPLES = 30
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
chunks = st.one_of(fk.message(pb.OriginChunk), fk.coherent_chunk())


@pytest.fixture(scope="module")
def prod() -> Clusterset:
    return make_clusterset("prod", ("east", "west"))


@FUZZ
@given(st.lists(fk.message(pb.SwimDatagram), min_size=1, max_size=3))
def test_swim_datagrams(datagrams: list[pb.SwimDatagram]) -> None:
    fk.check_swim(datagrams)


def test_swim_datagrams_with_tls(prod: Clusterset) -> None:
    @FUZZ
    @given(st.lists(fk.message(pb.SwimDatagram), min_size=1, max_size=3))
    def run(datagrams: list[pb.SwimDatagram]) -> None:
        seal = StateSeal(prod.signers["east"], prod.trust())
        fk.check_swim(datagrams, SwimAuth(seal, "east/0", lambda reason: None))

    run()


@FUZZ
@given(st.lists(chunks, min_size=1, max_size=3))
def test_origin_chunks(messages: list[pb.OriginChunk]) -> None:
    fk.check_chunks(messages)


def test_origin_chunks_with_tls(prod: Clusterset) -> None:
    @FUZZ
    @given(st.lists(chunks, min_size=1, max_size=3))
    def run(messages: list[pb.OriginChunk]) -> None:
        fk.check_chunks(messages, prod.trust())

    run()


@FUZZ
@given(
    st.lists(
        st.one_of(
            fk.message(pb.PushPullRequest),
            st.builds(
                lambda r, c: (r.chunks.extend(c), r)[1],
                fk.message(pb.PushPullRequest),
                st.lists(fk.coherent_chunk(), max_size=3),
            ),
        ),
        max_size=3,
    ),
    st.lists(fk.message(pb.PushPullResponse), max_size=2),
    st.lists(fk.stream(), max_size=3),
)
def test_the_exchange(
    requests: list[pb.PushPullRequest],
    replies: list[pb.PushPullResponse],
    streams: list[list[pb.OriginChunk]],
) -> None:
    fk.check_exchange(requests, replies, streams)


@FUZZ
@given(st.lists(fk.message(pb.Digest), max_size=4), st.lists(fk.message(pb.Service), max_size=3))
def test_codec(digests: list[pb.Digest], services: list[pb.Service]) -> None:
    fk.check_codec(digests, services)

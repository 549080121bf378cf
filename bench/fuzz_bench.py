"""The gossip fuzz properties of tests/unit/test_fuzz_gossip.py, for longer and seeded.

Each property (SWIM datagrams with and without TLS, origin chunks with and without TLS,
the exchange with a real record store and catalog, the codec's decoders) runs in batches
of ``--batch`` examples, batch ``i`` seeded with ``--seed + i``, until ``--seconds`` have
passed for it. Any input, whole, cut after each byte or with trailing junk, must give a
result or the documented error; the state must stay bounded; a genuine message must still
be taken. A failure prints the property, the batch's seed and Hypothesis's smallest
failing example, and the run exits with status 1.

Usage: ``.venv/bin/python bench/fuzz_bench.py [--seed 0] [--seconds 60] [--batch 200]``
(from the repository root).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mesh.security.seal import StateSeal  # noqa: E402 (after the path is set)
from mesh.security.swim_claims import SwimAuth  # noqa: E402
from mesh.wire.v1 import gossip_pb2 as pb  # noqa: E402
from tests.unit import fuzz_kit as fk  # noqa: E402
from tests.unit.test_signing import make_clusterset  # noqa: E402


def properties() -> dict[str, tuple[Callable[..., None], list[st.SearchStrategy[Any]]]]:
    prod = make_clusterset("prod", ("east", "west"))
    chunks = st.one_of(fk.message(pb.OriginChunk), fk.coherent_chunk())
    datagrams = st.lists(fk.message(pb.SwimDatagram), min_size=1, max_size=4)

    def swim_tls(items: list[pb.SwimDatagram]) -> None:
        auth = SwimAuth(StateSeal(prod.signers["east"], prod.trust()), "east/0", lambda r: None)
        fk.check_swim(items, auth)

    return {
        "swim": (fk.check_swim, [datagrams]),
        "swim_tls": (swim_tls, [datagrams]),
        "chunks": (fk.check_chunks, [st.lists(chunks, min_size=1, max_size=4)]),
        "chunks_tls": (
            lambda items: fk.check_chunks(items, prod.trust()),
            [st.lists(chunks, min_size=1, max_size=4)],
        ),
        "exchange": (
            fk.check_exchange,
            [
                st.lists(fk.message(pb.PushPullRequest), max_size=4),
                st.lists(fk.message(pb.PushPullResponse), max_size=3),
                st.lists(fk.stream(), max_size=4),
            ],
        ),
        "codec": (
            fk.check_codec,
            [st.lists(fk.message(pb.Digest), max_size=6), st.lists(fk.message(pb.Service))],
        ),
    }


def run(name: str, check: Callable[..., None], strategies: list[Any], args: Any) -> int:
    """Batches of ``check`` until the time is up; returns the examples run."""
    deadline = time.monotonic() + args.seconds
    batch = 0
    while time.monotonic() < deadline:
        batch_seed = args.seed + batch

        @seed(batch_seed)
        @settings(
            max_examples=args.batch,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.tuples(*strategies))
        def prop(drawn: tuple[Any, ...]) -> None:
            check(*drawn)

        try:
            prop()
        except Exception:
            traceback.print_exc()
            print(f"FAILED {name}: --seed {batch_seed} --batch {args.batch}", file=sys.stderr)
            raise SystemExit(1) from None
        batch += 1
    return batch * args.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0, help="per property")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--only", help="one property: " + ", ".join(properties()))
    args = parser.parse_args()
    for name, (check, strategies) in properties().items():
        if args.only and name != args.only:
            continue
        started = time.monotonic()
        examples = run(name, check, strategies, args)
        took = time.monotonic() - started
        print(f"{name}: {examples} examples in {took:.0f} s, seeds {args.seed}.. : no failure")


if __name__ == "__main__":
    main()

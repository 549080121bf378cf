"""Per-peer rate limits on what the ring accepts: token buckets keyed by who is calling.

Every message from a peer is untrusted input, and one misbehaving (or compromised) member
should not be able to spend this agent's CPU on verifying signatures or decoding records at
will. These buckets bound the messages; ``mesh.ring.records.MAX_RECORDS_PER_MESSAGE`` bounds the
records (so the signatures) in each, and records a receiver already holds are not verified.
A member can still make others verify its *own* cluster's new records at that rate.

Each caller (its TLS cluster id, or its address without TLS) gets a bucket of
``burst`` tokens refilled at ``rate`` per second; a call that finds the bucket empty is
refused with RESOURCE_EXHAUSTED and counted. The defaults are far above what the protocol
itself sends (a push-pull every gossip interval, a catch-up a few dozen exchanges in a
row; a SWIM datagram or two per probe interval), so only a flood meets them.

The table is bounded (``max_keys``): the least recently refilled bucket goes first, and
a forgotten caller simply starts again with a full bucket. Pure: ``now`` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float


class TokenBuckets:
    def __init__(self, rate: Rate, max_keys: int = 4096) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self.refused = 0

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self._buckets.pop(key, (self.rate.burst, now))
        tokens = min(self.rate.burst, tokens + (now - last) * self.rate.per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.refused += 1
        if len(self._buckets) >= self.max_keys:
            self._buckets.pop(next(iter(self._buckets)))  # the least recently seen
        self._buckets[key] = (tokens, now)
        return allowed


# A push-pull per gossip interval (0.5 s) per peer, and catch-up continuations (at most
# MAX_ROUNDS in a row) on top: 40/s sustained with a burst of 200 leaves room for both.
PUSH_PULL_RATE = Rate(per_second=40.0, burst=200.0)
# SWIM: each member probes one member per probe interval, with indirect probes and
# gossip; with the fast profile a peer sends us a few datagrams a second. 200/s is a flood.
SWIM_RATE = Rate(per_second=200.0, burst=400.0)

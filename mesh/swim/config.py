"""Settings of the SWIM membership core and the formulas derived from them.

The defaults are hashicorp/memberlist's ``DefaultLANConfig`` (the values Consul and Serf run
with on a LAN), each with the reason it has that value. ``Config.fast()`` is the profile tuned
for meshd's DNS-failover budget; its docstring gives the arithmetic.

The formulas are memberlist's (``util.go``, ``suspicion.go``), with N the number of members
this agent counts as live (alive or suspect), itself included:

- suspicion timeout (the *minimum*, reached once ``suspicion_mult - 2`` independent members
  have confirmed the suspicion): ``suspicion_mult * max(1, log10 N) * probe_interval_s``;
  with no confirmations the timer starts at ``suspicion_max_timeout_mult`` times that, and
  shrinks toward the minimum as confirmations arrive (see ``mesh.swim.suspicion``);
- retransmit limit of a piggybacked update: ``retransmit_mult * ceil(log10(N + 1))``;
- push-pull period: ``push_pull_interval_s``, times ``ceil(log2 N - log2 32) + 1`` above 32
  members, so full-state exchanges do not grow as N squared.

Pure: no IO. ``Rng`` is the slice of ``random.Random`` the core uses, so a caller passes a
seeded ``random.Random`` and the core never touches the global random state.
"""

from __future__ import annotations

import math
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, TypeVar

from mesh.model import MAX_AGENTS, MAX_AGENTS_PER_CLUSTER, MAX_CLUSTERS

_T = TypeVar("_T")


class Rng(Protocol):
    """What the core needs from ``random.Random`` (pass a seeded instance)."""

    def random(self) -> float: ...

    def shuffle(self, x: MutableSequence[Any]) -> None: ...

    def sample(self, population: Sequence[_T], k: int) -> list[_T]: ...


@dataclass(frozen=True, slots=True)
class Config:
    # Failure checks every second: one probe per interval keeps the load per member constant
    # whatever N is, and a second is far above a LAN round trip.
    probe_interval_s: float = 1.0
    # Reasonable RTT for a LAN: the time to wait for a direct ack before asking others; it
    # should sit at the 99th percentile of the round-trip time.
    probe_timeout_s: float = 0.5
    # Ask 3 members for an indirect probe: one lossy link (ours or the target's) then does
    # not make a member suspect; more adds traffic for little gain.
    indirect_checks: int = 3
    # A relay that got no ack from the target within this long sends a nack to the asker, so
    # the asker can tell "the target is down" from "I am the one not hearing" (Lifeguard).
    # 0.8 x the probe timeout leaves the nack time to arrive before the asker's probe ends.
    nack_timeout_s: float = 0.4
    # Suspect a member for 4 * max(1, log10 N) probe intervals at least: long enough for the
    # suspect to hear of it and refute, scaled with the time gossip takes to spread.
    suspicion_mult: int = 4
    # With no independent confirmation the timer starts at 6x the minimum: an agent that is
    # alone in suspecting (maybe it is the one with the problem) waits long before accusing.
    suspicion_max_timeout_mult: int = 6
    # Retransmit each update 4 * ceil(log10(N + 1)) times: enough for an epidemic to reach
    # every member with high probability, bounded so the piggyback load stays constant.
    retransmit_mult: int = 4
    # Gossip pending updates every 200 ms to 3 random members: faster than waiting for the
    # next probe to carry them, which is what makes a change reach everyone in well under a
    # second. Nothing is sent when nothing is pending.
    gossip_interval_s: float = 0.2
    gossip_nodes: int = 3
    # Keep gossiping to a member for 30 s after declaring it dead, so a member that was
    # wrongly declared dead hears of it and refutes (same as the push-pull period).
    gossip_to_the_dead_s: float = 30.0
    # A full state exchange with one random member every 30 s repairs whatever gossip
    # missed; it is the expensive message, hence the low frequency.
    push_pull_interval_s: float = 30.0
    # Lifeguard local health: the probe interval and timeout back off up to 8x (8 s) while
    # this agent has evidence that it is the slow one.
    awareness_max_multiplier: int = 8
    # A timer handled this much later than it was due means our own event loop stalled:
    # asyncio fires timers within milliseconds, so a quarter second is our fault.
    lateness_tolerance_s: float = 0.25
    # Try the last address of one dead or left member every 30 s (least recently tried
    # first, with a full state exchange), so a healed partition or a member back at the same
    # address rejoins by itself (Serf's reconnect; memberlist alone never heals a split).
    reconnect_interval_s: float = 30.0
    # While this agent knows no live member besides itself, retry the seeds after this
    # long, so agents started in any order find each other; each retry push-pulls with
    # ``join_fanout`` random seeds, and the wait doubles up to ``join_retry_max_s``
    # (``mesh.swim.joining`` says why: retrying every seed every second melts a crowded host).
    join_retry_interval_s: float = 1.0
    join_fanout: int = 3
    # The longest wait between two lonely retries: the reconnect pace.
    join_retry_max_s: float = 30.0
    # Forget a dead or left member after a day (Serf's reconnect and tombstone timeouts).
    reap_after_s: float = 86400.0
    # At most 64 members of one cluster (replicas, and the dead ones kept for a day after a
    # rollout): at the cap, the member of that cluster down the longest is forgotten to make
    # room, and a 65th live one is refused. Without a cap, one cluster could fill every
    # table with made-up members (signed by its own key) and starve the probes of real ones.
    max_members_per_cluster: int = MAX_AGENTS_PER_CLUSTER
    # At most 512 clusters and 2,048 members in all (``mesh.model`` says why), so that
    # without TLS, where any peer can make up members of made-up clusters, no message can
    # grow the table (and every push-pull of it) without end (``mesh.swim.room``).
    max_clusters: int = MAX_CLUSTERS
    max_members: int = MAX_AGENTS
    # At most 64 indirect probes relayed for others at a time (each lives for
    # ``nack_timeout_s``): a few members probing through us need a handful; more is a flood
    # of ping requests, whose targets we would otherwise ping at the sender's word.
    max_relays: int = 64
    # At most 20 updates ride on one message: about what memberlist fits in a 1400-byte
    # packet; more would grow every probe during a burst of changes.
    max_piggyback: int = 20

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value <= 0:
                raise ValueError(f"swim setting {f.name} must be positive, not {value!r}")
        if self.probe_timeout_s >= self.probe_interval_s:
            raise ValueError("swim setting probe_timeout_s must be below probe_interval_s")
        if self.nack_timeout_s >= self.probe_interval_s - self.probe_timeout_s:
            raise ValueError(
                "swim setting nack_timeout_s must be below probe_interval_s - probe_timeout_s"
            )

    @classmethod
    def lan(cls) -> Config:
        """memberlist's LAN defaults (the class defaults)."""
        return cls()

    @classmethod
    def fast(cls) -> Config:
        """A profile for meshd's DNS-failover budget: failures noticed in about half the time.

        - probe every 0.5 s with a 0.25 s timeout: still 2-5x a cross-region round trip
          (us-eu is 80-150 ms), so agents in one clusterset across regions are fine; across
          continents with worse tails use ``lan()``;
        - suspicion multiplier 5 instead of 4: the minimum suspicion timeout is then
          5 * max(1, log10 N) * 0.5 s = 2.5 s at N <= 10, 3.7 s at 30, 5.8 s at 200. A member
          stalled for 2 s must refute before the first suspecter times out; that suspecter
          starts its timer about one probe interval after the stall starts, so it needs
          timeout > stall + refutation spread - 0.5 s. With multiplier 4 the minimum at
          N <= 10 is 2.0 s: in the simulator (tests/sim) it survives 2.5 s stalls but not 3 s
          ones at 3 and 10 members; with 5 it survives 3 s and fails at 3.5 s. The price is
          0.5 s more to declare a killed member dead at N <= 10 (0.7 s at 30);
        - gossip every 100 ms (memberlist's local profile): twice as fast to spread, and costs
          nothing at steady state because nothing is pending;
        - retransmit multiplier 6 instead of 4: a member that no informed member happens to
          pick waits for a push-pull (seconds); the chance of that is about
          exp(-limit) per member and update, 3e-4 with limit 8 (mult 4, 10-99 members), 6e-6
          with limit 12. Updates are rare in meshd's ring (agents come and go), so 1.5x the
          messages per update buys the tail; steady-state traffic is unchanged;
        - push-pull every 15 s and reconnect every 10 s: a healed partition rejoins sooner; at
          200 members push-pull is scaled to 60 s, a few KB per minute;
        - lateness tolerance 125 ms, a quarter of the probe interval.
        The DNS path should still not wait for *dead*: see ``cluster_liveness``.
        """
        return replace(
            cls(),
            probe_interval_s=0.5,
            probe_timeout_s=0.25,
            nack_timeout_s=0.2,
            suspicion_mult=5,
            retransmit_mult=6,
            gossip_interval_s=0.1,
            push_pull_interval_s=15.0,
            reconnect_interval_s=10.0,
            lateness_tolerance_s=0.125,
        )


def suspicion_timeout_s(suspicion_mult: int, n: int, probe_interval_s: float) -> float:
    """The minimum suspicion timeout for N live members (memberlist's ``suspicionTimeout``)."""
    node_scale = max(1.0, math.log10(max(1, n)))
    return suspicion_mult * node_scale * probe_interval_s


def suspicion_confirmations(suspicion_mult: int, n: int) -> int:
    """k: independent confirmations that drive the timer to its minimum.

    ``suspicion_mult - 2``, so the nominal timeout is reached two probe intervals short of
    what the multiplier gives; 0 when there are not enough other members to confirm (N minus
    ourselves and the suspect)."""
    k = suspicion_mult - 2
    return 0 if n - 2 < k else k


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many messages carry one update before it is dropped from the queue."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


def push_pull_period_s(push_pull_interval_s: float, n: int) -> float:
    """The push-pull period scaled above 32 members (memberlist's ``pushPullScale``)."""
    if n <= 32:
        return push_pull_interval_s
    return push_pull_interval_s * (math.ceil(math.log2(n) - math.log2(32)) + 1)

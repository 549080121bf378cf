"""The peer table of the first ring: who to exchange state with, and who is reachable.

Rules:

- seed addresses (``--join``) are always kept, so an agent that starts before its peers
  keeps trying them, and one that disappears and returns is found again;
- members learned from peers' lists are kept while someone still reports them; one that
  nobody has reported and that we could not reach for ``forget_after_s`` is dropped;
- a peer that fails is retried with a capped exponential backoff, so a dead address costs
  little but a returning agent is found within ``max_backoff_s``;
- each peer is contacted every ``round_s()``: the interval, or longer on a ring too large
  for that (at most ``max_exchanges_per_s`` exchanges a second in all). Only seeds and
  peers that have answered count toward that size, and ``due`` hands out at most a round's
  worth of the rate at a time, those that answered before first: addresses that never
  answered (made up, or gone) cannot slow the contact with real peers;
- the table is bounded (``PeerLimits``: per cluster, clusters, peers; ``mesh.model`` says
  why). A new peer beyond a bound takes the place of one that failed and is unreachable
  (the one silent longest; seeds stay), or is refused, and ``learned`` says why;
- a cluster is *healthy* when one of its members answered this agent directly (or called
  it: either direction is evidence) within ``timeout_s()`` (``peer_timeout_s``, or two and
  a half rounds on a large ring), or nothing this agent tried since has failed or stayed
  unanswered for half that long (its own stall, with no attempt made, is no evidence); a
  cluster none of whose members we have tried yet is assumed healthy (we have no evidence
  against it); this cluster is always healthy. An attempt unanswered for half the timeout
  counts as failed for health (``attempted``) without waiting for the call's own deadline:
  a link cut silently fails no call before that deadline, and detection is then bounded
  by the timeout alone, not by timeout plus deadline.

Pure: every method takes ``now`` (monotonic seconds) from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.model import MAX_AGENTS, MAX_AGENTS_PER_CLUSTER, MAX_CLUSTERS, ClusterId

# The defaults of --gossip-interval, --peer-timeout and --max-exchange-rate (issue 17: a dead
# cluster out of the answers within 1.5 s at p99). Evidence that a peer is up arrives in
# both directions every 0.25 s (our exchange's reply, its exchange's request), so a live
# peer is silent for 1 s only when both TCP connections are stuck at once: at 5% loss one
# needs the same segment lost three times in a row (0.24 + 0.48 + 0.96 s of Linux's
# retransmission timer), about 1e-4 per segment, and two at once is rarer still. The price is
# twice the idle exchanges of the former 0.5 s rounds; 40 exchanges a second is still a full
# mesh of 10 peers, and past that the timeout grows with the rounds (``timeout_s``).
DEFAULT_INTERVAL_S = 0.25
DEFAULT_PEER_TIMEOUT_S = 1.0
DEFAULT_MAX_EXCHANGES_PER_S = 40.0


@dataclass(slots=True)
class Peer:
    address: str
    cluster_id: ClusterId = ""
    replica: str = ""
    seed: bool = False
    last_ok: float | None = None
    last_reported: float = 0.0
    failures: int = 0
    next_attempt: float = 0.0
    # When the oldest attempt still unanswered began (None: none outstanding).
    pending_since: float | None = None


@dataclass(frozen=True, slots=True)
class PeerTimings:
    interval_s: float = DEFAULT_INTERVAL_S
    peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S
    max_backoff_s: float = 4.0
    forget_after_s: float = 300.0
    # Exchanges this agent starts per second, at most. A full mesh every interval costs
    # 2 x N exchanges a second per agent, which no agent affords at a few hundred members;
    # past interval_s x max_exchanges_per_s peers each one is contacted less often, so the
    # cost stays flat as the ring grows, and the silence that counts as unreachable grows
    # with the round (see ``round_s`` and ``timeout_s``). A change still reaches every
    # peer at once: the ring pushes it to every peer that may be up (``push_targets``).
    max_exchanges_per_s: float = DEFAULT_MAX_EXCHANGES_PER_S


@dataclass(frozen=True, slots=True)
class PeerLimits:
    """How many peers the table holds (the reasons are ``mesh.model``'s)."""

    per_cluster: int = MAX_AGENTS_PER_CLUSTER
    clusters: int = MAX_CLUSTERS
    peers: int = MAX_AGENTS


class PeerTable:
    def __init__(
        self,
        local_cluster: ClusterId,
        self_address: str,
        seeds: list[str],
        timings: PeerTimings = PeerTimings(),
        limits: PeerLimits = PeerLimits(),
    ) -> None:
        self.local_cluster = local_cluster
        self.self_address = self_address
        self.timings = timings
        self.limits = limits
        self.peers: dict[str, Peer] = {}
        self.refused: dict[str, int] = {}  # reason -> new peers refused
        self._of: dict[ClusterId, set[str]] = {}  # cluster -> addresses of its peers
        self._counted = 0  # seeds and peers that have answered: the ring's size for round_s
        # Moves whenever what ``reachable``, ``healthy``, ``in_contact`` and ``members`` say
        # may have changed other than by time passing (which ``next_change`` covers): a
        # caller that saw the same revision and is before ``next_change`` may skip a look.
        self.revision = 0
        # At this time a search found no peer (or no cluster) to drop: none until it moves.
        self._none_to_drop_at: tuple[float | None, float | None] = (None, None)
        for address in seeds:
            self.add_seed(address)

    def add_seed(self, address: str) -> None:
        if address != self.self_address:
            peer = self.peers.setdefault(address, Peer(address))
            self._count(peer, seed=True)
            self.revision += 1

    def round_s(self) -> float:
        """Seconds between two exchanges with one peer: the interval, stretched on a ring
        too large to contact every peer (every seed and peer that answered) that often."""
        return max(self.timings.interval_s, self._counted / self.timings.max_exchanges_per_s)

    def timeout_s(self) -> float:
        """Silence after which a peer is unreachable: ``peer_timeout_s``, or two and a half
        rounds on a ring large enough that rounds are longer than the interval."""
        return max(self.timings.peer_timeout_s, 2.5 * self.round_s())

    def due(self, now: float) -> list[str]:
        """Addresses to contact in this round: at most a round's worth of the exchange rate,
        peers that have answered before (and seeds) first, then the longest waiting."""
        ready = [p for p in self.peers.values() if p.next_attempt <= now]
        budget = max(1, math.ceil(self.timings.max_exchanges_per_s * self.timings.interval_s))
        if len(ready) > budget:
            ready.sort(key=lambda p: (p.last_ok is None and not p.seed, p.next_attempt))
            del ready[budget:]
        return [p.address for p in ready]

    def succeeded(self, address: str, cluster_id: ClusterId, now: float, replica: str = "") -> None:
        peer = self.peers.get(address)
        if peer is None:
            if self._refusal(cluster_id, now):
                return
            peer = self.peers[address] = Peer(address)
        # An answer from a peer that was fresh already (answered within the timeout and
        # two rounds, nothing failed since) changes no view: the common case, left unbumped.
        fresh = (
            peer.last_ok is not None
            and now - peer.last_ok <= min(self.timeout_s(), 2 * self.round_s())
            and peer.failures == 0
            and peer.cluster_id == cluster_id
            and (not replica or peer.replica == replica)
        )
        if not fresh:
            self.revision += 1
        self._assign(peer, cluster_id)
        peer.replica = replica or peer.replica
        self._count(peer, answered=True)
        peer.last_ok = now
        peer.last_reported = now
        peer.failures = 0
        peer.pending_since = None
        peer.next_attempt = now + self.round_s()

    def attempted(self, address: str, now: float) -> None:
        """An exchange with ``address`` starts now: if it stays unanswered for half the
        timeout, it counts as a failure for health (``reachable``)."""
        peer = self.peers.get(address)
        if peer is not None and peer.pending_since is None:
            peer.pending_since = now
            if peer.last_ok is None or now - peer.last_ok > self.timeout_s():
                # Past its timeout, only "nothing tried is overdue" keeps it reachable: this
                # attempt's deadline is a new moment for ``next_change``.
                self.revision += 1

    def failed(self, address: str, now: float) -> None:
        peer = self.peers.get(address)
        if peer is None:
            return
        self.revision += 1
        peer.failures += 1
        peer.pending_since = None
        backoff = min(self.timings.interval_s * 2**peer.failures, self.timings.max_backoff_s)
        peer.next_attempt = now + backoff
        self._none_to_drop_at = (None, None)  # it may make room now
        silent = now - max(peer.last_ok or 0.0, peer.last_reported)
        if not peer.seed and silent > self.timings.forget_after_s:
            self.forget(address)

    def forget(self, address: str) -> None:
        peer = self.peers.pop(address, None)
        if peer is None:
            return
        self.revision += 1
        self._none_to_drop_at = (None, None)
        self._counted -= int(peer.seed or peer.last_ok is not None)
        mine = self._of.get(peer.cluster_id)
        if mine is not None:
            mine.discard(address)
            if not mine:
                del self._of[peer.cluster_id]

    def learned(self, cluster_id: ClusterId, address: str, now: float, replica: str = "") -> str:
        """A peer told us about a member; remember it (not ourselves). Returns why it was
        refused (``cluster_full``, ``table_full``), or "" when it is held."""
        if address == self.self_address or not address:
            return ""
        peer = self.peers.get(address)
        if peer is None:
            refused = self._refusal(cluster_id, now)
            if refused:
                return refused
            peer = self.peers[address] = Peer(address, next_attempt=now)
            self.revision += 1
        if not peer.cluster_id and cluster_id:
            self._assign(peer, cluster_id)
            self.revision += 1
        if not peer.replica and replica:
            peer.replica = replica
            self.revision += 1
        peer.last_reported = now
        return ""

    # --- bounds --------------------------------------------------------------------------

    def _count(self, peer: Peer, seed: bool = False, answered: bool = False) -> None:
        """Count ``peer`` toward the ring's size once it is a seed or has answered."""
        was = peer.seed or peer.last_ok is not None
        peer.seed = peer.seed or seed
        self._counted += int(not was and (seed or answered))

    def _assign(self, peer: Peer, cluster_id: ClusterId) -> None:
        if peer.cluster_id == cluster_id:
            return
        mine = self._of.get(peer.cluster_id)
        if mine is not None:
            mine.discard(peer.address)
            if not mine:
                del self._of[peer.cluster_id]
        peer.cluster_id = cluster_id
        if cluster_id:
            self._of.setdefault(cluster_id, set()).add(peer.address)

    def _refusal(self, cluster_id: ClusterId, now: float) -> str:
        """Why a new peer of ``cluster_id`` finds no room, after dropping peers that failed
        if a bound is reached; "" when it fits. Refusals are counted in ``refused``."""
        mine = self._of.get(cluster_id)
        reason = ""
        if mine is not None and len(mine) >= self.limits.per_cluster:
            reason = "" if self._drop_one(mine, now) else "cluster_full"
        elif mine is None and len(self._of) >= self.limits.clusters:
            reason = "" if self._drop_cluster(now) else "table_full"
        if not reason and len(self.peers) >= self.limits.peers:
            reason = "" if self._drop_one(self.peers, now) else "table_full"
        if reason:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        return reason

    def _droppable(self, peer: Peer, now: float) -> bool:
        return not peer.seed and peer.failures > 0 and not self.reachable(peer.address, now)

    def _drop_one(self, addresses: Iterable[str], now: float) -> bool:
        """Forget the peer among ``addresses`` that failed and has been silent longest."""
        if self._none_to_drop_at[0] == now:
            return False  # the table was searched at this very time: nothing changed since
        peers = [self.peers[a] for a in addresses]
        down = [p for p in peers if self._droppable(p, now)]
        if not down:
            if len(peers) == len(self.peers):
                self._none_to_drop_at = (now, self._none_to_drop_at[1])
            return False
        stalest = min(down, key=lambda p: (max(p.last_ok or 0.0, p.last_reported), p.address))
        self.forget(stalest.address)
        return True

    def _drop_cluster(self, now: float) -> bool:
        """Forget a cluster none of whose peers is held for good reason (all failed)."""
        if self._none_to_drop_at[1] == now:
            return False
        for addresses in self._of.values():
            if all(self._droppable(self.peers[a], now) for a in addresses):
                for address in list(addresses):
                    self.forget(address)
                return True
        self._none_to_drop_at = (self._none_to_drop_at[0], now)
        return False

    def reachable(self, address: str, now: float) -> bool:
        """It answered within ``timeout_s()``, or nothing we tried since has failed or been
        left unanswered for half that: silence alone is no evidence when it is ours (a
        stalled event loop that made no attempt, say while it re-encodes a large catch-up),
        so only an attempt counts."""
        peer = self.peers.get(address)
        if peer is None or peer.last_ok is None:
            return False
        timeout = self.timeout_s()
        if now - peer.last_ok <= timeout:
            return True
        overdue = peer.pending_since is not None and now - peer.pending_since > timeout / 2
        return peer.failures == 0 and not overdue

    def push_targets(self, now: float) -> list[str]:
        """Where a change of this agent's own state is pushed at once, past the round's
        rate: every reachable peer, and every one not yet tried (a seed, or a member a peer
        listed) that has not failed us. A change made soon after start thus reaches the
        members this agent has not yet exchanged with, not only through rounds that on a
        large ring come one peer at a time; one that failed waits for its backoff, so a
        dead or made-up address costs one failed call, not one per change."""
        return sorted(
            p.address
            for p in self.peers.values()
            if self.reachable(p.address, now) or (p.last_ok is None and p.failures == 0)
        )

    def next_change(self, now: float) -> float | None:
        """The earliest time from ``now`` on at which ``reachable``, ``healthy`` or
        ``in_contact`` can change with no new event (an answer, a failure, an attempt):
        when a peer's last answer grows older than the timeout or than two rounds, or its
        attempt becomes overdue. None when nothing is waiting to time out. A caller that
        looks again just after it sees a silent peer's change at once, not a poll later."""
        timeout, window = self.timeout_s(), 2 * self.round_s()
        soonest: float | None = None
        for peer in self.peers.values():
            for at in (
                None if peer.last_ok is None else peer.last_ok + timeout,
                None if peer.last_ok is None else peer.last_ok + window,
                None if peer.pending_since is None else peer.pending_since + timeout / 2,
            ):
                # A moment exactly now counts: the views read it as still before (``<=``).
                if at is not None and at >= now and (soonest is None or at < soonest):
                    soonest = at
        return soonest

    def in_contact(self, now: float) -> set[ClusterId]:
        """Clusters one of whose members answered this agent within the last two rounds:
        direct, fresh evidence that they are up, whatever gossip says about them."""
        window = 2 * self.round_s()
        return {
            p.cluster_id
            for p in self.peers.values()
            if p.cluster_id and p.last_ok is not None and now - p.last_ok <= window
        }

    def members(self, now: float) -> list[tuple[ClusterId, str, str]]:
        """(cluster, address, replica) of every member we can reach, for our peers' lists."""
        return sorted(
            (p.cluster_id, p.address, p.replica)
            for p in self.peers.values()
            if p.cluster_id and self.reachable(p.address, now)
        )

    def replica_reachable(self, cluster_id: ClusterId, replica: str, now: float) -> bool:
        """True when a member that is this replica of this cluster answered us recently."""
        return any(
            self.peers[a].replica == replica and self.reachable(a, now)
            for a in self._of.get(cluster_id, ())
        )

    def healthy(self, clusters: list[ClusterId], now: float) -> set[ClusterId]:
        """The clusters among ``clusters`` that this agent should answer with."""
        known: dict[ClusterId, bool] = {}
        for p in self.peers.values():
            # A member we have not tried yet is no evidence either way.
            if p.cluster_id and (p.last_ok is not None or p.failures):
                known[p.cluster_id] = known.get(p.cluster_id, False) or self.reachable(
                    p.address, now
                )
        return {c for c in clusters if c == self.local_cluster or known.get(c, True)}

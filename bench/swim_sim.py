"""Benchmark of SWIM membership in the deterministic simulator (tests/sim/network.py).

No sockets and no real time: N ``mesh.swim.membership.Membership`` cores exchange messages over a
simulated network with 5-25 ms of one-way delay per message (uniform), which stands for
agents in different clusters of one region. What it measures, per profile (``Config()``,
memberlist's LAN defaults, and ``Config.fast()``) and size:

- (a) a membership update reaching every member: a new agent joins through one random
  member; time until every other member reports it (``MemberJoined``);
- (b) a killed agent: time until every live member reports it *suspect* (what DNS could
  act on with ``cluster_liveness(..., suspect_is_down=True)``) and *dead*;
- (c) false deaths: ``MemberDied`` events about live members during 10 simulated minutes
  with 5% loss on every link (the ring is built without loss first);
- (d) steady state, no loss, no churn: messages and estimated bytes sent per member per
  second (protobuf size estimate + 5-byte gRPC frame prefix; no HTTP/2 or TLS overhead);
- (e) a cut link: every link to and from one member drops everything (the netns bench's
  cut); time until every other member reports it suspect and dead; then the links heal,
  and the time until every member (the cut one included) holds every member alive again.

``--replicas R`` puts R members in each cluster (``c<i // R>``): the tables hold at most 512
clusters (``mesh.model``), so a ring of 1,000 members needs at least two per cluster.

Usage: ``python bench/swim_sim.py [--sizes 10 50 200] [--seeds 10] [--loss-seeds 3]
[--replicas 1]``; prints a Markdown table with the machine, the date and the command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import cpu_model  # bench/common.py (run from the repo root)

from mesh.swim.config import Config
from mesh.swim.membership import Membership
from mesh.swim.messages import (
    MemberDied,
    MemberJoined,
    MemberState,
    MemberSuspected,
)
from tests.sim.network import Link, SimNetwork, address_of, build_ring

LINK = Link(delay_s=0.005, jitter_s=0.02)
PROFILES = {"lan": Config(), "fast": Config.fast()}


@dataclass
class Samples:
    spread: list[float] = field(default_factory=list)
    suspect: list[float] = field(default_factory=list)
    dead: list[float] = field(default_factory=list)
    false_deaths: list[int] = field(default_factory=list)
    cut_suspect: list[float] = field(default_factory=list)
    cut_dead: list[float] = field(default_factory=list)
    healed: list[float] = field(default_factory=list)
    messages: list[float] = field(default_factory=list)
    bytes: list[float] = field(default_factory=list)


def last_report(net: SimNetwork, kinds: tuple[type, ...], member_id: str, since: float) -> float:
    """When the last running member first reported one of ``kinds`` about ``member_id``."""
    first: dict[str, float] = {}
    for t, observer, event in net.log:
        if t >= since and isinstance(event, kinds) and event.member.id == member_id:
            first.setdefault(observer, t)
    observers = {n.membership.me.id for n in net.nodes.values()} - {member_id}
    missing = observers - set(first)
    if missing:
        raise AssertionError(f"seed {net.seed}: {len(missing)} members never reported it")
    return max(first[o] for o in observers) - since


def steady_state(net: SimNetwork, n: int, seconds: float, out: Samples) -> None:
    before = {a: (node.sent_messages, node.sent_bytes) for a, node in net.nodes.items()}
    net.run_until(net.now + seconds)
    messages = sum(node.sent_messages - before[a][0] for a, node in net.nodes.items())
    sent = sum(node.sent_bytes - before[a][1] for a, node in net.nodes.items())
    out.messages.append(messages / n / seconds)
    out.bytes.append(sent / n / seconds)


def churn_run(
    n: int, config: Config, seed: int, out: Samples, joins: int, kills: int, replicas: int
) -> None:
    net = SimNetwork(seed, LINK, measure_bytes=True)
    pick = random.Random(seed)
    addresses = build_ring(net, n, config, clusters=clusters_of(n, replicas), settle_s=300.0)
    net.run_until(net.now + 10.0)
    steady_state(net, n, 60.0, out)
    for j in range(joins):
        started = net.now
        new_id = f"new{j}/agent-0"
        net.add(new_id, address_of(n + j), config, seeds=[pick.choice(list(net.nodes))])
        everyone = lambda new_id=new_id: all(new_id in m.members for m in net.memberships())  # noqa: E731
        net.run_until(started + 30.0, everyone, check_every_s=0.05)
        out.spread.append(last_report(net, (MemberJoined,), new_id, started))
        net.run_until(net.now + 5.0)
    victims = pick.sample(addresses[1:], kills + 1)
    cut_run(net, victims.pop(), out)
    for victim in victims:
        victim_id = net.nodes[victim].membership.me.id
        killed_at = net.now
        net.kill(victim)
        dead = lambda victim_id=victim_id: all(  # noqa: E731
            m.members[victim_id].state == MemberState.DEAD for m in net.memberships()
        )
        net.run_until(killed_at + 120.0, dead, check_every_s=0.05)
        down = (MemberSuspected, MemberDied)
        out.suspect.append(last_report(net, down, victim_id, killed_at))
        out.dead.append(last_report(net, (MemberDied,), victim_id, killed_at))
        net.run_until(net.now + 5.0)


def cut_run(net: SimNetwork, victim: str, out: Samples) -> None:
    """(e): every link of ``victim`` cut until the others hold it dead, then healed."""
    victim_id = net.nodes[victim].membership.me.id
    others = [a for a in net.nodes if a != victim]
    cut_at = net.now
    net.block([victim], others)
    net.block(others, [victim])
    dead = lambda: all(  # noqa: E731
        net.nodes[a].membership.members[victim_id].state == MemberState.DEAD for a in others
    )
    if not net.run_until(cut_at + 120.0, dead, check_every_s=0.05):
        raise AssertionError(f"seed {net.seed}: the cut member was not declared dead")
    views = [n.membership for n in net.nodes.values() if n.address != victim]
    out.cut_suspect.append(last_report_of(net, views, victim_id, cut_at, suspect=True))
    out.cut_dead.append(last_report_of(net, views, victim_id, cut_at, suspect=False))
    healed_at = net.now
    net.heal()
    ids = [n.membership.me.id for n in net.nodes.values()]
    everyone = lambda: net.views_agree(dict.fromkeys(ids, MemberState.ALIVE))  # noqa: E731
    if not net.run_until(healed_at + 300.0, everyone, check_every_s=0.05):
        raise AssertionError(f"seed {net.seed}: the ring did not heal within 300 s")
    out.healed.append(net.now - healed_at)
    net.run_until(net.now + 5.0)


def last_report_of(
    net: SimNetwork, views: list[Membership], member_id: str, since: float, *, suspect: bool
) -> float:
    """When the last of ``views`` first reported ``member_id`` suspect (or dead, with
    ``suspect`` False; a member that went straight to dead counts as suspect then too)."""
    kinds: tuple[type, ...] = (MemberSuspected, MemberDied) if suspect else (MemberDied,)
    observers = {m.me.id for m in views}
    first: dict[str, float] = {}
    for t, observer, event in net.log:
        if t >= since and isinstance(event, kinds) and event.member.id == member_id:
            first.setdefault(observer, t)
    missing = observers - set(first)
    if missing:
        raise AssertionError(f"seed {net.seed}: {len(missing)} members never reported it")
    return max(first[o] for o in observers) - since


def clusters_of(n: int, replicas: int) -> int:
    """Clusters of a ring of n with ``replicas`` members each (0: one cluster per member)."""
    return 0 if replicas <= 1 else -(-n // replicas)


def loss_run(
    n: int, config: Config, seed: int, minutes: float, out: Samples, replicas: int
) -> None:
    net = SimNetwork(seed, LINK)
    build_ring(net, n, config, clusters=clusters_of(n, replicas), settle_s=300.0)
    net.default_link = Link(loss=0.05, delay_s=LINK.delay_s, jitter_s=LINK.jitter_s)
    start = net.now
    net.run_until(start + minutes * 60.0)
    out.false_deaths.append(
        sum(1 for t, _o, e in net.log if t >= start and isinstance(e, MemberDied))
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def cell(values: list[float], unit: str = "s", digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{pct(values, 50):.{digits}f} / {pct(values, 99):.{digits}f}{unit}"


def median(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES)
    parser.add_argument("--seeds", type=int, default=10, help="churn runs per size")
    parser.add_argument("--loss-seeds", type=int, default=3, help="10-minute 5%% loss runs")
    parser.add_argument("--loss-minutes", type=float, default=10.0)
    parser.add_argument("--joins", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1, help="members per cluster")
    args = parser.parse_args()

    started = time.perf_counter()
    rows = []
    for profile in args.profiles:
        config = PROFILES[profile]
        for n in args.sizes:
            out = Samples()
            for seed in range(args.seeds):
                print(f"  {profile} n={n} churn seed {seed}", file=sys.stderr, flush=True)
                churn_run(n, config, seed, out, args.joins, args.kills, args.replicas)
            for seed in range(args.loss_seeds):
                print(f"  {profile} n={n} loss seed {1000 + seed}", file=sys.stderr, flush=True)
                loss_run(n, config, 1000 + seed, args.loss_minutes, out, args.replicas)
            rows.append((profile, n, args.seeds, out))
            print(
                f"  done {profile} n={n} ({time.perf_counter() - started:.0f} s)", file=sys.stderr
            )

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, ", end="")
    print(f"Python {platform.python_version()}; date: {datetime.date.today()}")
    print(f"command: `.venv/bin/python {' '.join(['bench/swim_sim.py', *sys.argv[1:]])}`")
    print(
        f"seeds: churn 0-{args.seeds - 1} ({args.joins} joins and {args.kills} kills each), "
        f"loss {1000}-{1000 + args.loss_seeds - 1} ({args.loss_minutes:g} min each); "
        f"links 5-25 ms one-way; {args.replicas} member(s) per cluster; "
        f"wall time {time.perf_counter() - started:.0f} s\n"
    )
    print(
        "| profile | members | (a) update to all, p50 / p99 | (b) killed: all suspect, "
        "p50 / p99 | (b) killed: all dead, p50 / p99 | (c) false deaths in "
        f"{args.loss_minutes:g} min at 5% loss, p50 / p99 (runs) | (d) msgs / member / s "
        "| (d) bytes / member / s | (e) cut: all suspect, p50 / p99 | (e) cut: all dead, "
        "p50 / p99 | (e) healed: all alive, p50 / p99 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for profile, n, _seeds, out in rows:
        deaths = [float(d) for d in out.false_deaths]
        print(
            f"| {profile} | {n} | {cell(out.spread)} | {cell(out.suspect)} | {cell(out.dead)} "
            f"| {cell(deaths, '', 0)} ({len(deaths)}) | {median(out.messages, 1)} "
            f"| {median(out.bytes, 0)} | {cell(out.cut_suspect)} "
            f"| {cell(out.cut_dead)} | {cell(out.healed)} |"
        )


if __name__ == "__main__":
    main()

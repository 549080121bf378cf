"""Failover of a dead cluster, measured on real ``meshd run`` processes in network namespaces.

The lab of ``tests/netns`` (east and west in region us, south in eu, each agent in its own
namespace, linked by the userspace link emulator: this kernel has no netem). Every time is
taken from outside the agents, by DNS queries for ``db.shop.svc.clusterset.local`` (headless,
exported by all three) sent from inside each namespace every ``--poll-ms`` (20 ms):

- kill: ``kill -9`` south's agent; the time until neither east's nor west's answer holds
  south's endpoint. Then south is restarted, and the time from the restart (a new
  process: Python start-up included) until every agent answers with all three is recorded;
- cut: every link to and from south drops everything (a black hole); the time until both
  others' answers lose south. Then the links heal, and the time until every agent answers
  with all three again is recorded;
- false drops: ``--loss`` (5%) and ``--delay-ms`` (20 ms) on every directed link for
  ``--loss-minutes``; all three agents polled every ``--loss-poll-ms`` (100 ms); a poll is
  a false drop when an agent's answer misses any cluster (all are alive and reachable);
  an episode is a run of consecutive false-drop polls of one agent. A query unanswered
  within 1 s is counted apart (DNS is local to each namespace: no link loss on its way).

Each trial starts from the steady state (every agent answering all three, every SWIM view
holding every agent alive) at a random phase (0-1 s after that is seen) so that it does
not lock onto the gossip rounds. p99 is nearest-rank: with 20 trials it is the maximum.

Usage: ``.venv/bin/python bench/failover_bench.py [--trials 20] [--loss-minutes 10]
[--gossip-interval S --peer-timeout S] [--append bench/RESULTS.md]``. Without timing
flags the agents run with their defaults. Needs root (namespaces). Prints a Markdown
section; ``--append`` adds it to the end of the file (re-read right before appending).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.netns.harness import Lab, RingSettings, wait_until  # noqa: E402
from tests.netns.shop import ALL_DB, DB, DB_OF  # noqa: E402

SOUTH = DB_OF["south"]
OTHERS = ("east", "west")
CODE = ("mesh", "dnsserver", "proto")
TRIAL_TIMEOUT_S = 30.0
# A DNS query inside a namespace is answered in milliseconds; one unanswered in 100 ms (an
# agent still starting) is a "not yet" and asked again, so a poll never blurs the timing.
QUERY_TIMEOUT_S = 0.1


@dataclass
class Series:
    """Seconds measured per trial; ``None`` for a trial that timed out."""

    name: str
    values: list[float | None] = field(default_factory=list)

    def row(self) -> str:
        done = sorted(v for v in self.values if v is not None)
        timeouts = len(self.values) - len(done)

        def rank(p: float) -> str:
            k = max(0, math.ceil(p * len(self.values)) - 1)  # timeouts rank last
            return f"{done[k]:.2f}" if k < len(done) else f"> {TRIAL_TIMEOUT_S:.0f}"

        best = f"{done[0]:.2f}" if done else "-"
        return (
            f"| {self.name} | {len(self.values)} | {rank(0.5)} | {rank(0.99)} | {best} "
            f"| {timeouts} |"
        )


def time_until(lab: Lab, holds: Callable[[], bool], since: float, poll_s: float) -> float | None:
    """Seconds from ``since`` to the first poll where ``holds()``; None after the timeout."""
    tick = time.monotonic()
    while time.monotonic() - since < TRIAL_TIMEOUT_S:
        if holds():
            return time.monotonic() - since
        tick += poll_s
        time.sleep(max(0.0, tick - time.monotonic()))
    return None


def south_out(lab: Lab) -> bool:
    answers = [lab.answer(c, DB, timeout_s=QUERY_TIMEOUT_S) for c in OTHERS]
    return all(a is not None and SOUTH not in a.addresses for a in answers)


def all_in(lab: Lab) -> bool:
    answers = [lab.answer(c, DB, timeout_s=QUERY_TIMEOUT_S) for c in lab.agents]
    return all(a is not None and a.addresses == ALL_DB for a in answers)


def swim_all_alive(lab: Lab) -> bool:
    """Every agent's SWIM view holds every agent alive: no suspicion or death left over
    from the previous trial (a restarted agent refutes its death a moment after it answers
    DNS). Until then only the ring's fresh contact keeps a cluster SWIM holds dead in the
    answers (``mesh.routing.rebuild.answerable``), and a cut then drops it in two rounds,
    faster than from a steady state: a trial must start from the steady state."""
    for cluster in lab.agents:
        try:
            view = lab.state(cluster)["swim"]
        except (OSError, TypeError, KeyError, ValueError):  # still starting: not yet
            return False
        if len(view) != len(lab.agents) or any(m["state"] != "alive" for m in view):
            return False
    return True


def baseline(lab: Lab, rng: random.Random) -> None:
    wait_until("every agent answering all three clusters", lambda: all_in(lab), 60, 0.1)
    wait_until("every SWIM view holding every agent alive", lambda: swim_all_alive(lab), 60, 0.1)
    time.sleep(rng.uniform(0.0, 1.0))  # a random phase against the gossip rounds


def kill_trial(lab: Lab, rng: random.Random, poll_s: float, out: Series, back: Series) -> None:
    baseline(lab, rng)
    t0 = time.monotonic()
    lab.agents["south"].kill()
    out.values.append(time_until(lab, lambda: south_out(lab), t0, poll_s))
    t1 = time.monotonic()
    lab.start("south")
    back.values.append(time_until(lab, lambda: all_in(lab), t1, poll_s))
    lab.wait_ready("south", 60)


def cut_trial(lab: Lab, rng: random.Random, poll_s: float, out: Series, back: Series) -> None:
    baseline(lab, rng)
    t0 = time.monotonic()
    lab.isolate("south")
    out.values.append(time_until(lab, lambda: south_out(lab), t0, poll_s))
    t1 = time.monotonic()
    lab.heal()
    back.values.append(time_until(lab, lambda: all_in(lab), t1, poll_s))


@dataclass
class LossRun:
    seconds: float = 0.0
    polls: int = 0
    false_drops: int = 0
    unanswered: int = 0
    episodes: int = 0
    lost_packets: int = 0
    sent_packets: int = 0
    examples: list[str] = field(default_factory=list)


def loss_run(lab: Lab, args: argparse.Namespace) -> LossRun:
    baseline(lab, random.Random(0))
    result = LossRun()
    before = lab.emulator.counts()
    lab.degrade(loss=args.loss, delay_s=args.delay_ms / 1000)
    dropping = dict.fromkeys(lab.agents, False)
    start = tick = time.monotonic()
    try:
        while time.monotonic() - start < args.loss_minutes * 60:
            for c in lab.agents:
                answer = lab.answer(c, DB, timeout_s=1.0)
                result.polls += 1
                result.unanswered += answer is None
                bad = answer is not None and answer.addresses != ALL_DB
                result.false_drops += bad
                result.episodes += bad and not dropping[c]
                if bad and not dropping[c] and len(result.examples) < 5:
                    result.examples.append(f"{time.monotonic() - start:.1f}s {c}: {answer}")
                dropping[c] = bad
            tick += args.loss_poll_ms / 1000
            time.sleep(max(0.0, tick - time.monotonic()))
    finally:
        result.seconds = time.monotonic() - start
        lab.heal()
    delta = lab.emulator.counts() - before
    result.lost_packets = sum(n for k, n in delta.items() if k[2] == "lost")
    result.sent_packets = sum(n for k, n in delta.items() if k[2] == "sent")
    return result


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.rstrip("\n")


def export_tree(ref: str, dest: Path) -> str:
    """Check ``ref`` out into ``dest`` for the agents to run; describe what runs."""
    if ref == "worktree":
        dirty = [line[3:] for line in git("status", "--porcelain", "--", *CODE).splitlines()]
        head = git("log", "-1", "--format=%h")
        if not dirty:
            return f"`{head}` (the working tree, clean)"
        return f"`{head}` plus uncommitted changes in {', '.join(dirty)} (the working tree)"
    archive = subprocess.run(
        ["git", "archive", ref, *CODE], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    # The C fast path is built in the checkout; use it when its sources (the glob matches
    # the split _fastpath.h, _fastpath_answer.c, _fastpath_batch.c and the older
    # _fastpath.c) are the same at ref.
    same_c = subprocess.run(
        ["git", "diff", "--quiet", ref, "--", "dnsserver/_fastpath*.[ch]"], cwd=ROOT, check=False
    )
    if same_c.returncode == 0:
        for built in (ROOT / "dnsserver").glob("_fastpath*.so"):
            shutil.copy(built, dest / "dnsserver" / built.name)
    last = git("log", "-1", "--format=%h", ref, "--", *CODE)
    return (
        f"`{git('log', '-1', '--format=%h', ref)}` (`git archive {ref}`; last change to "
        f"{', '.join(c + '/' for c in CODE)}: `{last}`)"
    )


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {cpu}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def timing_defaults(code_root: Path) -> str:
    """The ring settings' defaults as ``meshd run --help`` of the measured tree states them."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    meshd = str(Path(sys.executable).parent / "meshd")
    text = subprocess.run(
        [meshd, "run", "--help"], capture_output=True, text=True, env=env, cwd="/", check=True
    ).stdout
    flags = re.findall(r"(--[a-z-]+) SECONDS\s+[^(]*\(default: ([0-9.]+)\)", text)
    skip = {"--sync-timeout", "--dns-ttl"}
    return ", ".join(f"{flag} {value}" for flag, value in flags if flag not in skip)


def report(args: argparse.Namespace, run: Run) -> str:
    today = datetime.date.today().isoformat()
    command = " ".join([".venv/bin/python", "bench/failover_bench.py", *sys.argv[1:]])
    lines = [
        f"## {today} — A dead cluster out of DNS answers, and false drops at "
        f"{args.loss:.0%} loss: real processes in network namespaces (ring {run.short})",
        "",
        "Real `meshd run` processes, one per Linux network namespace (east and west in region "
        "us, south in eu, from `examples/`), linked through the userspace link emulator of "
        "`tests/netns/linkemu.py` (this kernel has no `sch_netem`). Times are seen from "
        f"outside: DNS queries for `{DB}` sent from inside each namespace every "
        f"{args.poll_ms} ms, from the kill or the cut until neither east nor west answers "
        "with south's endpoint (and back). p99 is nearest-rank: with "
        f"{args.trials} trials, the maximum. Each trial starts at a random phase.",
        "",
        f"- machine: {machine()}; date: {today}; seed {args.seed}",
        f"- command: `{command}`",
        f"- ring version: {run.version}",
        f"- agent settings: `{run.settings.describe()}` (defaults of this version: "
        f"{run.defaults}; `--insecure`, manifests source)",
        "",
        "| event | trials | p50 s | p99 s | min s | timeouts |",
        "|---|---:|---:|---:|---:|---:|",
        *(s.row() for s in run.series),
    ]
    loss = run.loss
    if loss is not None:
        share = loss.lost_packets / max(1, loss.lost_packets + loss.sent_packets)
        lines += [
            "",
            f"False drops: {args.loss:.0%} loss and {args.delay_ms} ms one-way delay on every "
            f"directed link for {loss.seconds / 60:.1f} min; each agent polled every "
            f"{args.loss_poll_ms} ms.",
            "",
            "| minutes | packets through the links | lost | polls | unanswered | answers "
            "missing a live cluster | episodes |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {loss.seconds / 60:.1f} | {loss.sent_packets + loss.lost_packets:,} | "
            f"{share:.1%} | {loss.polls:,} | {loss.unanswered} | {loss.false_drops} "
            f"| {loss.episodes} |",
        ]
        if loss.examples:
            lines += ["", "First episodes: " + "; ".join(loss.examples)]
    return "\n".join(lines) + "\n"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="per kind (kill, cut)")
    parser.add_argument("--poll-ms", type=int, default=20)
    parser.add_argument("--loss-minutes", type=float, default=1.0, help="0 skips the run")
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--loss-poll-ms", type=int, default=100)
    parser.add_argument("--gossip-interval", type=float, default=None, metavar="S")
    parser.add_argument("--peer-timeout", type=float, default=None, metavar="S")
    parser.add_argument("--agent-flag", action="append", default=[], help="more meshd flags")
    parser.add_argument("--seed", type=int, default=None, help="trial phases and link loss")
    parser.add_argument("--append", type=Path, default=None, help="e.g. bench/RESULTS.md")
    parser.add_argument(
        "--ref", default="HEAD", help="git ref whose code the agents run, or 'worktree'"
    )
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(2**31)
    return args


@dataclass
class Run:
    settings: RingSettings
    version: str = ""
    short: str = ""
    defaults: str = ""
    series: list[Series] = field(default_factory=list)
    loss: LossRun | None = None


def measure(args: argparse.Namespace, run: Run, workdir: Path, code_root: Path) -> None:
    rng = random.Random(args.seed)
    poll_s = args.poll_ms / 1000
    kill_out, cut_out, kill_back, cut_back = run.series
    lab = Lab(workdir, run.settings, args.seed, code_root)
    try:
        lab.up()
        lab.start_all()
        for i in range(args.trials):
            kill_trial(lab, rng, poll_s, kill_out, kill_back)
            cut_trial(lab, rng, poll_s, cut_out, cut_back)
            done = f"kill {kill_out.values[-1]}, cut {cut_out.values[-1]}"
            print(f"trial {i + 1}/{args.trials}: {done}", file=sys.stderr, flush=True)
        if args.loss_minutes > 0:
            run.loss = loss_run(lab, args)
    finally:
        lab.close()


def main() -> None:
    args = parse()
    settings = RingSettings(
        args.gossip_interval, args.peer_timeout, extra_flags=tuple(args.agent_flag)
    )
    run = Run(settings)
    run.series = [
        Series("kill -9 south: out of east's and west's answers"),
        Series("south's links cut: out of east's and west's answers"),
        Series("kill -9 south, restarted: back in every answer (from the restart)"),
        Series("south's links healed: back in every answer"),
    ]
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        workdir = Path(tmp)
        code_root = ROOT if args.ref == "worktree" else workdir / "code"
        code_root.mkdir(exist_ok=True)
        run.version = export_tree(args.ref, code_root)
        run.short = run.version.split("`")[1]
        run.defaults = timing_defaults(code_root)
        measure(args, run, workdir, code_root)
    text = report(args, run)
    print(text)
    if args.append is not None:
        previous = args.append.read_text()  # re-read now: others append too
        with args.append.open("a") as f:
            f.write(("\n" if not previous.endswith("\n\n") else "") + text)


if __name__ == "__main__":
    main()

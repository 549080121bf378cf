"""``meshd drain``, ``meshd undrain`` and ``meshd drill``: their flags, and the first two.

``drain``/``undrain`` ask one agent (``--admin``, which takes them from loopback only) to
announce that its cluster takes no traffic, or takes it again; the agent keeps the decision
where every replica finds it (``mesh.daemon.announce``). ``drill`` is ``mesh.daemon.drill``.
Exit status: 0 done, 1 the agent refused or could not be reached, 2 a bad flag.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

ADMIN_HELP = "the agent's admin address (--admin-listen; default: 127.0.0.1:9090)"


def _admin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin", default="127.0.0.1:9090", metavar="HOST:PORT", help=ADMIN_HELP)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, got {text}")
    return value


def _hold_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:  # a day: longer is a drain, not a drill (`meshd drain`)
        raise argparse.ArgumentTypeError(f"must be 0 to 86400, got {text}")
    return value


def add_routing_parsers(sub: Any) -> None:
    drain = sub.add_parser(
        "drain",
        help="this agent's cluster takes no traffic (announced, signed, through the ring)",
        description="Drain the cluster of the agent at --admin: every agent leaves it out of "
        "its answers (unless nothing else is left). Kept across restarts: in --state-dir, "
        "and with the Kubernetes API source on the cluster's meshd Lease. Taken from "
        "loopback only (kubectl port-forward arrives there).",
    )
    _admin(drain)
    drain.add_argument("--reason", default="", metavar="TEXT", help="shown in status")
    undrain = sub.add_parser(
        "undrain",
        help="this agent's cluster takes traffic again",
        description="Undo `meshd drain` for the cluster of the agent at --admin.",
    )
    _admin(undrain)
    drill = sub.add_parser(
        "drill",
        help="drain a cluster, measure how fast every member's answers leave it and return",
        description="Drain --cluster, measure at every live member (over the DNS address "
        "it announces) how long until its answers for one service leave the cluster out, "
        "then undrain it and measure the way back. Always undrains, also on Ctrl-C or an "
        "error. Exit status: 0 when every member moved both ways within --timeout, 1 "
        "otherwise, 2 when the drill cannot run as asked.",
    )
    _admin(drill)
    drill.add_argument("--cluster", required=True, metavar="NAME", help="the cluster to drain")
    drill.add_argument(
        "--service",
        default=None,
        metavar="NS/NAME",
        help="the service to watch (default: the first one NAME exports together with "
        "another healthy cluster)",
    )
    drill.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long each member may take to move, each way (default: 30)",
    )
    drill.add_argument(
        "--hold",
        type=_hold_seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep the cluster drained this long after every member moved, to watch "
        "clients, dashboards and alerts in the drained state; Ctrl-C ends it and undrains "
        "(default: 0)",
    )
    drill.add_argument("--json", action="store_true", help="print the result as JSON")


def drain_command(admin: str, drained: bool, reason: str) -> int:
    from mesh.daemon.drill import DrillError, http_json

    path = "drain" if drained else "undrain"
    try:
        answer = http_json(f"http://{admin}/{path}", {"reason": reason} if drained else {})
    except DrillError as exc:
        print(f"meshd: error: {exc}", file=sys.stderr)
        return 1
    state = "drained: it takes no traffic" if drained else "undrained: it takes traffic"
    print(f"cluster {answer['cluster']} {state}")
    kept = answer.get("kept_in") or []
    if kept:
        print(f"kept in: {', '.join(kept)}")
    else:
        print(
            "meshd: warning: the agent keeps it in memory only (no --state-dir): a restart "
            "forgets it",
            file=sys.stderr,
        )
    return 0


def routing_command(args: argparse.Namespace) -> int:
    if args.command == "drill":
        from mesh.daemon.drill import drill_command

        return drill_command(
            args.admin, args.cluster, args.service, args.timeout, args.json, args.hold
        )
    return drain_command(
        args.admin, args.command == "drain", args.reason if args.command == "drain" else ""
    )

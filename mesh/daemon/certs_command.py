"""``meshd certs init|issue``: the command line over ``mesh.security.pki``.

It parses nothing itself beyond argparse, turns ``CertsError`` into exit status 2 with one
line on stderr, and prints the files it wrote and the flags to run an agent with them.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

from mesh.security.pki import CA_CERT, TLS_CERT, TLS_KEY, CertsError, init_ca, issue


def add_certs_parser(sub: Any) -> None:
    certs = sub.add_parser(
        "certs",
        help="create a clusterset CA and per-cluster certificates",
        description="Certificates for mutual TLS between agents and for signed cluster states.",
    )
    actions = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init", help="create a clusterset CA", description="Create a clusterset CA (key + cert)."
    )
    init.add_argument("--clusterset", required=True, metavar="NAME", help="e.g. prod")
    init.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="writes ca.crt, ca.key"
    )
    issue = actions.add_parser(
        "issue",
        help="issue a cluster's TLS and signing certificates",
        description="Issue one cluster's TLS key and certificate and its Ed25519 signing key "
        "and certificate, from the CA made by `meshd certs init`.",
    )
    issue.add_argument("--cluster-id", required=True, metavar="ID", help="the --cluster-id")
    issue.add_argument("--ca", required=True, type=Path, metavar="DIR", help="the CA's directory")
    issue.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="writes tls.crt, tls.key, signing.crt, signing.key, ca.crt",
    )
    issue.add_argument(
        "--hosts", metavar="H1,H2", help="extra DNS names and IP addresses for the TLS certificate"
    )
    issue.add_argument("--days", type=int, default=365, metavar="N", help="validity (default: 365)")
    for parser in (init, issue):
        parser.add_argument("--force", action="store_true", help="replace existing files")


def certs_command(args: argparse.Namespace) -> int:
    """``meshd certs init|issue``; 0, or 2 with one line on stderr for bad input."""
    now = datetime.datetime.now(datetime.UTC)
    try:
        if args.certs_command == "init":
            written = init_ca(args.clusterset, args.out, args.force, now)
        else:
            hosts = [h.strip() for h in (args.hosts or "").split(",") if h.strip()]
            written = issue(
                args.cluster_id, args.ca, args.out, hosts, force=args.force, days=args.days, now=now
            )
    except CertsError as exc:
        print(f"meshd: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    if args.certs_command == "issue":
        out = args.out
        print(
            f"run with: --tls-cert {out / TLS_CERT} --tls-key {out / TLS_KEY} "
            f"--tls-ca {out / CA_CERT}"
        )
    return 0

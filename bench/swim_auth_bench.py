"""What signed SWIM costs: push-pull size and the time to sign and verify, at N clusters.

Builds ``--members`` clusters of one agent each, with signing keys certified by a throwaway
clusterset CA as ``meshd certs`` makes them, and one agent's full member table, every
record carrying its member's signed ``Alive`` (``mesh.security.swim_claims``). Reports, as
the agent's own pump would send and receive them:

- the push-pull's encoded size: unsigned (as with ``--insecure``), signed with only the
  sender's certificate (the usual case), and signed with every certificate behind it (sent
  to one address at most once per ``CERTIFICATES_RESEND_S``);
- the receiver's time to admit the table the first time (learning every certificate and
  checking every signature) and again (everything remembered), medians of ``--runs``;
- the time to sign one claim of our own (a refutation), median.

Usage: ``.venv/bin/python bench/swim_auth_bench.py [--members 200] [--runs 5]
[--out bench/RESULTS.md]``
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import machine  # noqa: E402

from mesh.security import pki  # noqa: E402
from mesh.security.seal import StateSeal  # noqa: E402
from mesh.security.signing import SWIM_DOMAIN, Signer, SignerKey, Trust  # noqa: E402
from mesh.security.swim_claims import SwimAuth, claim_of  # noqa: E402
from mesh.swim.messages import Alive, Member, PushPull  # noqa: E402
from mesh.wire.swim_codec import from_pb, to_pb  # noqa: E402
from mesh.wire.v1 import gossip_pb2 as pb  # noqa: E402

T0 = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


def build(members: int) -> tuple[dict[str, Signer], bytes, PushPull]:
    ca, ca_key = pki.create_ca("bench", T0)
    signers: dict[str, Signer] = {}
    table = []
    for i in range(members):
        cluster = f"c{i}"
        cert, key = pki.issue_signer(ca, ca_key, cluster, T0, days=30)
        signer = Signer(SignerKey.from_pem(pki.pem_cert(cert), pki.pem_key(key)))
        signers[cluster] = signer
        alive = Alive(f"{cluster}/agent-0", cluster, f"10.0.{i // 250}.{i % 250}:7946", 3)
        sealed = signer.seal(SWIM_DOMAIN, claim_of(alive)[1])
        proof = bytes.fromhex(sealed.key_id) + sealed.signature
        table.append(Member(alive.member_id, cluster, alive.address, 3, proof=proof))
    return signers, pki.pem_cert(ca), PushPull("c0/agent-0", table[0].address, tuple(table))


def auth_of(cluster: str, signers: dict[str, Signer], ca_pem: bytes) -> SwimAuth:
    return SwimAuth(
        StateSeal(signers[cluster], Trust.from_pem(ca_pem)), f"{cluster}/agent-0", print
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    signers, ca_pem, table = build(args.members)
    sender = auth_of("c0", signers, ca_pem)
    now = time.time()
    for signer in signers.values():  # as the sender learned them from record chunks
        sender.seal.trust.add_certificate(signer.key.certificate_der, now)
    unsigned = len(
        to_pb(
            replace(table, members=tuple(replace(m, proof=b"") for m in table.members))
        ).SerializeToString()
    )
    signed = sender.sign(table)
    usual = to_pb(signed)
    usual.push_pull.certificates.extend(sender.certificates(signed, now, everyone=False))
    full = to_pb(signed)
    full.push_pull.certificates.extend(sender.certificates(signed, now))
    wire = full.SerializeToString()
    first, again = [], []
    for _ in range(args.runs):
        receiver = auth_of("c1", signers, ca_pem)
        for times in (first, again):
            datagram = pb.SwimDatagram.FromString(wire)
            start = time.perf_counter()
            admitted = receiver.admit(from_pb(datagram), datagram.push_pull.certificates, now)
            times.append(time.perf_counter() - start)
            assert len(admitted.members) == args.members  # type: ignore[union-attr]
    signing = []
    for incarnation in range(4, 4 + 50 * args.runs):
        start = time.perf_counter()
        sender.sign(replace(table, members=(replace(table.members[0], incarnation=incarnation),)))
        signing.append(time.perf_counter() - start)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    lines = [
        f"## {datetime.date.today()} — signed SWIM at {args.members} clusters (in-process)",
        "",
        f"Command: `.venv/bin/python bench/swim_auth_bench.py --members {args.members} "
        f"--runs {args.runs}` at {commit}. Machine: {machine()}. One agent per cluster; every "
        f"member record carries its member's signed Alive; medians of {args.runs} runs.",
        "",
        "| what | value |",
        "|---|---:|",
        f"| push-pull bytes, unsigned (`--insecure`) | {unsigned:,} |",
        f"| push-pull bytes, signed, the sender's certificate only | {usual.ByteSize():,} |",
        f"| push-pull bytes, signed, every certificate behind it | {len(wire):,} |",
        "| admit the signed table, first time (certificates + signatures), ms | "
        f"{statistics.median(first) * 1000:.1f} |",
        f"| admit it again (remembered), ms | {statistics.median(again) * 1000:.2f} |",
        f"| sign one claim of our own, us | {statistics.median(signing) * 1e6:.0f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with args.out.open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()

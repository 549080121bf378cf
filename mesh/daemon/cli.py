"""The ``meshd`` command: ``run`` (the daemon), ``demo``, ``status``, ``drain``,
``undrain``, ``drill`` and ``certs``.

Exit status: 0 after a clean shutdown (SIGTERM, SIGINT or ``--duration``), 1 when the agent
cannot start or dies (a port in use, a background task failing), 2 for a bad flag, variable
or config value, with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh.daemon.certs_command import add_certs_parser, certs_command
from mesh.daemon.flags import OPTIONS, add_run_arguments, resolve
from mesh.daemon.routing_commands import add_routing_parsers, routing_command
from mesh.daemon.runner import run_async, serve
from mesh.daemon.settings import AgentSettings
from mesh.daemon.values import ConfigError


class UsageError(Exception):
    """A setting that cannot work; exit status 2."""


def settings_from(values: dict[str, Any]) -> AgentSettings:
    """Check the combinations of settings, and build the agent's settings."""
    if values["cluster_id"] is None:
        raise UsageError(
            "--cluster-id is required (or MESHD_CLUSTER_ID, or cluster_id in --config)"
        )
    _check_source(values, os.environ)
    _check_tls(values)
    return AgentSettings(
        **{opt.setting: values[opt.name] for opt in OPTIONS if opt.setting is not None}
    )


def _check_tls(values: dict[str, Any]) -> None:
    """All three TLS files, usable and issued to this cluster; or none and --insecure."""
    flags = {"tls_cert": "--tls-cert", "tls_key": "--tls-key", "tls_ca": "--tls-ca"}
    missing = [flag for key, flag in flags.items() if values[key] is None]
    if not missing:
        if values["insecure"]:
            raise UsageError("--insecure contradicts --tls-cert/--tls-key/--tls-ca: give one")
        from mesh.transport.tls import RingTls, TlsError, TlsFiles

        files = TlsFiles(values["tls_cert"], values["tls_key"], values["tls_ca"])
        try:
            RingTls(files, values["cluster_id"])
        except TlsError as exc:
            raise UsageError(str(exc)) from None
        _check_signing(values)
    elif len(missing) < len(flags):
        raise UsageError(
            f"--tls-cert, --tls-key and --tls-ca go together: {', '.join(missing)} missing"
        )
    elif not values["insecure"]:
        raise UsageError(
            "gossip without TLS must be asked for: pass --insecure, or --tls-cert, "
            "--tls-key and --tls-ca (see `meshd certs`)"
        )


def _check_signing(values: dict[str, Any]) -> None:
    """With TLS, states are signed: the signing files must load and name this cluster."""
    from mesh.security.pki import CertsError, load_signer, load_trust

    folder = values["tls_cert"].parent
    values["signing_cert"] = values["signing_cert"] or folder / "signing.crt"
    values["signing_key"] = values["signing_key"] or folder / "signing.key"
    try:
        load_signer(values["signing_cert"], values["signing_key"], values["cluster_id"])
        load_trust(values["tls_ca"])
    except CertsError as exc:
        raise UsageError(f"state signing: {exc} (see --signing-cert, --signing-key)") from None


def _check_source(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    """One source: --manifests DIR or --kubeconfig PATH; in a pod with neither, in-cluster."""
    manifests, kubeconfig = values["manifests"], values["kubeconfig"]
    if manifests is not None and kubeconfig is not None:
        raise UsageError("--manifests and --kubeconfig are two sources; give one of them")
    if manifests is not None and not manifests.is_dir():
        raise UsageError(f"--manifests: {manifests} is not a directory")
    if kubeconfig is not None and not kubeconfig.is_file():
        raise UsageError(f"--kubeconfig: {kubeconfig} is not a file")
    if manifests is None and kubeconfig is None and not environ.get("KUBERNETES_SERVICE_HOST"):
        raise UsageError(
            "a source is required: --manifests DIR or --kubeconfig PATH (the in-cluster "
            "config is used only in a pod, where KUBERNETES_SERVICE_HOST is set)"
        )
    if manifests is not None and values["answer_mode"] == "clusterset-ip":
        raise UsageError(
            "--answer-mode clusterset-ip needs the Kubernetes API source (meshd derives a "
            "Service and EndpointSlices per ServiceImport there); with --manifests use "
            "endpoints or cluster-ip"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshd",
        description="Cross-cluster service discovery: Multi-Cluster Services exports shared "
        "over a gossip ring, answered as DNS for clusterset.local.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="run the agent (the daemon)", description="Run the meshd agent of one cluster."
    )
    add_run_arguments(run)
    _add_demo_parser(sub)
    status = sub.add_parser(
        "status",
        help="members, clusters and services of a running agent, or one service explained",
        description="Print an agent's view, read from its admin address; with --service, "
        "one service's tiers, weights and health, and why each cluster left out is out.",
    )
    status.add_argument(
        "--admin",
        default="127.0.0.1:9090",
        metavar="HOST:PORT",
        help="the agent's --admin-listen address (default: 127.0.0.1:9090)",
    )
    status.add_argument(
        "--service",
        default=None,
        metavar="NS/NAME",
        help="explain one service: its tiers, weights and health, and why each cluster "
        "left out is out",
    )
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    add_routing_parsers(sub)
    add_certs_parser(sub)
    return parser


def _add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="three clusters on loopback, with dig commands to try",
        description="Run three agents (east, west: region us; south: region "
        "eu) on loopback from the example manifests shipped with meshd, each with its own "
        "DNS port.",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: until interrupted)",
    )
    demo.add_argument(
        "--dns-port-base",
        type=int,
        default=10053,
        metavar="PORT",
        help="DNS port of the first agent; the others take the next ones (default: 10053)",
    )
    demo.add_argument(
        "--admin-port-base",
        type=int,
        default=19090,
        metavar="PORT",
        help="admin (metrics, status) port of the first agent; the others take the next ones "
        "(default: 19090)",
    )
    demo.add_argument(
        "--examples",
        type=Path,
        default=None,
        metavar="DIR",
        help="demo manifests, one sub-directory per cluster (default: the ones installed "
        "with meshd, mesh/daemon/examples/)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "certs":
        return certs_command(args)
    if args.command == "status":
        from mesh.daemon.status import status

        return status(args.admin, args.json, args.service)
    if args.command in ("drain", "undrain", "drill"):
        return routing_command(args)
    if args.command == "demo":
        from mesh.daemon.demo import demo

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return demo(args.examples, args.dns_port_base, args.admin_port_base, args.duration)
    try:
        values = resolve(args)
        settings = settings_from(values)
    except (ConfigError, UsageError) as exc:
        print(f"meshd: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=values["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run_async(lambda stop: serve(settings, stop))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Settings of ``meshd run``: one table of options, four places a value can come from.

Every option has a flag (``--dns-ttl``), an environment variable (``MESHD_DNS_TTL``) and a
key in the ``--config`` YAML file (``dns_ttl``). Precedence: flag, environment, file,
default. Every value goes through the option's parser, which raises ``ConfigError`` with
one line naming the option, the bad value and where it came from; the CLI turns that into
exit status 2. Unknown keys in the file are errors too (a typo must not be ignored).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

from mesh.daemon import values
from mesh.daemon.settings import AgentSettings
from mesh.daemon.values import ConfigError
from mesh.routing.annotations import ANSWER_MODES

SETTING_FIELDS = {f.name: f.default for f in fields(AgentSettings)}
RECORD_SIGNATURES = ("both", "batch")  # --record-signatures (mesh.wire.record_batch)


def _default(setting: str) -> Any:
    """The default of an ``AgentSettings`` field: written there once, shown by ``--help``."""
    return SETTING_FIELDS[setting]


@dataclass(frozen=True)
class Option:
    name: str  # snake_case: the file key; the flag and variable derive from it
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str | None = None
    flag_only_bool: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "MESHD_" + self.name.upper()

    @property
    def setting(self) -> str | None:
        """The ``AgentSettings`` field this option fills (seconds carry ``_s``), if any."""
        for field_name in (self.name, self.name + "_s"):
            if field_name in SETTING_FIELDS:
                return field_name
        return None


OPTIONS: tuple[Option, ...] = (
    Option(
        "cluster_id",
        values.label_value,
        None,
        "this cluster's id, an RFC 1123 label (required)",
        "NAME",
    ),
    Option(
        "region",
        values.optional_label,
        _default("region"),
        "region of this cluster, for locality-aware answers",
        "NAME",
    ),
    Option("zone", values.optional_label, _default("zone"), "zone of this cluster", "NAME"),
    Option(
        "manifests",
        values.path_value,
        None,
        "directory of Kubernetes YAML (Namespace, Service, ServiceExport, EndpointSlice) "
        "to read this cluster's exports from; watched for changes",
        "DIR",
    ),
    Option(
        "kubeconfig",
        values.path_value,
        _default("kubeconfig"),
        "read exports from the Kubernetes API (list and watch) with this kubeconfig; with "
        "neither this nor --manifests, a pod uses its in-cluster service account",
        "PATH",
    ),
    Option(
        "replica_id",
        values.optional_label,
        _default("replica_id"),
        "this agent replica's id among the replicas of its cluster (default: the hostname, "
        "which is the pod name in Kubernetes)",
        "NAME",
    ),
    Option(
        "lease_namespace",
        values.optional_label,
        _default("lease_namespace"),
        "with the Kubernetes API source: namespace of the Lease that elects the one replica "
        "writing ServiceImports and ServiceExport status (default: the pod's own namespace, "
        "else meshd-system)",
        "NAME",
    ),
    Option(
        "dns_listen",
        values.host_port,
        _default("dns_listen"),
        "UDP and TCP address of the DNS server",
        "HOST:PORT",
    ),
    Option(
        "dns_advertise",
        values.address_port,
        _default("dns_advertise"),
        "DNS address clients, resolvers and `meshd drill` reach this agent at, announced on "
        "the ring; its IP is the address (A or AAAA) of the zone's name server ns.dns.<zone> "
        "(default: the --dns-listen host, or with a wildcard there the --advertise host, "
        "with the --dns-listen port)",
        "IP:PORT",
    ),
    Option("dns_zone", values.zone_value, _default("dns_zone"), "the zone served", "NAME"),
    Option(
        "dns_ttl",
        values.int_range(0, 3600),
        _default("dns_ttl"),
        "TTL of answers and SOA minimum, 0-3600",
        "SECONDS",
    ),
    Option(
        "dns_workers",
        values.int_range(0, 64),
        _default("dns_workers"),
        "answer DNS in this many worker processes sharing the port (SO_REUSEPORT); "
        "0 answers in the agent process",
        "N",
    ),
    Option(
        "grpc_listen",
        values.host_port,
        _default("grpc_listen"),
        "address of the gossip (gRPC) server",
        "HOST:PORT",
    ),
    Option(
        "advertise",
        values.host_port,
        _default("advertise"),
        "gossip address peers should use for this agent (default: --grpc-listen, with a "
        "wildcard host replaced by this host's address)",
        "HOST:PORT",
    ),
    Option(
        "join",
        values.host_ports,
        _default("join"),
        "seed peers to join, comma separated; more are learned from the ring",
        "HOST:PORT[,...]",
    ),
    Option(
        "admin_listen",
        values.host_port,
        _default("admin_listen"),
        "address of /metrics, /healthz, /readyz, /debug/state and /debug/service, and of "
        "the drain and undrain writes (taken from loopback only)",
        "HOST:PORT",
    ),
    Option(
        "admin_advertise",
        values.address_port,
        _default("admin_advertise"),
        "admin address `meshd drill` reaches this agent at, announced on the ring (default: "
        "the --admin-listen host, or with a wildcard there the --advertise host, with the "
        "--admin-listen port)",
        "IP:PORT",
    ),
    Option(
        "tls_cert",
        values.path_value,
        _default("tls_cert"),
        "certificate for mutual TLS between agents",
        "PATH",
    ),
    Option("tls_key", values.path_value, _default("tls_key"), "private key for --tls-cert", "PATH"),
    Option(
        "tls_ca",
        values.path_value,
        _default("tls_ca"),
        "CA bundle that peers' certificates must chain to",
        "PATH",
    ),
    Option(
        "signing_cert",
        values.path_value,
        _default("signing_cert"),
        "certificate of this cluster's state-signing key (default: signing.crt next to "
        "--tls-cert, as `meshd certs issue` writes it)",
        "PATH",
    ),
    Option(
        "signing_key",
        values.path_value,
        _default("signing_key"),
        "this cluster's Ed25519 state-signing key (default: signing.key next to --tls-cert)",
        "PATH",
    ),
    Option(
        "insecure",
        values.bool_value,
        False,
        "gossip in plaintext, without TLS (must be asked for)",
        flag_only_bool=True,
    ),
    Option(
        "state_dir",
        values.path_value,
        _default("state_dir"),
        "directory for what a restart needs: the last state generation, and the drain "
        "(meshd drain)",
        "DIR",
    ),
    Option(
        "gossip_interval",
        values.seconds(0.05, 60),
        _default("gossip_interval_s"),
        "seconds between gossip rounds",
        "SECONDS",
    ),
    Option(
        "peer_timeout",
        values.seconds(0.1, 600),
        _default("peer_timeout_s"),
        "a cluster none of whose agents answered for this long leaves DNS answers",
        "SECONDS",
    ),
    Option(
        "max_exchange_rate",
        values.float_range(1, 10000),
        _default("max_exchange_rate"),
        "most push-pull exchanges this agent starts a second; a larger ring contacts each "
        "peer less often (and waits longer before calling it unreachable)",
        "PER_SECOND",
    ),
    Option(
        "cluster_expiry",
        values.seconds(1, 365 * 86400),
        _default("cluster_expiry_s"),
        "a cluster out of the answers this long without a break is forgotten (its records "
        "dropped; it is taken afresh when it restarts)",
        "SECONDS",
    ),
    Option(
        "tombstone_ttl",
        values.seconds(1, 30 * 86400),
        _default("tombstone_ttl_s"),
        "how long a deleted service's tombstone is kept; a peer away longer gets a full reset",
        "SECONDS",
    ),
    Option(
        "sync_timeout",
        values.seconds(0, 600),
        _default("sync_timeout_s"),
        "longest wait for a first exchange with a peer before answering (SERVFAIL until)",
        "SECONDS",
    ),
    Option(
        "max_addresses",
        values.int_range(1, 64),
        _default("max_addresses"),
        "most A (and AAAA) records in a ClusterSetIP answer",
        "N",
    ),
    Option(
        "answer_mode",
        values.choice(ANSWER_MODES),
        _default("answer_mode"),
        "what ClusterSetIP services answer: endpoints (pod addresses), cluster-ip (each "
        "chosen cluster's Service ClusterIP) or clusterset-ip (a virtual IP meshd derives in "
        "this cluster; Kubernetes API source only); per service: meshd.io/answer-mode",
        "MODE",
    ),
    Option(
        "record_signatures",
        values.choice(RECORD_SIGNATURES),
        _default("record_signatures"),
        "how records are signed (with TLS): both (each record, and batches of records: "
        "agents of earlier releases verify the first) or batch (once every agent verifies "
        "batches; a receiver then does one signature check per batch)",
        "MODE",
    ),
    Option("log_level", values.log_level, "INFO", "debug, info, warning or error", "LEVEL"),
)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of settings (snake_case keys); flags and MESHD_* variables override it",
    )
    for opt in OPTIONS:
        default_text = "" if opt.default in (None, "", ()) else f" (default: {opt.default})"
        text = f"{opt.help}{default_text}; env {opt.env}"
        if opt.flag_only_bool:
            parser.add_argument(
                opt.flag, dest=opt.name, action="store_const", const=True, default=None, help=text
            )
        else:
            parser.add_argument(
                opt.flag, dest=opt.name, metavar=opt.metavar, default=None, help=text
            )


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: must be a mapping of settings")
    known = {o.name for o in OPTIONS}
    for key in data:
        if key not in known:
            raise ConfigError(f"--config {path}: unknown setting {key!r}")
    return data


def resolve(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Every option's value, by precedence flag > environment > file > default."""
    file_values = _read_file(args.config) if getattr(args, "config", None) else {}
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw: Any
        if getattr(args, opt.name, None) is not None:
            raw, source = getattr(args, opt.name), opt.flag
        elif opt.env in environ:
            raw, source = environ[opt.env], opt.env
        elif opt.name in file_values and file_values[opt.name] is not None:
            raw, source = _scalar_text(opt, file_values[opt.name]), f"{opt.name} in {args.config}"
        else:
            values[opt.name] = opt.default
            continue
        try:
            values[opt.name] = opt.parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}, got {raw!r}") from None
    return values


def _scalar_text(opt: Option, value: Any) -> Any:
    """YAML gives ints and bools where a flag gives text; parse them as the text they spell.

    Anything else (a list for ``join``, or a value of the wrong shape) goes to the parser
    as it is, which accepts it or raises, so the error names the key and the value.
    """
    if isinstance(value, bool):
        return value if opt.parse is values.bool_value else str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value

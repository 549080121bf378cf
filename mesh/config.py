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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mesh.model import is_dns_label
from mesh.peers import split_host_port


class ConfigError(ValueError):
    """A setting with a bad value; the message is one line for the operator."""


def _label(value: str) -> str:
    if not is_dns_label(value):
        raise ValueError("must be an RFC 1123 label (a-z, 0-9, '-', at most 63 characters)")
    return value


def _optional_label(value: str) -> str:
    return _label(value) if value else ""


def _host_port(value: str) -> str:
    split_host_port(value)
    return value


def _host_ports(value: str | list[str]) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [v for v in str(value).split(",")]
    return tuple(_host_port(str(v).strip()) for v in items if str(v).strip())


def _zone(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    labels = name.split(".")
    if not name or any(not is_dns_label(label) for label in labels) or len(name) > 200:
        raise ValueError("must be a DNS name such as clusterset.local")
    return name


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(str(value), 10)
        except ValueError:
            raise ValueError(f"must be an integer {low}-{high}") from None
        if not low <= number <= high:
            raise ValueError(f"must be an integer {low}-{high}")
        return number

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _float_range(low, high, "of seconds ")


def _float_range(low: float, high: float, unit: str = "") -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(str(value))
        except ValueError:
            raise ValueError(f"must be a number {unit}{low}-{high}") from None
        if not low <= number <= high:
            raise ValueError(f"must be a number {unit}{low}-{high}")
        return number

    return parse


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _path(value: str) -> Path:
    if not str(value):
        raise ValueError("must be a path")
    return Path(str(value)).expanduser()


def _log_level(value: str) -> str:
    level = str(value).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be debug, info, warning or error")
    return level


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


OPTIONS: tuple[Option, ...] = (
    Option("cluster_id", _label, None, "this cluster's id, an RFC 1123 label (required)", "NAME"),
    Option(
        "region", _optional_label, "", "region of this cluster, for locality-aware answers", "NAME"
    ),
    Option("zone", _optional_label, "", "zone of this cluster", "NAME"),
    Option(
        "manifests",
        _path,
        None,
        "directory of Kubernetes YAML (Namespace, Service, ServiceExport, EndpointSlice) "
        "to read this cluster's exports from; watched for changes",
        "DIR",
    ),
    Option(
        "kubeconfig",
        _path,
        None,
        "read exports from the Kubernetes API (list and watch) with this kubeconfig; with "
        "neither this nor --manifests, a pod uses its in-cluster service account",
        "PATH",
    ),
    Option(
        "replica_id",
        _optional_label,
        "",
        "this agent replica's id among the replicas of its cluster (default: the hostname, "
        "which is the pod name in Kubernetes)",
        "NAME",
    ),
    Option(
        "lease_namespace",
        _optional_label,
        "",
        "with the Kubernetes API source: namespace of the Lease that elects the one replica "
        "writing ServiceImports and ServiceExport status (default: the pod's own namespace, "
        "else meshd-system)",
        "NAME",
    ),
    Option(
        "dns_listen", _host_port, "0.0.0.0:53", "UDP and TCP address of the DNS server", "HOST:PORT"
    ),
    Option("dns_zone", _zone, "clusterset.local", "the zone served", "NAME"),
    Option("dns_ttl", _int_range(0, 3600), 5, "TTL of answers and SOA minimum, 0-3600", "SECONDS"),
    Option(
        "dns_workers",
        _int_range(0, 64),
        0,
        "answer DNS in this many worker processes sharing the port (SO_REUSEPORT); "
        "0 answers in the agent process",
        "N",
    ),
    Option(
        "grpc_listen",
        _host_port,
        "0.0.0.0:7946",
        "address of the gossip (gRPC) server",
        "HOST:PORT",
    ),
    Option(
        "advertise",
        _host_port,
        None,
        "gossip address peers should use for this agent (default: --grpc-listen, with a "
        "wildcard host replaced by this host's address)",
        "HOST:PORT",
    ),
    Option(
        "join",
        _host_ports,
        (),
        "seed peers to join, comma separated; more are learned from the ring",
        "HOST:PORT[,...]",
    ),
    Option(
        "admin_listen",
        _host_port,
        "0.0.0.0:9090",
        "address of /metrics, /healthz, /readyz and /debug/state",
        "HOST:PORT",
    ),
    Option("tls_cert", _path, None, "certificate for mutual TLS between agents", "PATH"),
    Option("tls_key", _path, None, "private key for --tls-cert", "PATH"),
    Option("tls_ca", _path, None, "CA bundle that peers' certificates must chain to", "PATH"),
    Option(
        "signing_cert",
        _path,
        None,
        "certificate of this cluster's state-signing key (default: signing.crt next to "
        "--tls-cert, as `meshd certs issue` writes it)",
        "PATH",
    ),
    Option(
        "signing_key",
        _path,
        None,
        "this cluster's Ed25519 state-signing key (default: signing.key next to --tls-cert)",
        "PATH",
    ),
    Option(
        "insecure",
        _bool,
        False,
        "gossip in plaintext, without TLS (must be asked for)",
        flag_only_bool=True,
    ),
    Option(
        "state_dir",
        _path,
        None,
        "directory for what a warm restart needs (the last state generation)",
        "DIR",
    ),
    Option("gossip_interval", _seconds(0.05, 60), 0.5, "seconds between gossip rounds", "SECONDS"),
    Option(
        "peer_timeout",
        _seconds(0.1, 600),
        2.0,
        "a cluster none of whose agents answered for this long leaves DNS answers",
        "SECONDS",
    ),
    Option(
        "max_exchange_rate",
        _float_range(1, 10000),
        40.0,
        "most push-pull exchanges this agent starts a second; a larger ring contacts each "
        "peer less often (and waits longer before calling it unreachable)",
        "PER_SECOND",
    ),
    Option(
        "cluster_expiry",
        _seconds(1, 365 * 86400),
        86400.0,
        "a cluster out of the answers this long without a break is forgotten (its records "
        "dropped; it is taken afresh when it restarts)",
        "SECONDS",
    ),
    Option(
        "tombstone_ttl",
        _seconds(1, 30 * 86400),
        3600.0,
        "how long a deleted service's tombstone is kept; a peer away longer gets a full reset",
        "SECONDS",
    ),
    Option(
        "sync_timeout",
        _seconds(0, 600),
        5.0,
        "longest wait for a first exchange with a peer before answering (SERVFAIL until)",
        "SECONDS",
    ),
    Option(
        "max_addresses",
        _int_range(1, 64),
        8,
        "most A (and AAAA) records in a ClusterSetIP answer",
        "N",
    ),
    Option("log_level", _log_level, "INFO", "debug, info, warning or error", "LEVEL"),
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
        return value if opt.parse is _bool else str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value

"""An agent's settings: one frozen record, and the one place where each default is written.

A default that a core owns (the peer timeout, the tombstone TTL, the cluster expiry, the
answer size) is read from that core here, so the flag, the environment variable, the config
file and the core itself can never disagree. ``mesh.daemon.flags`` derives every flag's
default and help text from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mesh.ring.expiry import DEFAULT_CLUSTER_EXPIRY_S
from mesh.ring.peers import (
    DEFAULT_INTERVAL_S,
    DEFAULT_MAX_EXCHANGES_PER_S,
    DEFAULT_PEER_TIMEOUT_S,
)
from mesh.ring.records import DEFAULT_TOMBSTONE_TTL_S
from mesh.routing.policy import DEFAULT_MAX_ADDRESSES


@dataclass(frozen=True)
class AgentSettings:
    cluster_id: str
    manifests: Path | None  # None: the Kubernetes API (kubeconfig, else in-cluster)
    region: str = ""
    zone: str = ""
    dns_listen: str = "0.0.0.0:53"
    dns_zone: str = "clusterset.local"
    dns_ttl: int = 5
    # The DNS address clients reach this agent at: the A/AAAA of the zone's name server
    # ns.dns.<zone>. None: --dns-listen's host, or with a wildcard there the --advertise host
    # (itself derived from --grpc-listen when not set), with the --dns-listen port
    # (mesh.daemon.hostinfo.default_dns_advertise).
    dns_advertise: str | None = None
    grpc_listen: str = "0.0.0.0:7946"
    advertise: str | None = None
    join: tuple[str, ...] = ()
    admin_listen: str | None = "0.0.0.0:9090"
    # The admin address a drill (`meshd drill`) reaches this agent at, announced on the ring
    # with the DNS one. None: as for dns_advertise, with the --admin-listen host and port
    # (mesh.daemon.hostinfo.default_dns_advertise); the port as bound when it is 0.
    admin_advertise: str | None = None
    state_dir: Path | None = None
    gossip_interval_s: float = DEFAULT_INTERVAL_S
    peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S
    tombstone_ttl_s: float = DEFAULT_TOMBSTONE_TTL_S
    max_exchange_rate: float = DEFAULT_MAX_EXCHANGES_PER_S
    cluster_expiry_s: float = DEFAULT_CLUSTER_EXPIRY_S
    sync_timeout_s: float = 5.0
    max_addresses: int = DEFAULT_MAX_ADDRESSES
    # What ClusterSetIP services answer (mesh.routing.modes); meshd.io/answer-mode per service.
    answer_mode: str = "endpoints"
    # How this agent signs its records (mesh.wire.record_batch): "both" (each record on its
    # own, for agents of earlier releases, and in signed batches), or "batch" only, once
    # every agent of the clusterset runs a release that verifies batches.
    record_signatures: str = "both"
    kubeconfig: Path | None = None  # with manifests None; None here too: in-cluster
    # Mutual TLS between agents (all three, or none for plaintext; see mesh.transport.tls).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    signing_cert: Path | None = None
    signing_key: Path | None = None
    dns_workers: int = 0
    replica_id: str = ""
    lease_namespace: str = ""  # the write-back Lease's; "": the pod's, else meshd-system

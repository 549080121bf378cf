"""Answer modes: what the A/AAAA answer of a ClusterSetIP service holds (pure).

The same routing policy (tiers, failover order, weights, fail open; ``mesh.routing.tiers``)
chooses the clusters in every mode; the mode decides what of them the answer gives:

- ``endpoints`` (the default): the chosen clusters' ready pod addresses, for pod networks
  routable between clusters. SRV carries the endpoints' port (``mesh.routing.ports``).
- ``cluster-ip``: each chosen cluster's Service ClusterIP (one per cluster and family,
  carried on the ring with the export), for networks where Service CIDRs are routable
  between clusters (Submariner); kube-proxy in that cluster maps port to targetPort. This
  is what Lighthouse answers. Weights decide how often each cluster's IP comes first (or is
  the only one, with ``meshd.io/max-answers: 1``). A cluster whose export carries no
  ClusterIP (an older agent, a manifest without ``clusterIP``) is not a candidate; when no
  exporter has one, the service answers endpoints and that is reported (``no_cluster_ip``).
- ``clusterset-ip`` (the Kubernetes API source only): the specification's answer, one
  virtual IP per ServiceImport: a Service without selector that meshd derives in this
  cluster (its ClusterIP allocated by the cluster), whose EndpointSlices hold the
  endpoints the policy chose (``mesh.kube.derived``), so the cluster's own data plane
  balances the VIP. Until the VIP exists the service answers endpoints. Without the
  Kubernetes API source there is nothing to derive: as a flag it is refused at start, as an
  annotation the service answers in the default mode and that is reported
  (``clusterset_ip_unavailable``).

Headless services have no virtual IP in any mode: they answer their endpoints (an
annotation asking otherwise is reported, ``headless_answer_mode``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.model import ServiceType
from mesh.routing.annotations import ANSWER_MODES, Problem, ServicePolicy

__all__ = ["ANSWER_MODES", "Answering", "resolve_mode"]

ENDPOINTS, CLUSTER_IP, CLUSTERSET_IP = ANSWER_MODES


@dataclass(frozen=True, slots=True)
class Answering:
    """How this agent answers: its default mode (``--answer-mode``) and whether its source
    can hold a clusterset VIP (the Kubernetes API source can)."""

    default: str = ENDPOINTS
    vips: bool = False


DEFAULT_ANSWERING = Answering()


def resolve_mode(
    policy: ServicePolicy, kind: ServiceType, answering: Answering
) -> tuple[str, Problem | None]:
    """The mode a service answers in, and a problem when it is not the one asked for."""
    asked = policy.answer_mode
    if kind is ServiceType.HEADLESS:
        if asked not in (None, ENDPOINTS):
            return ENDPOINTS, Problem(
                "headless_answer_mode",
                f"meshd.io/answer-mode: {asked}: a headless service has no virtual IP; "
                "it answers its endpoints",
            )
        return ENDPOINTS, None
    mode = asked or answering.default
    if mode == CLUSTERSET_IP and not answering.vips:
        fallback = answering.default if answering.default != CLUSTERSET_IP else ENDPOINTS
        return fallback, Problem(
            "clusterset_ip_unavailable",
            "meshd.io/answer-mode: clusterset-ip needs the Kubernetes API source (meshd "
            f"derives a Service and EndpointSlices there); answering in mode {fallback}",
        )
    return mode, None

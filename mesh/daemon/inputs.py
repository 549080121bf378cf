"""Where an agent's exports come from, and who writes back: the manifests directory
(``--manifests``), or the Kubernetes API (``--kubeconfig``, else the in-cluster config),
whose agents also write the MCS API's status and ServiceImports from the replica holding
the Lease. The Kubernetes modules are imported only when used, so an agent fed from
manifests never loads the Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mesh.daemon.settings import AgentSettings
from mesh.model import ClusterState, LocalExports, ServiceKey
from mesh.ring.catalog import Change
from mesh.routing.modes import Answering
from mesh.routing.planner import AnswerPlanner
from mesh.sources.manifests import ManifestSource, SourceProblem

if TYPE_CHECKING:
    from mesh.kube.source import KubernetesSource
    from mesh.kube.writer import KubeWriter


def answering_of(settings: AgentSettings) -> Answering:
    """How the agent answers: its default mode; VIPs only with the Kubernetes API source."""
    return Answering(settings.answer_mode, vips=settings.manifests is None)


def make_source(
    settings: AgentSettings,
    on_change: Callable[[LocalExports], None],
    on_problem: Callable[[SourceProblem], None],
    planner: AnswerPlanner | None = None,
    on_planned: Callable[[Change], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ManifestSource | KubernetesSource:
    """The source of this cluster's exports: the manifests directory, else the API server,
    which also tells ``planner`` the clusterset VIPs (and ``on_planned`` what that dirtied).
    ``on_progress`` hears how many services the manifests source has taken in, as it goes."""
    if settings.manifests is not None:
        return ManifestSource(settings.manifests, on_change, on_problem, on_progress=on_progress)
    from mesh.kube.source import KubeAccess, KubernetesSource

    def on_vips(vips: dict[ServiceKey, tuple[str, ...]]) -> None:
        if planner is not None:
            change = planner.note_vips(vips)
            if on_planned is not None and change:
                on_planned(change)

    access = KubeAccess(kubeconfig=settings.kubeconfig)
    return KubernetesSource(access, on_change, on_problem, on_vips=on_vips)


def make_writer(
    settings: AgentSettings,
    source: ManifestSource | KubernetesSource,
    clusters: Callable[[], list[ClusterState]],
    ring_synced: Callable[[], bool],
    planner: AnswerPlanner | None = None,
) -> KubeWriter | None:
    """The MCS write-back (status conditions and ServiceImports) for the API source; None
    for manifests, which have nowhere to write."""
    if isinstance(source, ManifestSource):
        return None
    from mesh.kube.writer import KubeWriter, WriterSettings

    writer_settings = WriterSettings(
        lease_namespace=settings.lease_namespace, answering=answering_of(settings)
    )
    return KubeWriter(
        settings.cluster_id,
        source,
        clusters,
        writer_settings,
        ring_synced=ring_synced,
        planner=planner,
    )

"""The Kubernetes API source: list and watch the MCS objects with kubernetes_asyncio.

Theory of operation
-------------------
The source follows four kinds across all namespaces: ``Namespace`` (v1), ``Service`` (v1),
``EndpointSlice`` (discovery.k8s.io/v1) and ``ServiceExport`` (multicluster.x-k8s.io, in
the newest version the API server serves: v1beta1, else v1alpha1; ``discover_version``
asks before every full list, so CRDs upgraded in place are followed from the next
relist). For each, one task runs the list-then-watch loop of ``mesh.kube.reflector``
(client-go's reflector, kopf's ``continuous_watch``): list in
pages, watch from the list's resourceVersion with bookmarks, watch again when a stream ends
or stays silent, list again on ``410 Gone``, back off with jitter while the API server
cannot be reached or answers with an error. Meanwhile the last known objects stay, so DNS
keeps answering from the last known state.

Every change marks the state dirty; one publishing task then translates all objects with
``mesh.sources.translate.translate`` (the same rules as the manifests source) and calls
``on_change`` when the exports differ from the last ones delivered, and ``on_vips`` when the
clusterset VIPs (the ClusterIPs of the Services meshd derived for answer mode
``clusterset-ip``, ``mesh.kube.derived.vips_of``) changed. The first call waits
until every kind has been listed once, so ``/readyz`` means "the first full list of every
kind is in". Problems (unreachable API, denied calls, invalid objects) go to ``on_problem``
once each while they last; objects keep being read around an invalid one.

Configuration: ``KubeAccess(kubeconfig=PATH)`` reads a kubeconfig (its current context or
``context``); ``KubeAccess()`` uses the in-cluster service account (token, CA, and the
``KUBERNETES_SERVICE_HOST``/``PORT`` variables a pod is given). Requests go through
``mesh.kube.calls``, which reads responses as raw JSON: the objects stay the plain
dicts the API returned, which is what ``translate`` reads, and no field is lost to a model
class.

``PERMISSIONS`` names every API call this source makes; the RBAC manifests must grant them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mesh.kube.calls import KubeAccess, KubeCalls, KubernetesConfigError, api_client
from mesh.kube.derived import vips_of
from mesh.kube.reflector import Reflector, WatchError, WatchTimings
from mesh.model import LocalExports, ServiceKey
from mesh.sources.translate import SourceProblem, translate
from mesh.sources.watchstate import KindStore, Resource, WatchState, failure_text

__all__ = [
    "MCS_GROUP",
    "MCS_VERSIONS",
    "PERMISSIONS",
    "RESOURCES",
    "KubeAccess",
    "KubernetesConfigError",
    "KubernetesSource",
    "WatchTimings",
    "discover_version",
]

log = logging.getLogger("meshd.kubernetes")

PUBLISH_INTERVAL_S = 0.1  # translations at most this often (well within "a second")
MCS_GROUP = "multicluster.x-k8s.io"
MCS_VERSIONS = ("v1beta1", "v1alpha1")  # in order of preference: the newest served wins
RESOURCES: tuple[Resource, ...] = (
    Resource("Namespace", "v1", "namespaces"),
    Resource("Service", "v1", "services"),
    Resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
    Resource("ServiceExport", f"{MCS_GROUP}/{MCS_VERSIONS[0]}", "serviceexports"),
)
# (API group, resource, verb) of every call this source makes, cluster-wide.
PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    (r.group, r.plural, verb) for r in RESOURCES for verb in ("list", "watch")
)


class KubernetesSource:
    """Lists and watches the MCS objects and reports what this cluster exports."""

    def __init__(
        self,
        access: KubeAccess,
        on_change: Callable[[LocalExports], None],
        on_problem: Callable[[SourceProblem], None] | None = None,
        timings: WatchTimings | None = None,
        rand: Callable[[], float] = random.random,
        on_vips: Callable[[dict[ServiceKey, tuple[str, ...]]], None] | None = None,
    ) -> None:
        self.access = access
        self.timings = timings or WatchTimings()
        self.state = WatchState(RESOURCES)
        self.origin = "kubernetes"
        self.problems: list[SourceProblem] = []
        self._on_change = on_change
        self._on_problem = on_problem if on_problem is not None else _log_problem
        self._rand = rand
        self._dirty = asyncio.Event()
        self._delivered: LocalExports | None = None
        self._failing: dict[str, str] = {}  # kind -> the reason reported for it
        self._reported: set[SourceProblem] = set()
        self._translation: list[SourceProblem] = []
        self._on_vips = on_vips
        self.vips: dict[ServiceKey, tuple[str, ...]] = {}

    async def run(self) -> None:
        """List and watch forever; cancel to stop. Raises KubernetesConfigError."""
        async with api_client(self.access, "meshd") as api:
            self.origin = str(api.configuration.host)
            calls = KubeCalls(api, self.timings.request_timeout_s)
            reflector = Reflector(
                calls,
                self.timings,
                self._dirty.set,
                self._failed,
                self._recovered,
                self._rand,
                log,
            )
            # The MCS kinds: their version is discovered before every full list.
            mcs = replace(reflector, prepare=lambda store: discover_version(calls, store, log))
            async with asyncio.TaskGroup() as group:
                for store in self.state.stores.values():
                    follower = mcs if store.resource.group == MCS_GROUP else reflector
                    group.create_task(follower.follow(store), name=f"watch {store.resource.plural}")
                group.create_task(self._publish_loop(), name="publish")

    # ------------------------------------------------------------------ publishing

    async def _publish_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -PUBLISH_INTERVAL_S
        while True:
            await self._dirty.wait()
            # Each publish translates every object: a stream of events (a writer creating
            # many objects, a rollout) costs one per PUBLISH_INTERVAL_S, not one per event.
            await asyncio.sleep(max(0.0, last + PUBLISH_INTERVAL_S - loop.time()))
            self._dirty.clear()
            if self.state.synced:
                last = loop.time()
                self.publish()

    def publish(self) -> None:
        """Translate what is held; deliver the exports if they changed."""
        exports, self._translation = translate(self.state.objects(self.origin))
        self._refresh_problems()
        if self._delivered is None or exports != self._delivered:
            if self._delivered is None:
                counts = ", ".join(
                    f"{len(s.objects)} {s.resource.title}" for s in self.state.stores.values()
                )
                log.info("first full list of every kind: %s", counts)
            self._delivered = exports
            self._on_change(exports)
        vips = vips_of(self.state.stores["Service"].objects.values())
        if vips != self.vips:
            self.vips = vips
            if self._on_vips is not None:
                self._on_vips(vips)

    def _failed(self, store: KindStore, reason: str) -> None:
        self._failing[store.resource.kind] = reason
        self._refresh_problems()

    def _recovered(self, store: KindStore) -> None:
        if self._failing.pop(store.resource.kind, None) is not None:
            if not self._failing:
                log.info("the API server answers again")
            self._refresh_problems()

    def _refresh_problems(self) -> None:
        """Make the current problems the translation's and the API failures; report new ones.

        A problem is reported once while it lasts, and again if it comes back later.
        """
        failures = dict.fromkeys(self._failing.values())
        current = self._translation + [SourceProblem(self.origin, r) for r in failures]
        fresh = [p for p in dict.fromkeys(current) if p not in self._reported]
        self.problems = current
        self._reported = set(current)
        for problem in fresh:
            self._on_problem(problem)


# ---------------------------------------------------------------------- helpers


async def discover_version(calls: KubeCalls, store: KindStore, log: logging.Logger) -> None:
    """Make ``store`` follow its MCS kind in the newest version the API server serves
    (``MCS_VERSIONS``: the upstream CRDs serve v1beta1 and v1alpha1, older ones v1alpha1
    only); raises ``WatchError`` when it serves none, as a list of it would fail."""
    resource = store.resource
    for version in MCS_VERSIONS:
        status, body = await calls.call("GET", f"/apis/{resource.group}/{version}")
        if status == 200 and _serves(body, resource.plural):
            api_version = f"{resource.group}/{version}"
            if api_version != resource.api_version:
                log.info("%s: the API server serves version %s", resource.title, version)
                store.resource = replace(resource, api_version=api_version)
            return
        if status not in (200, 404):
            raise WatchError(failure_text("discover", resource, status, body))
    message = f"not served in {' or '.join(MCS_VERSIONS)}"
    raise WatchError(
        failure_text("list", resource, 404, {"reason": "NotFound", "message": message})
    )


def _serves(body: Any, plural: str) -> bool:
    """True when an APIResourceList names ``plural``."""
    found = body.get("resources") if isinstance(body, dict) else None
    return isinstance(found, list) and any(
        isinstance(r, dict) and r.get("name") == plural for r in found
    )


def _log_problem(problem: SourceProblem) -> None:
    log.warning("%s", problem)

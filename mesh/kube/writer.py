"""Writes back what the MCS API expects, from the replica that holds the leader Lease.

Theory of operation
-------------------
Every replica of meshd in a cluster runs a ``KubeWriter`` next to its ``KubernetesSource``;
only the one whose ``LeaseKeeper`` holds the ``meshd-<cluster>`` Lease writes. Each writer:

- follows the ServiceImports of the cluster (list + watch, ``follow_kind``, in the MCS
  version the API serves); the ServiceExports, Services, EndpointSlices and Namespaces it
  reads from the source's own stores;
- while leading, runs a *pass* whenever something it plans from changed: the stores'
  resourceVersions, the clusterset's states (their stamps), its own imports, the routing
  policy's choices for answer mode clusterset-ip (the agent's planner), or leadership
  (polled every ``poll_s``, and at least every ``resync_s``). A pass translates the
  Services and ServiceExports (``translate_exports``: the verdict on every export), calls
  the pure ``mesh.kube.status.reconcile`` and makes the writes it returns, in order;
- checks ``is_leader()`` before every single write: a replica whose renewals fail past the
  renew deadline, or that finds another holder, stops writing at once, mid-pass;
- reads its own writes: what the API answered is laid over the watched objects
  (``Overlay``) until the watch shows it, so a pass never repeats a write it just made;
- on a 409 reads the object again (GET) and plans the next pass from that;
- logs a denied (403) or invalid (422) write once, with the object and the API's reason,
  counts every write (``WriteStats``: ``meshd_kube_writes_total{verb,resource,outcome}``),
  retries the failed pass after a backoff, and never stops the agent for it.

Nothing is written before the source has listed every kind and the imports are listed:
planning from a partial view would delete imports that exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mesh.kube.calls import (
    MERGE_PATCH,
    KubeCalls,
    KubeUnreachableError,
    WriteStats,
    api_client,
)
from mesh.kube.derived import Choices
from mesh.kube.election import LeaseTimings
from mesh.kube.lease import LeaseKeeper, lease_namespace, replica_identity
from mesh.kube.overlay import Overlay
from mesh.kube.plan import managed
from mesh.kube.reflector import WatchTimings, follow_kind
from mesh.kube.source import KubernetesSource, discover_version
from mesh.kube.status import MCS_API_VERSION, Derived, Plan, Write, local_exports, reconcile
from mesh.model import ClusterState, ServiceKey
from mesh.routing.modes import Answering
from mesh.sources.translate import ExportVerdict, translate_exports
from mesh.sources.watchstate import KindStore, Resource, backoff_delay

__all__ = ["IMPORTS", "PERMISSIONS", "KubeWriter", "WriterSettings"]

log = logging.getLogger("meshd.kubewriter")

IMPORTS = Resource("ServiceImport", MCS_API_VERSION, "serviceimports")
_GROUP = "multicluster.x-k8s.io"
_KINDS_READ = ("Namespace", "Service", "ServiceExport")
_METHODS = {"create": "POST", "update": "PUT", "patch_status": "PATCH", "delete": "DELETE"}
_RBAC_VERB = {"create": "create", "update": "update", "patch_status": "patch", "delete": "delete"}
# Where the derived objects of answer mode clusterset-ip are written.
_CORE = {"services": "v1", "endpointslices": "discovery.k8s.io/v1"}
# (API group, resource, verb) of every call the writer and the lease make; the RBAC
# manifests must grant them (leases: in meshd's namespace only).
PERMISSIONS: frozenset[tuple[str, str, str]] = frozenset(
    {(_GROUP, "serviceimports", v) for v in ("list", "watch", "get", "create", "update")}
    | {(_GROUP, "serviceimports", "delete"), (_GROUP, "serviceimports/status", "patch")}
    | {(_GROUP, "serviceexports", "get"), (_GROUP, "serviceexports/status", "patch")}
    | {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    # Answer mode clusterset-ip: the derived Service and EndpointSlices (and a read after a
    # conflict).
    | {(g, r, v) for g, r in (("", "services"), ("discovery.k8s.io", "endpointslices"))
       for v in ("get", "create", "update", "delete")}
)  # fmt: skip


@dataclass(frozen=True)
class WriterSettings:
    """Where the Lease lives and how often to look; every default says why."""

    lease_namespace: str = ""  # "": the pod's own namespace, else meshd-system
    lease: LeaseTimings = field(default_factory=LeaseTimings)
    # How often to look for a change to plan from: cheap (a few comparisons); a pass only
    # runs when something changed.
    poll_s: float = 0.25
    # A pass at least this often while leading, changed or not: repairs what someone else
    # changed behind a watch that missed it.
    resync_s: float = 60.0
    # Passes at most this often: a burst of changes costs one pass.
    min_interval_s: float = 0.2
    watch: WatchTimings = field(default_factory=WatchTimings)
    overlay_ttl_s: float = 30.0
    # The agent's default answer mode (--answer-mode), for what depends on it.
    answering: Answering = field(default_factory=lambda: Answering(vips=True))


class KubeWriter:
    def __init__(
        self,
        cluster_id: str,
        source: KubernetesSource,
        states: Callable[[], Iterable[ClusterState]],
        settings: WriterSettings | None = None,
        identity: str | None = None,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        ring_synced: Callable[[], bool] = lambda: True,
        planner: Choices | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        # The catalog holds the other clusters' exports only once the ring has synced: a
        # pass before that would delete the ServiceImports of every remote-only service.
        self.ring_synced = ring_synced
        # The routing policy's choices (the agent's planner), for answer mode clusterset-ip.
        self.planner = planner
        self.source = source
        self.states = states
        self.settings = settings or WriterSettings()
        self.stats = WriteStats()
        self.imports = KindStore(IMPORTS)
        self.keeper = LeaseKeeper(
            f"meshd-{cluster_id}",
            lease_namespace(self.settings.lease_namespace),
            identity or replica_identity(),
            self.settings.lease,
            self._leading_changed,
            wall,
            rand,
        )
        self.passes = 0
        self._wall, self._rand = wall, rand
        self._overlay: Overlay[tuple[str, ServiceKey]] = Overlay(self.settings.overlay_ttl_s)
        self._wake = asyncio.Event()
        self._reported: dict[tuple[str, str, ServiceKey], str] = {}
        self._calls: KubeCalls | None = None
        self._skipped: set[str] = set()
        self._verdicts: tuple[object, Mapping[ServiceKey, ExportVerdict]] = (None, {})

    def is_leader(self) -> bool:
        return self.keeper.is_leader()

    def poke(self) -> None:
        """Something changed: plan again soon (the writer also notices by itself)."""
        self._wake.set()

    async def run(self) -> None:
        """Hold the Lease, follow the imports and write while leading; cancel to stop."""
        async with api_client(self.source.access, f"meshd/{self.keeper.identity}") as api:
            calls = KubeCalls(api, self.settings.watch.request_timeout_s, self.stats)
            self._calls = calls
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.keeper.run(calls), name="lease")
                    group.create_task(
                        follow_kind(
                            calls,
                            self.imports,
                            self.settings.watch,
                            self.poke,
                            self._rand,
                            log,
                            lambda store: discover_version(calls, store, log),
                        ),
                        name="watch serviceimports",
                    )
                    group.create_task(self._pass_loop(), name="write-back")
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.keeper.release(), self.settings.lease.retry_period_s
                    )
                self._calls = None

    # ------------------------------------------------------------------ passes

    async def _pass_loop(self) -> None:
        loop = asyncio.get_running_loop()
        done: object = None
        last_pass, failures = -math.inf, 0
        while True:
            s = self.settings
            timeout = s.poll_s
            if failures:
                w = s.watch
                timeout = backoff_delay(
                    failures, w.backoff_initial_s, w.backoff_max_s, self._rand()
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            woke = self._wake.is_set()
            self._wake.clear()
            if not self.keeper.is_leader() or not self.ready:
                done = None
                continue
            fingerprint = self._fingerprint()
            due = failures > 0 or loop.time() - last_pass >= s.resync_s
            if fingerprint == done and not woke and not due:
                continue
            await asyncio.sleep(max(0.0, last_pass + s.min_interval_s - loop.time()))
            last_pass = loop.time()
            clean = await self.write_pass()
            done = fingerprint if clean else None
            failures = 0 if clean else failures + 1

    @property
    def ready(self) -> bool:
        """Everything a pass plans from has been listed once, and the ring has synced."""
        return (
            self.source.state.synced
            and self.imports.listed
            and self._calls is not None
            and self.ring_synced()
        )

    def _fingerprint(self) -> object:
        stores = self.source.state.stores
        planner = self.planner
        derived = planner is not None and bool(planner.selections)
        return (
            tuple(stores[kind].resource_version for kind in _KINDS_READ),
            self.imports.resource_version,
            tuple((s.cluster_id, s.stamp) for s in self.states()),
            len(self._overlay),
            planner.selections_version if planner is not None else 0,
            # Derived EndpointSlices: repaired when someone changes them (only followed
            # while some service answers in mode clusterset-ip).
            stores["EndpointSlice"].resource_version if derived else None,
        )

    def plan(self) -> Plan:
        """What the API should be told now (pure planning from the views held)."""
        now = asyncio.get_running_loop().time()
        stores = self.source.state.stores
        read_at = tuple(stores[kind].resource_version for kind in _KINDS_READ)
        if read_at != self._verdicts[0]:  # translate again only when what it reads changed
            objects = [("kubernetes", o) for k in _KINDS_READ for o in stores[k].objects.values()]
            self._verdicts = (read_at, translate_exports(objects).verdicts)
        verdicts = self._verdicts[1]
        exports = [
            seen
            for key, obj in stores["ServiceExport"].objects.items()
            if (seen := self._overlay.view(("serviceexports", ServiceKey(*key)), obj, now))
        ]
        imports: dict[ServiceKey, Mapping[str, Any]] = {}
        keys = {ServiceKey(*k) for k in self.imports.objects}
        keys |= {k for r, k in self._overlay.pending() if r == "serviceimports"}
        for key in keys:
            stored = self.imports.objects.get((key.namespace, key.name))
            seen = self._overlay.view(("serviceimports", key), stored, now)
            if seen is not None:
                imports[key] = seen
        namespaces = {
            name
            for (_, name), obj in stores["Namespace"].objects.items()
            if (obj.get("status") or {}).get("phase") != "Terminating"
        }
        derived = None
        if self.planner is not None:
            derived = Derived(
                self.planner.selections,
                self._held("services", stores["Service"], now),
                self._held("endpointslices", stores["EndpointSlice"], now),
            )
        return reconcile(
            self.cluster_id,
            local_exports(exports, verdicts),
            namespaces,
            self.states(),
            imports,
            self._wall(),
            self.settings.answering,
            self.imports.resource.api_version,
            derived,
        )

    def _held(self, resource: str, store: KindStore, now: float) -> dict[ServiceKey, Any]:
        """The objects of ``store`` as this writer should see them (its own writes too)."""
        held: dict[ServiceKey, Any] = {ServiceKey(*k): o for k, o in store.objects.items()}
        for kind, key in self._overlay.pending():
            if kind == resource:
                held.setdefault(key, None)
        for key in [k for k, o in held.items() if o is None or managed(o)]:
            seen = self._overlay.view((resource, key), held[key], now)
            if seen is None:
                del held[key]
            else:
                held[key] = seen
        return held

    async def write_pass(self) -> bool:
        """Plan and write; True when every write was made (or nothing was needed)."""
        calls = self._calls
        if calls is None:
            return False
        self.passes += 1
        plan = self.plan()
        for note in plan.skipped:
            if note not in self._skipped:
                log.warning("%s", note)
        self._skipped = set(plan.skipped)
        failed: set[tuple[str, ServiceKey]] = set()
        for write in plan.writes:
            if not self.keeper.is_leader():
                log.info("not the leader any more: %d planned writes not made", len(plan.writes))
                return False
            if (write.resource, write.key) in failed:
                continue
            if not await self._apply(calls, write):
                failed.add((write.resource, write.key))
        return not failed

    # ------------------------------------------------------------------ one write

    async def _apply(self, calls: KubeCalls, write: Write) -> bool:
        path = write.path(self._api_version(write.resource))
        body = write.body
        content_type = "application/json"
        if write.verb == "patch_status":
            content_type = MERGE_PATCH
        elif write.verb == "delete":
            body = {"apiVersion": "v1", "kind": "DeleteOptions", **write.body}
        method = _METHODS[write.verb]
        # A write must not land after our leadership could have ended.
        limit = max(0.1, min(self.settings.watch.request_timeout_s, self.keeper.time_left()))
        status, answer = await calls.write(
            _RBAC_VERB[write.verb], write.title, method, path, body, content_type, limit
        )
        now = asyncio.get_running_loop().time()
        entry = (write.resource, write.key)
        if 200 <= status < 300 or (status == 404 and write.verb == "delete"):
            log.info("%s", write.why)
            self._overlay.put(entry, None if write.verb == "delete" else answer, now)
            self._reported.pop((write.verb, write.resource, write.key), None)
            return True
        if status == 409 or status == 404:
            await self._read_again(calls, write, now)
        self._report(write, status, answer)
        return False

    async def _read_again(self, calls: KubeCalls, write: Write, now: float) -> None:
        """After a 409 (or a 404): plan the next pass from the object as it is now."""
        try:
            path = write.object_path(self._api_version(write.resource))
            status, answer = await calls.call("GET", path)
        except KubeUnreachableError:
            return
        entry = (write.resource, write.key)
        if status == 200 and isinstance(answer, dict):
            self._overlay.put(entry, answer, now)
        elif status == 404:
            self._overlay.put(entry, None, now)

    def _report(self, write: Write, status: int, answer: Any) -> None:
        message = answer.get("message") if isinstance(answer, dict) else None
        reason = answer.get("reason") if isinstance(answer, dict) else None
        text = (
            f"HTTP {status}"
            + (f" {reason}" if reason else "")
            + (f": {message}" if message else "")
        )
        hint = {403: " (RBAC does not grant it; see manifests/)", 422: " (invalid object)"}
        text += hint.get(status, "")
        key = (write.verb, write.resource, write.key)
        if self._reported.get(key) == text:
            return
        self._reported[key] = text
        level = logging.INFO if status == 409 else logging.WARNING
        log.log(level, "cannot %s %s %s: %s", _RBAC_VERB[write.verb], write.title, write.key, text)

    def _api_version(self, resource: str) -> str:
        """The group/version a write of ``resource`` goes to: as the API serves it."""
        if resource == "serviceexports":
            return self.source.state.stores["ServiceExport"].resource.api_version
        return _CORE.get(resource, self.imports.resource.api_version)

    def _leading_changed(self, leading: bool) -> None:
        if leading:
            self.poke()
        else:
            self._overlay = Overlay(self.settings.overlay_ttl_s)

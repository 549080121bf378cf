"""Holds the leader Lease of this cluster's meshd replicas: the adapter of ``mesh.kube.election``.

One ``LeaseKeeper`` per replica runs the election loop against the API server: every
retry period it asks the pure ``LeaderElection`` what to do (read the Lease, create it,
update it to renew or take over, or wait), does that call, and feeds the answer back:

- ``get``, then ``create`` (first time) or ``update`` (PUT with the resourceVersion read):
  exactly the verbs ``manifests/base/rbac.yaml`` grants on ``leases`` in meshd's namespace;
- 409 means another replica wrote first: read again, and follow whoever holds it now;
- any other failure (403, 5xx, no answer) is logged once while it lasts; a leader keeps
  trying until its renew deadline passes, then stops leading;
- every renewal request is cut off at the renew deadline, so a hanging API server cannot
  keep a stale leader writing; and ``is_leader()`` re-checks the deadline on every call.

The Lease also carries the cluster's drain (``meshd drain``) as the annotation
``meshd.io/drain``, where every replica reads it each retry period (``annotation``) and any
replica may set it (``annotate``: get, then update with the resourceVersion read, the same
verbs). Every write keeps the annotations it read, since a PUT replaces the whole object.

``on_change(leading)`` is called when this replica starts or stops leading. ``stop()``
releases the Lease (holder emptied, as client-go's ReleaseOnCancel) so that another replica
takes over at its next retry instead of a lease duration later.

Names: the Lease is ``meshd-<cluster id>`` in ``namespace``; the identity of a replica is
its host name (the pod name) and a random suffix, as client-go's examples make it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mesh.kube.calls import KubeCalls, KubeUnreachableError
from mesh.kube.election import Action, LeaderElection, LeaseRecord, LeaseTimings, lease_object

__all__ = [
    "POD_NAMESPACE_FILE",
    "LeaseKeeper",
    "LeaseWriteError",
    "lease_namespace",
    "replica_identity",
]

log = logging.getLogger("meshd.lease")
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "meshd-system"


class LeaseWriteError(Exception):
    """An annotation could not be written: the API refused it or could not be reached."""


def lease_namespace(configured: str = "", pod_file: Path = POD_NAMESPACE_FILE) -> str:
    """The namespace given, else the pod's own (service account file), else meshd-system."""
    if configured:
        return configured
    try:
        found = pod_file.read_text().strip()
    except OSError:
        found = ""
    return found or DEFAULT_NAMESPACE


def replica_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"


class LeaseKeeper:
    def __init__(
        self,
        name: str,
        namespace: str,
        identity: str,
        timings: LeaseTimings | None = None,
        on_change: Callable[[bool], None] | None = None,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name, self.namespace = name, namespace
        self.election = LeaderElection(identity, timings)
        self._on_change = on_change
        self._wall, self._rand = wall, rand
        self._calls: KubeCalls | None = None
        self._was_leading = False
        self._failing = ""

    @property
    def identity(self) -> str:
        return self.election.identity

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def is_leader(self) -> bool:
        """The gate of every write: true only within the renew deadline of a renewal."""
        now = asyncio.get_running_loop().time()
        leading = self.election.is_leader(now)
        if not leading and self._was_leading:
            self._changed(False)
        return leading

    def time_left(self) -> float:
        """Seconds of leadership left without a renewal (0 when not leading)."""
        return self.election.time_left(asyncio.get_running_loop().time())

    async def run(self, calls: KubeCalls) -> None:
        """The election loop; cancel to stop (then call ``release``)."""
        self._calls = calls
        loop = asyncio.get_running_loop()
        while True:
            await self.attempt(calls)
            now = loop.time()
            delay = self.election.next_attempt(now) - now
            if not self.election.leading:
                delay *= 1.0 + 0.2 * self._rand()  # client-go's jitter, for followers
            await asyncio.sleep(max(0.0, delay))

    async def attempt(self, calls: KubeCalls) -> None:
        """One round: read if needed, then create, renew, take over or wait."""
        loop = asyncio.get_running_loop()
        action, record = self.election.next_action(loop.time(), self._wall())
        if action is Action.READ:
            if not await self._read(calls):
                self.election.attempted(loop.time())
                self._note_leading()
                return
            action, record = self.election.next_action(loop.time(), self._wall())
        if action in (Action.CREATE, Action.UPDATE) and record is not None:
            await self._write(calls, action, record)
        self.election.attempted(loop.time())
        self._note_leading()

    async def release(self) -> None:
        """Give the Lease up if we hold it (a clean shutdown)."""
        record = self.election.release(self._wall())
        calls = self._calls
        if record is not None and calls is not None:
            status, _ = await calls.write(
                "update",
                "leases",
                "PUT",
                f"{self.path}/{self.name}",
                lease_object(self.name, self.namespace, record),
                timeout_s=self.election.timings.retry_period_s,
            )
            log.info("released the lease %s/%s (HTTP %s)", self.namespace, self.name, status)
        self.election.released()
        self._note_leading()

    def annotation(self, key: str) -> str | None:
        """The annotation ``key`` as last read or written (None: absent, or not read yet)."""
        record = self.election.record
        return None if record is None else dict(record.annotations).get(key)

    async def annotate(self, key: str, value: str, attempts: int = 5) -> None:
        """Set one annotation of the Lease; a conflict reads again. ``LeaseWriteError``
        when that fails."""
        calls = self._calls
        if calls is None:
            raise LeaseWriteError("not connected to the API server yet")
        path = f"{self.path}/{self.name}"
        for _ in range(attempts):
            try:
                status, body = await calls.call("GET", path)
            except KubeUnreachableError as exc:
                raise LeaseWriteError(f"cannot reach the API server: {exc}") from None
            if status == 404:  # the election creates it within a retry period of starting
                raise LeaseWriteError("there is no Lease yet; try again in a few seconds")
            if status != 200 or not isinstance(body, dict):
                raise LeaseWriteError(f"cannot read the lease: HTTP {status}: {_message(body)}")
            record = LeaseRecord.from_object(body)
            notes = dict(record.annotations) | {key: value}
            record = replace(record, annotations=tuple(sorted(notes.items())))
            obj = lease_object(self.name, self.namespace, record)
            status, answer = await calls.write("update", "leases", "PUT", path, obj)
            if status in (200, 201) and isinstance(answer, dict):
                now = asyncio.get_running_loop().time()
                self.election.observe(LeaseRecord.from_object(answer), now)
                return
            if status != 409:
                raise LeaseWriteError(f"cannot write the lease: HTTP {status}: {_message(answer)}")
        raise LeaseWriteError(f"the lease kept changing under {attempts} attempts")

    # ------------------------------------------------------------------ calls

    async def _read(self, calls: KubeCalls) -> bool:
        try:
            status, body = await calls.call("GET", f"{self.path}/{self.name}")
        except KubeUnreachableError as exc:
            self._problem(f"cannot read the lease: cannot reach the API server: {exc}")
            self.election.check(asyncio.get_running_loop().time())
            return False
        now = asyncio.get_running_loop().time()
        if status == 404:
            self.election.observe(None, now)
            return True
        if status != 200 or not isinstance(body, dict):
            self._problem(f"cannot read the lease: HTTP {status}: {_message(body)}")
            self.election.check(now)
            return False
        self.election.observe(LeaseRecord.from_object(body), now)
        return True

    async def _write(self, calls: KubeCalls, action: Action, record: LeaseRecord) -> None:
        loop = asyncio.get_running_loop()
        timings = self.election.timings
        # A renewal must not outlive the renew deadline: past it we are not the leader.
        left = self.election.renewed_at + timings.renew_deadline_s - loop.time()
        timeout = max(0.1, min(left, timings.renew_deadline_s)) if self.election.leading else None
        body = lease_object(self.name, self.namespace, record)
        sent = loop.time()
        if action is Action.CREATE:
            status, answer = await calls.write("create", "leases", "POST", self.path, body)
        else:
            path = f"{self.path}/{self.name}"
            status, answer = await calls.write(
                "update", "leases", "PUT", path, body, timeout_s=timeout
            )
        now = loop.time()
        if status in (200, 201) and isinstance(answer, dict):
            self.election.written(LeaseRecord.from_object(answer), sent)
            self._failing = ""
            return
        conflict = status == 409
        if not conflict:
            self._problem(f"cannot write the lease: HTTP {status}: {_message(answer)}")
        self.election.failed(now, conflict)

    # ------------------------------------------------------------------ reporting

    def _note_leading(self) -> None:
        leading = self.election.is_leader(asyncio.get_running_loop().time())
        if leading != self._was_leading:
            self._changed(leading)

    def _changed(self, leading: bool) -> None:
        self._was_leading = leading
        verb = "leads" if leading else "no longer leads"
        log.info("%s %s: lease %s/%s", self.identity, verb, self.namespace, self.name)
        if self._on_change is not None:
            self._on_change(leading)

    def _problem(self, text: str) -> None:
        if text != self._failing:
            log.warning("%s (lease %s/%s)", text, self.namespace, self.name)
            self._failing = text


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or "")
    return str(body)[:200]

"""What this replica announces about itself in its signed cluster record: its drain and the
DNS and admin addresses a drill reaches it at (the adapter around ``mesh.routing.drains``).

A drain (``meshd drain``, ``POST /drain``) is kept before it is announced, where every
replica and a new pod find it again:

- with ``--state-dir``, in ``drain.json`` there (written atomically), read at start;
- with the Kubernetes API source, also in the annotation ``meshd.io/drain`` of the
  cluster's meshd Lease (``mesh.kube.lease``), which every replica reads each retry period;
- without either, it lasts until the agent stops (the answer says so).

A decision is a ``Drain`` with the wall-clock time it was made; a replica adopts a newer
one that a sibling announces on the ring or that the Lease holds (``to_adopt``), so the
replicas of a cluster converge on the operator's last word.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.address import split_host_port
from mesh.daemon.hostinfo import default_dns_advertise
from mesh.daemon.settings import AgentSettings
from mesh.model import MAX_DRAIN_REASON, NOT_DRAINED, Drain
from mesh.ring.catalog import Catalog, Change
from mesh.routing.drains import siblings, to_adopt

if TYPE_CHECKING:
    from mesh.kube.lease import LeaseKeeper

log = logging.getLogger("meshd.drain")
DRAIN_FILE = "drain.json"
LEASE_ANNOTATION = "meshd.io/drain"


class DrainNotKeptError(Exception):
    """The drain could not be kept where it must be: it is not announced either."""


def drain_to_json(drain: Drain) -> str:
    return json.dumps({"drained": drain.drained, "reason": drain.reason, "at": drain.at})


def drain_from_json(text: str) -> Drain | None:
    """A kept decision, or None for text that is not one (never raises)."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    drained, reason, at = data.get("drained"), data.get("reason", ""), data.get("at")
    if not isinstance(drained, bool) or not isinstance(reason, str):
        return None
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at) or at < 0:
        return None
    return Drain(drained, reason[:MAX_DRAIN_REASON], float(at))


def load_drain(state_dir: Path | None) -> Drain:
    if state_dir is None:
        return NOT_DRAINED
    try:
        text = (state_dir / DRAIN_FILE).read_text(encoding="utf-8")
    except OSError:
        return NOT_DRAINED
    found = drain_from_json(text)
    if found is None:
        log.warning("%s: not a drain record; starting undrained", state_dir / DRAIN_FILE)
    return found or NOT_DRAINED


def save_drain(state_dir: Path, drain: Drain) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / DRAIN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(drain_to_json(drain), encoding="utf-8")
    os.replace(tmp, path)


def admin_address(settings: AgentSettings, gossip: str, port: int | None = None) -> str:
    """``--admin-advertise``, else its default (``default_dns_advertise``'s rule with the
    admin listen address; ``port``: the one bound); "" without an admin server, or while
    its port is 0 and not bound yet."""
    if settings.admin_advertise:
        return settings.admin_advertise
    if not settings.admin_listen:
        return ""
    host, listen_port = split_host_port(settings.admin_listen)
    port = listen_port if port is None else port
    if not port:
        return ""
    listen = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
    return default_dns_advertise(listen, settings.advertise, gossip)


class Announcer:
    """This replica's announcements; ``publish`` takes the catalog's change (the agent
    seals it into records and rebuilds)."""

    def __init__(
        self,
        catalog: Catalog,
        settings: AgentSettings,
        dns_address: str,
        publish: Callable[[Change], None],
    ) -> None:
        self.catalog = catalog
        self.state_dir = settings.state_dir
        self.dns_address = dns_address
        # Known before the admin server binds unless its port is 0: the first record has it,
        # and a restarted agent's new generation is not followed at once by another version.
        self.admin_address = admin_address(settings, settings.advertise or settings.grpc_listen)
        self.drain = load_drain(settings.state_dir)
        self.lease: LeaseKeeper | None = None  # with the Kubernetes API source
        self._publish = publish

    def announce(self) -> None:
        change = self.catalog.announce(self.drain, self.dns_address, self.admin_address)
        if change:
            self._publish(change)

    def advertise_admin(self, address: str) -> None:
        self.admin_address = address
        self.announce()

    @property
    def kept_in(self) -> list[str]:
        """Where a decision is kept: ``state-dir``, ``lease``; empty: only in memory."""
        places = ["state-dir"] if self.state_dir is not None else []
        return places + (["lease"] if self.lease is not None else [])

    async def set(self, drained: bool, reason: str, wall: float | None = None) -> Drain:
        """The operator's decision: keep it (``DrainNotKeptError`` when that fails, and
        nothing changes), then announce it."""
        drain = Drain(drained, reason[:MAX_DRAIN_REASON] if drained else "", wall or time.time())
        self._keep(drain, strict=True)
        if self.lease is not None:
            try:
                await self.lease.annotate(LEASE_ANNOTATION, drain_to_json(drain))
            except Exception as exc:  # the API's refusal or absence, said to the operator
                self._keep(self.drain, strict=False)  # as it was
                raise DrainNotKeptError(f"cannot write the Lease annotation: {exc}") from None
        log.warning(
            "cluster %s %s%s",
            self.catalog.local_id,
            "drained: it takes no traffic" if drained else "undrained: it takes traffic again",
            f" ({drain.reason})" if drain.reason else "",
        )
        self.drain = drain
        self.announce()
        return drain

    def adopt(self) -> None:
        """Take a newer decision from a sibling replica's record or from the Lease."""
        seen = siblings(self.catalog.local_id, self.catalog.states())
        if self.lease is not None:
            text = self.lease.annotation(LEASE_ANNOTATION)
            kept = drain_from_json(text) if text is not None else None
            seen += [kept] if kept is not None else []
        newer = to_adopt(self.drain, seen)
        if newer is None:
            return
        log.info(
            "cluster %s: %s, as a sibling replica or the Lease says",
            self.catalog.local_id,
            "drained" if newer.drained else "undrained",
        )
        self._keep(newer, strict=False)
        self.drain = newer
        self.announce()

    def _keep(self, drain: Drain, strict: bool) -> None:
        if self.state_dir is None:
            return
        try:
            save_drain(self.state_dir, drain)
        except OSError as exc:
            if strict:
                where = self.state_dir / DRAIN_FILE
                raise DrainNotKeptError(f"cannot write {where}: {exc}") from None
            log.warning("cannot keep the drain in %s: %s", self.state_dir, exc)

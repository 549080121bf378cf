"""One holder's copy of one origin's records (``OriginLog``), and the record types.

A copy is a map from slot (a service, or ``None`` for the cluster's own record) to the
newest record held for it, plus the same records in ascending version so that "every
record above version v" is a slice, the running count and set hash of the live records
(checked against the origin's ``Head``), the tombstone floor, and ``progress``: every
record of the generation up to it is held or replaced.

A record's set-hash term (``Record.weight``, SHA-256 of its body) is not held: the
opener computes it once (it is also the digest a signed batch covers) and hands it to
``put`` with the record; only a record replaced or purged later opens its seal again for
it. That saves about 60 octets per record held.

A record covered by a signed batch of its origin (``mesh.wire.record_codec``) holds the
sealed batch's bytes by reference (``Record.batch``): records of one batch share one
bytes object, which lives as long as a held record (a tombstone included) refers to it,
and goes to peers with those records, so a third agent verifies them too.

A live service record, most of what a copy holds, is held as a ``ServiceRecord``: its
version and service (its slot is its service's key), and its sealed bytes and batch as
``mesh.wire.sealed_record`` keeps them; it reads and compares as the ``Record`` of those
values.

The rules for what a copy takes and who gets what are in ``mesh.ring.records``; this module
only keeps a copy consistent with itself, and holds the types the store hands in and out
(``Chunk`` in, ``Applied`` and ``OutChunk`` out, ``StoreStats``).

Pure: no IO, no clock (tombstone expiry takes ``now``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from mesh.model import NOT_DRAINED, ClusterId, ClusterState, Drain, ExportedService, ServiceKey

HASH_MODULUS = 1 << 256
Slot = ServiceKey | None  # None: the cluster's own record
Origin = tuple[ClusterId, str]


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    region: str
    zone: str
    namespaces: frozenset[str]
    drain: Drain = NOT_DRAINED
    dns_address: str = ""
    admin_address: str = ""


NO_INFO = ClusterInfo("", "", frozenset())


@dataclass(frozen=True, slots=True)
class Record:
    """One record as held: decoded, with the sealed bytes it arrived in (forwarded as is)."""

    version: int
    slot: Slot
    service: ExportedService | None = None  # a live service record
    info: ClusterInfo | None = None  # the cluster record
    sealed: bytes = b""  # a serialized ``Sealed`` (mesh/wire/v1)
    since: float = 0.0  # a tombstone: when this holder took it (its expiry clock)
    batch: bytes = b""  # the serialized ``Sealed`` batch that covers it (shared), if any

    @property
    def live(self) -> bool:
        return self.service is not None or self.info is not None

    @property
    def weight(self) -> int:
        """SHA-256 of the record's body as an integer: its set-hash term. Only a record that
        can open its seal knows it (``mesh.wire.record_codec.SealedRecord``, which every live
        record is); tombstones never need it."""
        raise TypeError(f"record {self.version} cannot open its seal")


class ServiceRecord:
    """A live service record, the kind a holder holds most of, held compactly: its version
    and service in two slots, and its sealed bytes and batch as its kind keeps them
    (``mesh.wire.sealed_record``: the bytes as they came, or only what they cannot be made
    again from). Its slot is its service's key; it is live, with no cluster info and no
    tombstone time. Reads as a ``Record`` of those values does, and equals one; immutable."""

    __slots__ = ("service", "version")
    version: int
    service: ExportedService
    info: ClusterInfo | None = None
    since: float = 0.0
    live = True

    def __init__(self, version: int, service: ExportedService) -> None:
        set_version(self, version)
        set_service(self, service)

    @property
    def slot(self) -> Slot:
        return self.service.key

    @property
    def sealed(self) -> bytes:
        """The serialized ``Sealed`` it arrived in (forwarded as is)."""
        raise NotImplementedError

    @property
    def batch(self) -> bytes:
        """The sealed batch that covers it, b"" for none."""
        raise NotImplementedError

    @property
    def weight(self) -> int:
        """As ``Record.weight``: only a subclass that can open its seal knows it."""
        raise TypeError(f"record {self.version} cannot open its seal")

    def _values(self) -> tuple[object, ...]:
        return (
            self.version,
            self.slot,
            self.service,
            self.info,
            self.sealed,
            self.since,
            self.batch,
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ServiceRecord | Record):
            return self._values() == _values_of(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a record is immutable: cannot set {name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r}, slot={self.slot!r})"


# The slots' own setters (for subclasses that set them faster than through __init__).
set_version, set_service = (ServiceRecord.__dict__[name].__set__ for name in ("version", "service"))
Held = Record | ServiceRecord  # a record as a copy holds it


def _values_of(record: Held) -> tuple[object, ...]:
    return (
        record.version,
        record.slot,
        record.service,
        record.info,
        record.sealed,
        record.since,
        record.batch,
    )


@dataclass(frozen=True, slots=True)
class Head:
    version: int
    live: int
    set_hash: int
    sealed: bytes = b""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A decoded, verified ``OriginChunk``: records of one origin following ``from_version``."""

    cluster_id: ClusterId
    replica: str
    generation: int
    from_version: int
    reset: bool
    records: tuple[Held, ...]
    head: Head | None = None
    certificate: bytes = b""
    target: int = 0  # a reset: the version of the sender's copy it is a snapshot of
    direct: bool = False  # sent by its origin itself (``mesh.ring.records``: its word wins)
    weights: tuple[int, ...] = ()  # the records' set-hash terms, in order (empty: unknown)

    @property
    def origin(self) -> Origin:
        return (self.cluster_id, self.replica)


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a chunk did. ``state`` is set when the copy answers use changed: the
    new state of that origin, with ``slots`` the records that changed (``None`` in it for
    the cluster record; ``everything`` when a copy was swapped in whole)."""

    taken: int = 0
    state: ClusterState | None = None
    slots: frozenset[Slot] = frozenset()
    everything: bool = False
    dropped: str = ""  # why the chunk was not used ("" when it was): a counter label
    forgot: tuple[Origin, ...] = ()  # copies forgotten to make room (``origin_room``)


class OriginLog:
    """One holder's copy of one origin's records (see the module docstring)."""

    def __init__(self, cluster_id: ClusterId, replica: str, generation: int) -> None:
        self.cluster_id = cluster_id
        self.replica = replica
        self.restart(generation)

    def restart(self, generation: int) -> None:
        """Empty, at ``generation`` (an origin that starts over, e.g. with a new key)."""
        self.generation = generation
        self.records: dict[Slot, Held] = {}
        self._ascending: list[Held] = []  # the held records, by version
        self.progress = 0
        self.floor = 0
        self.head: Head | None = None
        self.live = 0
        self.set_hash = 0
        self.broken = False  # failed its head check: ask for a reset
        self.target = 0  # a copy built aside: the version of the snapshot it is built from
        self.from_origin = False  # built aside from its origin's own reset: its word wins
        self.certificate = b""
        self._state: ClusterState | None = None

    @property
    def origin(self) -> Origin:
        return (self.cluster_id, self.replica)

    @property
    def complete(self) -> bool:
        return self.head is not None and self.progress >= self.head.version and not self.broken

    def put(self, record: Held, weight: int | None = None) -> bool:
        """Hold ``record`` unless a newer one of its slot is held. True when taken.
        ``weight``: its set-hash term when the caller has it (else read from its seal)."""
        slot, records = record.slot, self.records
        held = records.get(slot)
        if held is not None:
            if held.version >= record.version:
                return False
            self._drop(held)
        records[slot] = record
        ascending = self._ascending
        if not ascending or ascending[-1].version < record.version:
            ascending.append(record)  # the usual case: records come in ascending
        else:
            bisect.insort(ascending, record, key=_version)
        if record.live:
            self.live += 1
            term = record.weight if weight is None else weight
            self.set_hash = (self.set_hash + term) % HASH_MODULUS
        self._state = None
        return True

    def put_all(
        self, records: Sequence[Held], weights: Sequence[int | None], above: int, since: float
    ) -> list[Slot]:
        """``put`` each of ``records`` (with its set-hash term in ``weights``, None if
        unknown) whose version is above ``above``, a tombstone taken at ``since``
        (``Record.since``); the slots taken, in order. One call for a chunk's run of records:
        the count, set hash and cached state are updated once, and a run in ascending
        version (every chunk's: ``mesh.wire.record_codec`` refuses any other) past the
        newest record held is appended, never bisected. Any other order, a record of a slot
        held, or a tombstone, is taken exactly as ``put`` takes it."""
        held_records, ascending = self.records, self._ascending
        top = ascending[-1].version if ascending else 0
        taken: list[Slot] = []
        live = 0
        terms = 0  # the live records' terms, summed: reduced modulo 2^256 once
        for record, weight in zip(records, weights, strict=True):
            version = record.version
            if version <= above:
                continue  # held, or superseded (perhaps by a tombstone purged since)
            if not record.live:
                record = Record(
                    version, record.slot, sealed=record.sealed, since=since, batch=record.batch
                )
            slot = record.slot
            if weight is None:  # (its term before anything changes: one that cannot open
                held = held_records.get(slot)  # its seal raises, if it would be taken)
                if held is not None and held.version >= version:
                    continue
                weight = record.weight if record.live else 0
            count = len(held_records)
            held = held_records.setdefault(slot, record)  # (one lookup for a new slot)
            if len(held_records) == count:  # the slot was held (perhaps by this very record)
                if held.version >= version:
                    continue
                self._drop(held)
                top = ascending[-1].version if ascending else 0
                held_records[slot] = record
            if version > top:
                ascending.append(record)
                top = version
            else:
                bisect.insort(ascending, record, key=_version)
            if record.live:
                live += 1
                terms += weight
            taken.append(slot)
        if taken:
            self.live += live
            self.set_hash = (self.set_hash + terms) % HASH_MODULUS
            self._state = None
        return taken

    def _drop(self, record: Held) -> None:
        index = bisect.bisect_left(self._ascending, record.version, key=_version)
        del self._ascending[index]
        if record.live:
            self.live -= 1
            self.set_hash = (self.set_hash - record.weight) % HASH_MODULUS

    def since(self, version: int, *, live_only: bool = False) -> Iterator[Held]:
        """Held records above ``version``, ascending."""
        start = bisect.bisect_right(self._ascending, version, key=_version)
        for record in self._ascending[start:]:
            if record.live or not live_only:
                yield record

    def expire(self, now: float, ttl: float) -> int:
        """Purge tombstones taken ``ttl`` ago or earlier; raises the floor. Returns how many."""
        old = [r for r in self.records.values() if not r.live and r.since + ttl <= now]
        for record in old:
            self._drop(record)
            del self.records[record.slot]
            self.floor = max(self.floor, record.version)
        return len(old)

    def checks_out(self) -> bool:
        """True when the records held match the origin's head (count and set hash)."""
        head = self.head
        return head is not None and head.live == self.live and head.set_hash == self.set_hash

    def state(self) -> ClusterState:
        """The records as the model's ``ClusterState`` (cached until the next change)."""
        if self._state is None:
            held = self.records.get(None)
            info = (held.info if held is not None else None) or NO_INFO
            services = {
                slot: r.service
                for slot, r in self.records.items()
                if slot is not None and r.service is not None
            }
            self._state = ClusterState(
                self.cluster_id,
                self.generation,
                self.progress,
                info.region,
                info.zone,
                info.namespaces,
                services,
                self.replica,
                info.drain,
                info.dns_address,
                info.admin_address,
            )
        return self._state


def _version(record: Held) -> int:
    return record.version


CHUNK_OVERHEAD = 16  # bytes a record adds to a chunk beyond its own (tag, length)


@dataclass(frozen=True, slots=True)
class OutChunk:
    """What to send for one origin: sealed records ascending, and its head when reached."""

    cluster_id: ClusterId
    replica: str
    generation: int
    from_version: int
    reset: bool
    records: tuple[bytes, ...]
    head: bytes = b""
    certificate: bytes = b""
    target: int = 0
    batches: tuple[bytes, ...] = ()  # the sealed batches the records name, each once

    def size(self) -> int:
        carried = (*self.records, *self.batches)
        return sum(len(r) + CHUNK_OVERHEAD for r in carried) + len(self.head) + 64


@dataclass(slots=True)
class StoreStats:
    taken: int = 0  # records taken
    swapped: int = 0  # copies built aside and swapped in (resets, new generations)
    expired: int = 0  # tombstones purged
    dropped: dict[str, int] = field(default_factory=dict)  # chunks not used, by reason

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

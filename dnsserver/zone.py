"""The zone: every answer of the zone, encoded when data changes, looked up per query.

Theory of operation. ``Zone.table`` maps a lower-case wire name to its answers by query
type, an ``answer.TypeTable`` (a tuple indexed by ``answer.TYPE_SLOTS``: a dict per name
would cost about 220 octets, most of a small service's answers), or, for the names of a
plain ClusterSetIP service whose answers are never cut (most of a large zone), one
``bytes`` holding all of them (``dnsserver.nameblob``: about 300 octets less per service),
whose rotation counters are in ``turns``; a ``_<port>._<proto>`` name whose SRV answer is
the service's own maps to the service's blob. Every name that has
records is in it, and the zone's own empty non-terminals (``svc.<zone>``,
``<ns>.svc.<zone>``, ``dns.<zone>``), which map to the empty table (all of them to one
``EMPTY_TYPES``): a missing type is NODATA. The empty non-terminals below a service
(``_tcp.<svc>...``, ``<cluster>.<svc>...``; a ClusterSetIP service with a named port has
one, and its key and entry cost about 120 octets) are not in the table: a name that is not
is looked for among the names its service owns (``empty_nonterminal``: its ancestors looked
up in ``_services``, one dict lookup per label, then the name in the service's shape), and
is NODATA if found there, else NXDOMAIN. Only a query for a name not in the table pays that
walk (the C fast path hands those to ``query.respond`` anyway); no name is ever parsed
otherwise.

Updates are per service: ``set_service`` encodes one service's names (``plainblob.py``
for the commonest, in one call, put in the table as they come: ``_set_plain``;
``plain.py`` for the common; else ``records.py``) and swaps them into the table, so the
cost of a change does not grow with the size of the zone. The only names shared between
services are the ``<ns>.svc.<zone>`` empty non-terminals, kept alive by a reference count.
The SOA serial changes with every update, which re-encodes the three negative answers and
the apex SOA: constant work.

Nothing in a service's records can make an update raise: ``records.encode_service`` leaves
out what cannot be encoded and says what (``records.Skipped``). The zone keeps, per
service, what is left out now; what starts being left out is counted once in ``skipped``
(by reason, for ``meshd_zone_skipped_records_total``) and handed to ``on_skipped`` (by
default a log line per service and reason), so a service rebuilt a thousand times with the
same problem is reported once, and again only after it was fixed. A bug of ours while
encoding one service leaves that service out (reason ``internal``) rather than stopping
the agent.

The zone is mutated in place by the event loop thread that also answers queries, and every
update is one synchronous call, so a query sees a service either before or after a change,
never half of it.

Names follow the Multi-Cluster Services DNS specification (KEP-1645 ``specification.md``),
with CoreDNS's conventions where it is silent: see ``records.py``. ANY gets one RRset of the
name (RFC 8482), never the whole node. Negative answers carry the
SOA in the authority section, its MINIMUM being the TTL (RFC 2308).

The apex NS (and the SOA MNAME) is ``ns.dns.<zone>``, a name inside the zone, so the zone
must give it an address (RFC 1912 section 2.3): with ``ns_address`` (the server's advertised
address) it answers A or AAAA with it, the apex NS answer carries it as glue in the
additional section, and ``dns.<zone>`` is an empty non-terminal. Without, as before: the
target has no address.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable

from dnsserver import nameblob, plainblob, wire
from dnsserver.answer import EMPTY_TYPES, Answer, answer_for, type_table
from dnsserver.plain import encode_plain
from dnsserver.records import (
    DNS_SCHEMA_VERSION,
    SKIP_REASONS,
    Encoded,
    HeadlessEndpoint,
    ServiceRecords,
    Skipped,
    answer_any,
    encode_service,
    service_wire_name,
)

DEFAULT_TTL_S = 5
# Shapes of services' names kept for sharing (``Zone._services``): a zone has a few shapes
# of ClusterSetIP service (by its named ports) and a shape per headless service.
MAX_SHAPES = 1024

__all__ = [
    "DEFAULT_TTL_S",
    "HeadlessEndpoint",
    "ServiceRecords",
    "Skipped",
    "Zone",
    "build_zone",
    "log_skipped",
]

log = logging.getLogger("meshd.dns")

# Told what of a service ("namespace/name") starts being left out of the answers.
SkipReport = Callable[[str, list[Skipped]], None]


def log_skipped(service: str, fresh: list[Skipped]) -> None:
    """One warning per reason, with how many and the first of them."""
    by_reason: dict[str, list[Skipped]] = {}
    for skipped in fresh:
        by_reason.setdefault(skipped.reason, []).append(skipped)
    for reason, items in by_reason.items():
        first = items[0]
        detail = f" ({first.detail})" if first.detail else ""
        log.warning(
            "zone: %s: %d record(s) left out of the answers (%s), e.g. %s%s",
            service,
            len(items),
            reason,
            first.what,
            detail,
        )


class Zone:
    # Slots: the UDP reader (``_fastpath_batch.c``) reads ``table``, ``nodata``, ``synced``,
    # ``nxdomain``/``servfail`` and ``turns`` at every wakeup, a slot without a dict lookup.
    # fmt: off
    __slots__ = (
        "_apex", "_namespace_refs", "_services", "_shapes", "_skipped_now", "_strays",
        "nodata", "ns_address", "nxdomain", "on_skipped", "origin", "origin_wire", "serial",
        "servfail", "skipped", "synced", "table", "ttl", "turns",
    )
    # fmt: on

    def __init__(
        self,
        origin: str,
        *,
        serial: int,
        ttl: int = DEFAULT_TTL_S,
        ns_address: str | None = None,
        on_skipped: SkipReport | None = log_skipped,
    ) -> None:
        """``ns_address``: the IP address of the name server ``ns.dns.<origin>`` (ValueError
        if it is not one); None leaves that name without an address. ``on_skipped``: told
        what starts being left out (None: nobody, as in a DNS worker process, whose agent
        reports the same)."""
        self.origin = origin.rstrip(".").lower()
        self.origin_wire = wire.encode_name(self.origin)
        self.ttl = ttl
        self.ns_address = ns_address
        self.synced = False
        self.table: dict[bytes, nameblob.Answers] = {}
        self.turns = nameblob.Turns()  # the rotation counters of the table's blobs
        self._apex: dict[int, Answer] = {}
        # Per service, by its own wire name (the table's key object, so the key costs
        # nothing): every name it owns, as the labels before its own name (b"" for its
        # own). Its ``<ns>.svc.<zone>`` name is its own name less the first label. (A
        # (namespace, name) key and a pair per service cost about 110 octets more, a tenth
        # of a small service's answers.) Services of one shape (``_http._tcp`` and
        # ``_tcp`` below their name: most of a zone) share one tuple of prefixes, from
        # ``_shapes`` (at most ``MAX_SHAPES``: a headless service's shape is its own).
        self._services: dict[bytes, tuple[bytes, ...]] = {}
        self._shapes: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}
        self._strays: dict[bytes, tuple[bytes, ...]] = {}  # see ``set_service``
        self._namespace_refs: dict[bytes, int] = {}
        # What started being left out, by reason (never goes down), and what is now.
        self.skipped: dict[str, int] = {}
        self._skipped_now: dict[tuple[str, str], frozenset[Skipped]] = {}
        self.on_skipped = on_skipped
        self._static_names()
        self.set_serial(serial)

    # --- content -------------------------------------------------------------------------

    def _static_names(self) -> None:
        version = wire.encode_name(f"dns-version.{self.origin}")
        record = wire.rr(
            wire.POINTER_TO_QNAME, wire.TYPE_TXT, self.ttl, wire.rdata_txt(DNS_SCHEMA_VERSION)
        )
        version_types = {wire.TYPE_TXT: Answer.of(wire.RCODE_NOERROR, [record])}
        answer_any(version_types)
        self.table[version] = type_table(version_types)
        ns_target = wire.encode_name(f"ns.dns.{self.origin}")
        ns = wire.rr(wire.POINTER_TO_QNAME, wire.TYPE_NS, self.ttl, ns_target)
        glue: list[bytes] = []
        if self.ns_address is not None:
            rtype, packed = wire.rdata_address(self.ns_address)
            record = wire.rr(wire.POINTER_TO_QNAME, rtype, self.ttl, packed)
            address = {rtype: Answer.of(wire.RCODE_NOERROR, [record])}
            answer_any(address)
            self.table[ns_target] = type_table(address)
            self.table[wire.encode_name(f"dns.{self.origin}")] = EMPTY_TYPES
            glue.append(wire.rr(ns_target, rtype, self.ttl, packed))
        self._apex[wire.TYPE_NS] = Answer.of(wire.RCODE_NOERROR, [ns], additional=glue)
        self.table[wire.encode_name(f"svc.{self.origin}")] = EMPTY_TYPES

    def set_serial(self, serial: int) -> None:
        """A new SOA serial (RFC 1982 arithmetic: callers only move it forward)."""
        self.serial = serial & 0xFFFFFFFF
        rdata = wire.rdata_soa(
            f"ns.dns.{self.origin}",
            f"hostmaster.{self.origin}",
            self.serial,
            7200,
            1800,
            86400,
            self.ttl,
        )
        soa = wire.rr(self.origin_wire, wire.TYPE_SOA, self.ttl, rdata)
        self.nxdomain = Answer.of(wire.RCODE_NXDOMAIN, [], [soa])
        self.nodata = Answer.of(wire.RCODE_NOERROR, [], [soa])
        self.servfail = Answer.of(wire.RCODE_SERVFAIL, [])
        apex_soa = wire.rr(wire.POINTER_TO_QNAME, wire.TYPE_SOA, self.ttl, rdata)
        self._apex[wire.TYPE_SOA] = Answer.of(wire.RCODE_NOERROR, [apex_soa])
        answer_any(self._apex)
        self.table[self.origin_wire] = type_table(self._apex)

    def set_service(self, namespace: str, name: str, records: ServiceRecords | None) -> None:
        """Replace what the zone says about one service (None: it no longer exists).
        Never raises for anything in ``records`` (see the module docstring)."""
        if records is not None and self._set_plain(namespace, name, records):
            return
        key = (namespace, name)
        encoded = self._encode(records) if records is not None else None
        if (
            encoded is not None
            and encoded.service_name
            and records is not None
            and (records.namespace, records.name) == key
        ):
            own = encoded.service_name  # the same name: not encoded twice
        else:
            try:
                own = service_wire_name(namespace, name, self.origin_wire)
            except wire.NameEncodingError:
                own = b""  # it cannot have names: nothing to take out (encoding says why)
        self._take_out(own)
        self._note_skipped(key, encoded.skipped if encoded is not None else [])
        if encoded is None or not encoded.names:
            return
        service_name = encoded.service_name
        ns_name = service_name[1 + service_name[0] :]
        table = self.table
        for owned_name, types in encoded.names.items():
            if types or service_name != own:  # empty non-terminals: in the shape only
                table[owned_name] = types
        # Keyed by the table's own key object (``service_name`` is the one in ``names``), so
        # the key costs nothing of its own; by ``own`` if ``records`` named another service
        # than the call (a caller's bug), with its names in ``_strays`` (they are not below
        # ``own``), so that the next call still finds what to take out.
        if service_name == own:
            shape = encoded.shape
            self._services[service_name] = self._shape(encoded) if shape is None else shape
        else:
            self._services[own] = ()
            self._strays[own] = tuple(encoded.names)
        self._hold_namespace(ns_name)

    def _set_plain(self, namespace: str, name: str, records: ServiceRecords) -> bool:
        """``set_service`` of a service ``plainblob`` makes in one call (most of a large
        zone), without an ``Encoded`` and its dict: the same table entries, shape and
        counters (tests/unit/test_plainblob.py holds the two ways together); False, having
        done nothing, for any other."""
        if records.namespace != namespace or records.name != name:
            return False  # (a caller's bug: the general way says what it does then)
        try:
            made = plainblob.made(records, self.origin_wire, self.ttl, self.turns)
        except Exception:  # a bug of ours: the general way leaves the service out
            return False
        if made is None:
            return False
        own, blob, others, shape = made
        self._take_out(own)
        if self._skipped_now:
            self._note_skipped((namespace, name), [])
        table = self.table
        table[own] = blob
        for labels, _ in others:  # their ``_<proto>`` parents: in the shape only
            table[labels + own] = blob
        self._services[own] = shape
        self._hold_namespace(own[1 + own[0] :])
        return True

    def _take_out(self, own: bytes) -> None:
        """Take out every name the service ``own`` holds (none if it holds none)."""
        owned = self._services.pop(own, None)
        if owned is not None:
            for prefix in owned:
                self._drop(prefix + own if prefix else own)
            for stray in self._strays.pop(own, ()):
                self._drop(stray)
            self._release_namespace(own[1 + own[0] :])

    def _hold_namespace(self, ns_name: bytes) -> None:
        """One more service in the namespace ``ns_name`` (its empty non-terminal)."""
        self._namespace_refs[ns_name] = self._namespace_refs.get(ns_name, 0) + 1
        self.table.setdefault(ns_name, EMPTY_TYPES)

    def _drop(self, name: bytes) -> None:
        """Take ``name`` out of the table; a blob built for it gives its counters back (a
        name sharing another's blob gives nothing: see ``nameblob``)."""
        answers = self.table.pop(name, None)
        if type(answers) is bytes and answers[0] == len(name):
            self.turns.give_back(nameblob.slots(answers))

    def _shape(self, encoded: Encoded) -> tuple[bytes, ...]:
        """The names of ``encoded`` as prefixes of its service name, one tuple per shape
        (see ``_services``)."""
        cut = len(encoded.service_name)
        shape = tuple(name[:-cut] for name in encoded.names)
        shared = self._shapes.get(shape)
        if shared is None and len(self._shapes) < MAX_SHAPES:
            shared = self._shapes[shape] = shape
        return shared or shape

    def _encode(self, records: ServiceRecords) -> Encoded:
        try:
            # The commonest services in one call, the common ones in a few, the others the
            # general way.
            origin, ttl = self.origin_wire, self.ttl
            return (
                plainblob.encode(records, origin, ttl, self.turns)
                or encode_plain(records, origin, ttl, self.turns)
                or encode_service(records, origin, ttl)
            )
        except Exception as exc:  # a bug of ours: leave this service out, keep the rest
            what = f"{records.namespace}/{records.name}"
            detail = "".join(traceback.format_exception(exc)).rstrip()
            return Encoded({}, b"", [Skipped("internal", what, detail)])

    def _note_skipped(self, key: tuple[str, str], skipped: list[Skipped]) -> None:
        if not (skipped or self._skipped_now):  # nothing left out, before or now
            return
        before = self._skipped_now.pop(key, frozenset())
        if not skipped:
            return
        self._skipped_now[key] = frozenset(skipped)
        fresh = [s for s in dict.fromkeys(skipped) if s not in before]
        for item in fresh:
            self.skipped[item.reason] = self.skipped.get(item.reason, 0) + 1
        if fresh and self.on_skipped is not None:
            self.on_skipped(f"{key[0]}/{key[1]}", fresh)

    def _release_namespace(self, ns_name: bytes) -> None:
        refs = self._namespace_refs.pop(ns_name, 0) - 1
        if refs > 0:
            self._namespace_refs[ns_name] = refs
        else:
            self.table.pop(ns_name, None)

    def skipped_by_reason(self) -> dict[str, int]:
        """``skipped`` with every reason of ``SKIP_REASONS``, zero or not (for metrics)."""
        return {reason: self.skipped.get(reason, 0) for reason in SKIP_REASONS}

    def service_count(self) -> int:
        return len(self._services)

    def empty_nonterminal(self, key: bytes) -> bool:
        """Whether ``key`` (a lower-case wire name that is not in ``table``) is a name a
        service owns without records: an empty non-terminal, which answers NODATA (see the
        module docstring). Looks for the service among the name's ancestors (one dict
        lookup per label), then for the name in the service's shape."""
        below = key
        while len(below) > 1:
            shape = self._services.get(below)
            if shape is not None:
                return key[: len(key) - len(below)] in shape
            below = below[1 + below[0] :]
        return False

    # --- lookups (tests and tooling; the query path reads ``table`` directly) ------------

    def lookup(self, name: str, qtype: int) -> Answer:
        key = wire.encode_name(name)
        types = self.table.get(key)
        if types is None and self.empty_nonterminal(key):
            types = EMPTY_TYPES
        if types is None:
            return self.nxdomain if self.synced else self.servfail
        if isinstance(types, bytes):
            types = nameblob.view(types, key)
        return answer_for(types, qtype) or self.nodata


def build_zone(
    origin: str,
    services: Iterable[ServiceRecords],
    *,
    serial: int,
    ttl: int = DEFAULT_TTL_S,
    synced: bool = True,
) -> Zone:
    """A whole zone from scratch (start-up, tests, benchmarks)."""
    zone = Zone(origin, serial=serial, ttl=ttl)
    zone.synced = synced
    if synced:
        for svc in services:
            zone.set_service(svc.namespace, svc.name, svc)
    return zone

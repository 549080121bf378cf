"""A headless service's endpoints as names and as cut groups.

Each ready endpoint of a headless service has a name ``<host>.<cluster>.<svc>...`` (KEP-1645
2.4.1): ``<host>`` is its EndpointSlice hostname, else its address dashed (``10-2-0-7``,
``fd00--7``), so an endpoint without a hostname has one name per address. A ``Host`` is one
such name with every address it answers, in order and without duplicates.

Cut groups. When an answer that lists the endpoints does not fit a response, it keeps whole
groups (``answer.Listing``), and the A and AAAA answers keep the same ones. A group is what
a client would call one endpoint:

- a name with a hostname, with all its addresses: the endpoints of one cluster that share
  a hostname (a dual-stack pod's IPv4 and IPv6 EndpointSlices list it under one hostname);
- an endpoint without a hostname that has addresses of both families: its names;
- otherwise the i-th single-family endpoint without a hostname of a cluster is grouped with
  the i-th of the other family of the same cluster: Kubernetes lists a dual-stack pod's
  addresses in two EndpointSlices, one per family, and the EndpointSlice controller writes
  them in the same pod order; it is the best pairing their data allows (they carry no pod
  name), and the only one that keeps both answers from cutting one family to nothing.

Groups come in endpoint order (the order the routing policy gave), a paired group at the
place of its first member.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from dnsserver import wire


class Endpoint(Protocol):
    """What grouping reads of an endpoint (``records.HeadlessEndpoint`` has it)."""

    @property
    def cluster_id(self) -> str: ...

    @property
    def addresses(self) -> tuple[str, ...]: ...

    @property
    def hostname(self) -> str | None: ...

    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> int | None: ...


# (4 or 6, packed octets, text) of each address that is one; noting the others is the
# caller's business.
Parser = Callable[[tuple[str, ...], str], list[tuple[int, bytes, str]]]


@dataclass(slots=True, eq=False)
class Host:
    """One name ``<host>.<cluster>.<svc>...`` with its addresses, packed, in order, without
    duplicates; ``name`` is its wire form once encoded (None when it cannot be)."""

    host: str
    cluster: str
    v4: dict[bytes, None] = field(default_factory=dict)
    v6: dict[bytes, None] = field(default_factory=dict)
    name: bytes | None = None
    _glue: tuple[bytes, int] | None = None
    priority: int = 0  # SRV priority and weight (None: an even split), from its first endpoint
    weight: int | None = None

    def records(self, ttl: int, family: int, owner: bytes = wire.POINTER_TO_QNAME) -> list[bytes]:
        """Its A (``family`` 4) or AAAA (6) records, owned by ``owner``."""
        if family == 4:
            return [wire.rr(owner, wire.TYPE_A, ttl, p) for p in self.v4]
        return [wire.rr(owner, wire.TYPE_AAAA, ttl, p) for p in self.v6]

    def glue(self, ttl: int) -> tuple[bytes, int]:
        """(octets, records) of its A and AAAA records owned by its name: what goes in the
        additional section with an SRV record that names it."""
        if self._glue is None:
            if self.name is None:
                self._glue = (b"", 0)
            else:
                glue = self.records(ttl, 4, self.name) + self.records(ttl, 6, self.name)
                self._glue = (b"".join(glue), len(glue))
        return self._glue


def _hosts_of(ep: Endpoint, parse: Parser, hosts: dict[tuple[str, str], Host]) -> list[Host]:
    """Add ``ep``'s addresses to its names; returns the names it is the first to have."""
    new = []
    of = f"endpoint {ep.hostname or '(no hostname)'} of cluster {ep.cluster_id}"
    for version, packed, _ in parse(ep.addresses, of):
        label = ep.hostname or wire.dashed_packed(version, packed)
        host = hosts.get((label, ep.cluster_id))
        if host is None:
            host = Host(label, ep.cluster_id, priority=ep.priority, weight=ep.weight)
            hosts[(label, ep.cluster_id)] = host
            new.append(host)
        (host.v4 if version == 4 else host.v6)[packed] = None
    return new


def endpoint_groups(endpoints: Iterable[Endpoint], parse: Parser) -> list[list[Host]]:
    """The names of ``endpoints`` in cut groups (see the module docstring)."""
    hosts: dict[tuple[str, str], Host] = {}
    groups: list[list[Host]] = []
    waiting: dict[tuple[str, int], deque[list[Host]]] = {}
    for ep in endpoints:
        new = _hosts_of(ep, parse, hosts)
        families = {4 if host.v4 else 6 for host in new}
        if not new or ep.hostname or len(families) > 1:
            if new:
                groups.append(new)
            continue
        family = families.pop()
        partners = waiting.get((ep.cluster_id, 10 - family))
        if partners:
            partners.popleft().extend(new)
        else:
            groups.append(new)
            waiting.setdefault((ep.cluster_id, family), deque()).append(new)
    return groups

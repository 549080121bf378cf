"""A service's endpoints, as the model holds them (``mesh.model`` re-exports all of it).

A clusterset of a million endpoints holds a million of these, so their memory is most of
the agent's, and nearly all are *plain*: ready, with one address, no hostname or zone.

- ``Endpoint`` is one endpoint; a plain one holds its address string alone (48 octets),
  any other is a ``_FullEndpoint`` (see the class).
- ``PackedEndpoints`` holds a whole service's endpoints, when every one is plain with an
  IPv4 address (at 3 per service, ~50 octets instead of ~360 for the tuple of
  ``Endpoint`` and their strings). It is a sequence of ``Endpoint`` equal to the tuple in
  every way a reader sees (iteration, indexing, ``len``, ``in``, ``==`` both ways, ``hash``,
  pickling), building each ``Endpoint`` when asked (never cached: that is the saving).
  Readers on hot paths take its packed octets (``octets``) or address texts directly.

The one rule that keeps this exact: an address is packed only when its text is the
canonical dotted quad, the text made back from its 4 octets; so unpacking gives the very
endpoints that were packed, and a service never changes by being packed.

Pure: values in, values out.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, SupportsIndex


class Endpoint:
    """One endpoint of an EndpointSlice: its addresses share one readiness and one hostname.

    A clusterset of a million endpoints holds a million of these, nearly all ready, with one
    address and no hostname or zone. So that address is held as the string itself rather
    than in a one-element tuple (48 octets each), and such a plain endpoint is an
    ``Endpoint`` holding that alone (48 octets an object), its readiness, hostname and zone
    being the class's; any other is a ``_FullEndpoint`` (64 octets), which holds them too.
    ``addresses`` is the tuple either way. The held form is canonical (one address: a
    string; else a tuple; plain: an ``Endpoint``, else a ``_FullEndpoint``), so equality and
    hashing by it match equality and hashing by the four values. Immutable; make a changed
    copy with the constructor."""

    __slots__ = ("_held",)
    _held: str | tuple[str, ...]
    ready: bool = True
    hostname: str | None = None
    zone: str | None = None

    def __new__(
        cls,
        addresses: tuple[str, ...],
        ready: bool = True,
        hostname: str | None = None,
        zone: str | None = None,
    ) -> Endpoint:
        plain = ready is True and hostname is None and zone is None
        made = object.__new__(Endpoint if plain else _FullEndpoint)
        held = addresses[0] if len(addresses) == 1 else tuple(addresses)
        object.__setattr__(made, "_held", held)
        if not plain:
            object.__setattr__(made, "ready", ready)
            object.__setattr__(made, "hostname", hostname)
            object.__setattr__(made, "zone", zone)
        return made

    @property
    def addresses(self) -> tuple[str, ...]:
        held = self._held
        return (held,) if isinstance(held, str) else held

    def _values(self) -> tuple[str | tuple[str, ...], bool, str | None, str | None]:
        return (self._held, self.ready, self.hostname, self.zone)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Endpoint is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Endpoint is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[Endpoint], tuple[object, ...]]:
        return (Endpoint, (self.addresses, self.ready, self.hostname, self.zone))

    def __repr__(self) -> str:
        return (
            f"Endpoint(addresses={self.addresses!r}, ready={self.ready!r}, "
            f"hostname={self.hostname!r}, zone={self.zone!r})"
        )


_new_object = object.__new__
_set_held = Endpoint.__dict__["_held"].__set__  # the slot's own setter


def plain_endpoint(address: str) -> Endpoint:
    """``Endpoint((address,))``, made faster: a catch-up decodes a hundred thousand of
    them, and the general constructor's checks cost more than the object (equal in every
    attribute; ``tests/unit/test_record_fast.py``)."""
    made: Endpoint = _new_object(Endpoint)
    _set_held(made, address)
    return made


class _FullEndpoint(Endpoint):
    """An endpoint that is not ready, or has a hostname or a zone (see ``Endpoint``)."""

    __slots__ = ("hostname", "ready", "zone")
    ready: bool
    hostname: str | None
    zone: str | None


class PackedEndpoints(bytes):
    """A service's plain IPv4 endpoints, packed (see the module docstring): made only by
    ``pack_quads``/``pack_endpoints``, never empty; its ``bytes`` side is the 4-octet
    addresses concatenated. A ``bytes`` subclass without slots: one object, no GC header.
    ``bytes`` methods it does not override (``hex``, ``find``...) see the octets; the model
    only reads it as a sequence."""

    __slots__ = ()

    def __len__(self) -> int:
        return bytes.__len__(self) >> 2

    def octets(self) -> bytes:
        """The addresses, 4 octets each, in order."""
        return bytes(self)

    def addresses(self) -> list[str]:
        """Each endpoint's address, as text, in order."""
        return [f"{a}.{b}.{c}.{d}" for a, b, c, d in _QUADS(self)]

    def __iter__(self) -> Iterator[Endpoint]:  # type: ignore[override]  # endpoints, not ints
        return map(plain_endpoint, self.addresses())

    def __getitem__(self, index: SupportsIndex | slice) -> Any:  # as the tuple's
        if isinstance(index, slice):
            return tuple(self)[index]
        count = len(self)
        at = operator.index(index)  # (TypeError for what is no index, as the tuple's)
        if not -count <= at < count:
            raise IndexError("PackedEndpoints index out of range")
        a, b, c, d = _QUAD.unpack_from(self, at % count * 4)
        return plain_endpoint(f"{a}.{b}.{c}.{d}")

    def __contains__(self, item: object) -> bool:
        return item in tuple(self)

    def index(self, item: object, *args: Any) -> int:
        return tuple(self).index(item, *args)

    def count(self, item: object, *args: Any) -> int:
        return tuple(self).count(item)

    def __eq__(self, other: object) -> bool:
        if type(other) is PackedEndpoints:
            return bytes.__eq__(self, other)
        if isinstance(other, tuple):
            return tuple(self) == other
        # Unequal to bytes, as a tuple is (else bytes' own test would see the octets).
        return False if isinstance(other, bytes) else NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __add__(self, other: object) -> Any:
        return tuple(self) + other if isinstance(other, tuple) else NotImplemented

    def __radd__(self, other: object) -> Any:
        return other + tuple(self) if isinstance(other, tuple) else NotImplemented

    def __reduce__(self) -> tuple[type[PackedEndpoints], tuple[bytes]]:
        return (PackedEndpoints, (bytes(self),))

    def __repr__(self) -> str:
        return f"PackedEndpoints({self.addresses()!r})"


_QUAD = struct.Struct("4B")
_QUADS = _QUAD.iter_unpack
# What an ``ExportedService`` holds as its endpoints: the tuple, or packed.
Endpoints = tuple[Endpoint, ...] | PackedEndpoints


def pack_quads(addresses: Sequence[str]) -> PackedEndpoints | None:
    """The plain endpoints of these addresses, packed, when each is a canonical dotted quad
    (no leading zero, sign or space: its text is the one made back); None otherwise."""
    if not addresses or not all([type(a) is str and a.count(".") == 3 for a in addresses]):
        return None
    joined = ".".join(addresses)
    try:
        octets = bytes(map(int, joined.split(".")))
    except ValueError:  # a part not a number, or over 255
        return None
    if ".".join(map(str, octets)) != joined:
        return None
    return PackedEndpoints(octets)


def pack_endpoints(endpoints: Endpoints | Iterable[Endpoint]) -> Endpoints:
    """``endpoints`` as a service holds them: packed when all are plain IPv4 (see
    ``PackedEndpoints``), else as a tuple."""
    if isinstance(endpoints, PackedEndpoints):
        return endpoints
    held = tuple(endpoints)
    if not all([type(e) is Endpoint and type(e._held) is str for e in held]):
        return held
    packed = pack_quads([e._held for e in held])  # type: ignore[misc]  # str, checked above
    return held if packed is None else packed

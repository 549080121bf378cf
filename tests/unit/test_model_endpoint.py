"""mesh/model.py: an endpoint's compact forms behave as one immutable value type."""

from __future__ import annotations

import copy
import pickle

import pytest

from mesh.model import Endpoint

CASES = [
    Endpoint(("10.0.0.1",)),
    Endpoint(("10.0.0.1",), ready=True),
    Endpoint(("10.0.0.1",), ready=False),
    Endpoint(("10.0.0.1",), hostname="db-0"),
    Endpoint(("10.0.0.1",), zone="z1"),
    Endpoint(("10.0.0.1", "fd00::1")),
    Endpoint(("fd00::1",), ready=False, hostname="db-1", zone="z2"),
]


@pytest.mark.parametrize("endpoint", CASES, ids=repr)
def test_an_endpoint_reads_back_what_it_was_made_with(endpoint: Endpoint) -> None:
    again = Endpoint(endpoint.addresses, endpoint.ready, endpoint.hostname, endpoint.zone)
    assert again == endpoint
    assert hash(again) == hash(endpoint)
    assert type(again) is type(endpoint)  # the compact form is canonical
    assert pickle.loads(pickle.dumps(endpoint)) == endpoint
    assert copy.deepcopy(endpoint) == endpoint
    assert repr(endpoint).startswith(f"Endpoint(addresses={endpoint.addresses!r}")


def test_only_a_ready_endpoint_without_hostname_or_zone_is_plain() -> None:
    """A plain endpoint holds its address alone; the others hold the rest too, and no two
    different endpoints are equal whatever their form."""
    plain = [e for e in CASES if type(e) is Endpoint]
    assert plain == [CASES[0], CASES[1], CASES[5]]
    assert len({e for e in CASES}) == len(CASES) - 1  # CASES[1] is CASES[0] again
    assert CASES[0].addresses == ("10.0.0.1",)
    assert (CASES[2].ready, CASES[3].hostname, CASES[4].zone) == (False, "db-0", "z1")


@pytest.mark.parametrize("endpoint", [CASES[0], CASES[6]], ids=repr)
def test_an_endpoint_cannot_be_changed(endpoint: Endpoint) -> None:
    with pytest.raises(AttributeError):
        endpoint.ready = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del endpoint.hostname  # type: ignore[misc]

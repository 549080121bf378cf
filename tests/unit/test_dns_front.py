"""The agent's DNS front (``mesh.daemon.front``): zone updates reach the served zone, and
each applied batch answers the UDP queries that waited meanwhile, before the loop turns.

Real loopback sockets; every wait is bounded (``select`` with a timeout), nothing sleeps.
"""

from __future__ import annotations

import select
import socket

import dns.message
import pytest

from dnsserver import server as server_module
from dnsserver.records import ServiceRecords
from mesh.daemon.front import DnsFront
from mesh.daemon.settings import AgentSettings
from mesh.model import ServiceKey

WAIT_S = 5.0


def records(address: str) -> ServiceRecords:
    return ServiceRecords("shop", "web", False, (address,), (("http", "TCP", 80),))


@pytest.mark.asyncio
@pytest.mark.skipif(server_module._fastpath is None, reason="the C fast path is not built")
async def test_apply_answers_the_queries_that_waited_with_the_zone_it_made() -> None:
    settings = AgentSettings("east", None, dns_listen="127.0.0.1:0", admin_listen=None)
    front = DnsFront(settings, serial=1)
    await front.start()
    try:
        front.apply([(ServiceKey("shop", "web"), records("10.1.0.1"))], 2)
        sock = front.dns._sock
        assert sock is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            query = dns.message.make_query("web.shop.svc.clusterset.local.", "A")
            client.sendto(query.to_wire(), front.dns.address)
            assert select.select([sock], [], [], WAIT_S)[0], "query never arrived"
            # A rebuild's batch, with the loop held: the waiting query is answered at its
            # end, from the zone as the batch left it (the service whole, after its change).
            front.apply([(ServiceKey("shop", "web"), records("10.1.0.2"))], 3)
            assert select.select([client], [], [], WAIT_S)[0], "not answered by apply"
            reply = dns.message.from_wire(client.recv(4096))
        assert reply.id == query.id
        assert [rr.address for rr in reply.answer[0]] == ["10.1.0.2"]
    finally:
        await front.close()

"""SWIM membership (Das et al. 2002) with Lifeguard's refinements: who is in the ring, who
is suspected, dead or gone. A pure core shaped like aioquic's connection: ``receive``,
``messages_to_send``, ``get_timer``, ``handle_timer`` and events, all with ``now``; the
asyncio pump over gRPC is ``mesh.transport.swim``, the signatures ``mesh.security``.

Pure cores: membership, table, room, probes, suspicion, broadcasts, joining, config,
messages.
Adapters: none.
"""

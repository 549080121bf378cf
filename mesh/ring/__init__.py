"""The ring's state: per-origin versioned records (Scuttlebutt with tombstones and resets),
the catalog that answers are built from, the peer table, rate limits and cluster expiry.
The messages that carry records are ``mesh.wire``; the gRPC exchange ``mesh.transport``.

Pure cores: records, record_log, record_plan, origin_room, catalog, peers, limits, expiry.
Adapters: none.
"""

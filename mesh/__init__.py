"""meshd, the agent of one cluster: one subpackage per part, data flowing one way.

    sources -> local state -> ring -> catalog -> routing -> zone -> DNS bytes

- ``model``: the shared value types (clusters, services, endpoints; ``endpoints`` holds the
  endpoint types, which ``model`` re-exports); ``address``: host:port and IP text.
- ``sources``: what this cluster exports, from manifests (``kube``: from the API server,
  and the MCS write-back).
- ``ring``: per-origin versioned records, the catalog answers are built from, peers.
- ``swim``: SWIM membership with Lifeguard; ``security``: identities, signatures, the PKI.
- ``wire``: the protobuf messages and their codecs (the only user of protobuf);
  ``transport``: gRPC and TLS (the only user of grpc).
- ``routing``: which endpoints answer, in which order, and when the zone is rebuilt.
- ``daemon``: settings, the agent that wires the parts, the command line, admin, metrics.

The DNS server itself is the separate library ``dnsserver``. Every package's docstring
names its pure cores (input and ``now`` in, output out) and its adapters (IO);
``tests/meta/test_layering.py`` enforces which part may import which.
"""

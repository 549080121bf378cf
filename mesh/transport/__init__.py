"""gRPC between agents: the gossip servicer and channels, the SWIM pump that rides on it,
and mutual TLS with reload. The only part that uses grpc.

Pure cores: none.
Adapters: gossip, swim, tls, listen.
"""

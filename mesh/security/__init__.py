"""Who may say what: the identities certificates carry, Ed25519 origin signatures over
records and SWIM claims, keys certified by the clusterset CA, the PKI that makes and
loads the files, and when those certificates expire. Mutual TLS itself is
``mesh.transport.tls``.

Pure cores: identity, signing, seal, swim_claims, cert_expiry.
Adapters: pki.
"""

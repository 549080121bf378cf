"""The Kubernetes API: the list-then-watch source of exports, and the MCS write-back
(ServiceExport conditions, ServiceImports) from the one replica holding the Lease.

Pure cores: status, conditions, imports, plan, election, overlay.
Adapters: calls, reflector, source, lease, writer.
"""

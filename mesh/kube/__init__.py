"""The Kubernetes API: the list-then-watch source of exports, and the MCS write-back
(ServiceExport conditions, ServiceImports, the clusterset VIP's derived Service and
EndpointSlices) from the one replica holding the Lease.

Pure cores: status, conditions, imports, derived, plan, election, overlay.
Adapters: calls, reflector, source, lease, writer.
"""

"""What this cluster exports: Kubernetes objects (from manifests, or from the API server in
``mesh.kube``) translated into ``LocalExports``, with a verdict per ServiceExport.

Pure cores: documents, fields, identity, translate, incremental, watchstate, delta.
Adapters: manifests, scan, offload, notify.
"""

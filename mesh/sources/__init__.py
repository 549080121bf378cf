"""Sources of what the local cluster exports: a directory of manifests, or the Kubernetes API."""

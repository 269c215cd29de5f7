"""Cluster mode: the Kubernetes API as config source, status target and lock."""

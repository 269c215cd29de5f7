"""The ``twistgw`` command: offline checks of manifests and a running gateway's status."""

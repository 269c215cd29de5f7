"""``twistd gateway`` options: the operator's configuration surface."""

from __future__ import annotations

import ipaddress
import os

from twisted.python import usage

DEFAULT_CONTROLLER = "gateway.twistgw.dev/controller"
DEFAULT_ADMIN = "tcp:9901:interface=127.0.0.1"


def address_pool(cidr: str) -> tuple[str, ...]:
    """The usable addresses of a CIDR block, in order (a /32 is its one address)."""
    network = ipaddress.ip_network(cidr, strict=False)
    hosts = list(network.hosts()) or [network.network_address]
    return tuple(str(address) for address in hosts)


class GatewayOptions(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run twistgw, a Kubernetes Gateway API gateway. Host mode (the default): Gateway "
        "API manifests from a directory in, traffic and status (admin endpoint) out. "
        "Cluster mode (--kubernetes): the Kubernetes API in, status subresources out."
    )

    optFlags = [
        [
            "kubernetes",
            "k",
            "Cluster mode: read the configuration from the Kubernetes API (in-cluster "
            "credentials, or --kubeconfig) and write statuses there.",
        ],
        [
            "leader-elect",
            None,
            "Cluster mode: only the replica holding the Lease writes statuses (every "
            "replica serves traffic).",
        ],
    ]

    optParameters = [
        [
            "config-dir",
            "c",
            "/etc/twistgw",
            "Directory of Kubernetes manifests (*.yaml, *.yml, *.json) to serve; watched for "
            "changes.",
        ],
        [
            "controller-name",
            None,
            DEFAULT_CONTROLLER,
            "GatewayClass spec.controllerName this gateway implements.",
        ],
        [
            "admin-endpoint",
            None,
            DEFAULT_ADMIN,
            "Twisted server endpoint string for the admin server (/status, /healthz, /readyz, "
            "/metrics, /config_dump).",
        ],
        [
            "address-pool",
            None,
            None,
            "CIDR block of addresses for Gateways without spec.addresses, one address each; "
            "without it such Gateways bind the wildcard address.",
        ],
        [
            "watch",
            None,
            "auto",
            "How to notice config changes: auto (inotify where the platform has it, "
            "else polling) or poll (for filesystems where inotify sees nothing, e.g. NFS).",
        ],
        [
            "drain-timeout",
            None,
            30.0,
            "Seconds a stopping gateway lets requests in flight finish before it closes "
            "their connections.",
            float,
        ],
        [
            "tls-min-version",
            None,
            "1.2",
            "Oldest TLS version HTTPS and terminating TLS listeners accept: 1.2 or 1.3.",
        ],
        [
            "stream-idle-timeout",
            None,
            3600.0,
            "Seconds a TCP or TLS-route connection may pass no bytes either way before it "
            "is closed.",
            float,
        ],
        [
            "udp-session-timeout",
            None,
            60.0,
            "Seconds a UDP session lives without a datagram either way.",
            float,
        ],
        [
            "udp-max-sessions",
            None,
            10000,
            "UDP sessions per listener and worker; beyond it the least recently active "
            "session ends.",
            int,
        ],
        [
            "kubeconfig",
            None,
            None,
            "Cluster mode: kubeconfig file to use instead of in-cluster credentials.",
        ],
        [
            "leader-election-namespace",
            None,
            None,
            "Namespace of the leader Lease (default: $POD_NAMESPACE, else twistgw-system).",
        ],
        ["leader-election-name", None, "twistgw-leader", "Name of the leader Lease."],
        [
            "lease-duration",
            None,
            15.0,
            "Seconds a leader's Lease lasts without renewal before another replica may take it.",
            float,
        ],
        [
            "publish-service",
            None,
            None,
            "Cluster mode: NAMESPACE/NAME of the Service in front of the gateway; its load "
            "balancer addresses (else its cluster IP) are reported as each Gateway's "
            "status.addresses.",
        ],
        [
            "workers",
            "w",
            None,
            "Worker processes serving traffic (default: the number of CPUs).",
            int,
        ],
    ]

    def postOptions(self) -> None:
        if not self["kubernetes"]:
            if not os.path.isdir(self["config-dir"]):
                raise usage.UsageError(f"--config-dir {self['config-dir']!r} is not a directory")
            for option in ("kubeconfig", "publish-service"):
                if self[option]:
                    raise usage.UsageError(f"--{option} needs cluster mode (--kubernetes)")
            if self["leader-elect"]:
                raise usage.UsageError("--leader-elect needs cluster mode (--kubernetes)")
        if self["publish-service"]:
            namespace, _, name = self["publish-service"].partition("/")
            if not namespace or not name:
                raise usage.UsageError("--publish-service must be NAMESPACE/NAME")
            self["publish-service"] = (namespace, name)
        if not self["leader-election-namespace"]:
            self["leader-election-namespace"] = os.environ.get("POD_NAMESPACE", "twistgw-system")
        if self["lease-duration"] <= 0:
            raise usage.UsageError("--lease-duration must be positive")
        if self["address-pool"]:
            try:
                self["address-pool"] = address_pool(self["address-pool"])
            except ValueError as exc:
                raise usage.UsageError(f"--address-pool: {exc}") from exc
        else:
            self["address-pool"] = ()
        if self["tls-min-version"] not in ("1.2", "1.3"):
            raise usage.UsageError("--tls-min-version must be 1.2 or 1.3")
        for name in ("stream-idle-timeout", "udp-session-timeout", "udp-max-sessions"):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be positive")
        if self["watch"] not in ("auto", "poll"):
            raise usage.UsageError("--watch must be auto or poll")
        if self["workers"] is None:
            self["workers"] = os.cpu_count() or 1
        if self["workers"] < 1:
            raise usage.UsageError("--workers must be at least 1")

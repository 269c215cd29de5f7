"""What the translator takes besides the snapshot, and what it gives back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from twistgw.api.resource import ObjectKey, ObjectStatus
from twistgw.routing.ir import RoutingTable
from twistgw.translate.budget import DEFAULT_MAX_ROUTE_ENTRIES, DEFAULT_MAX_TABLE_ENTRIES

WILDCARD_ADDRESS = "0.0.0.0"


@attrs.frozen
class TranslateOptions:
    """The operator's settings that shape translation.

    ``address_pool``: addresses handed to Gateways without ``spec.addresses``, in
    order; empty means every such Gateway binds the wildcard address.
    ``assigned_addresses``: the addresses Gateways held after the previous
    translation, so that a Gateway keeps its address for as long as it exists.
    ``bind_failures``: (address, port, transport) -> why the data plane could not
    listen there;
    ``unusable_addresses``: addresses this host cannot listen on at all. Both come
    back from the data plane, so statuses can say what could not be programmed.
    ``publish_service``: (namespace, name) of the Service fronting the gateway (cluster
    mode): its load balancer addresses, else its cluster IP, are every Gateway's
    ``status.addresses``.
    ``max_route_entries``, ``max_table_entries``: the routing entries (listeners x
    hostnames x matches) one route, and all routes together, may expand into; a
    route's parent past either is refused (budget.py).
    ``filter_plugins``: the filter plugins the gateway may run (installed and allowed),
    by name, with their config schemas: what PythonFilters may name.
    """

    controller_name: str = "gateway.twistgw.dev/controller"
    address_pool: tuple[str, ...] = ()
    assigned_addresses: Mapping[ObjectKey, str] = attrs.field(factory=dict)
    bind_failures: Mapping[tuple[str, int, str], str] = attrs.field(factory=dict)
    unusable_addresses: frozenset[str] = frozenset()
    publish_service: tuple[str, str] | None = None
    max_route_entries: int = DEFAULT_MAX_ROUTE_ENTRIES
    max_table_entries: int = DEFAULT_MAX_TABLE_ENTRIES
    filter_plugins: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)


@attrs.frozen
class Translation:
    table: RoutingTable
    statuses: tuple[ObjectStatus, ...]
    assigned_addresses: Mapping[ObjectKey, str]

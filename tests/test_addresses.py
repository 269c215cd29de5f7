"""Addresses as a real gateway process binds them: pool, static, and unusable."""

from __future__ import annotations

from tests.support.gateway import wait_until
from tests.support.manifests import gateway_class, gateway_manifest


def test_unusable_static_address_is_reported_and_usable_one_serves(gateway):
    usable = gateway.address.rsplit(".", 1)[0] + ".200"
    gateway.write(
        "static.yaml",
        [
            gateway_class(),
            gateway_manifest(
                "static", addresses=[{"type": "IPAddress", "value": "192.0.2.1"}, {"value": usable}]
            ),
        ],
    )

    def not_usable():
        condition = gateway.condition("Gateway", "static", "Programmed")
        return condition if condition and condition["reason"] == "AddressNotUsable" else None

    condition = wait_until(not_usable, what="AddressNotUsable")
    assert "192.0.2.1" in condition["message"]
    assert gateway.condition("Gateway", "static", "Accepted")["status"] == "True"
    # the usable address still listens: no route yet, so a 404 from the gateway
    assert wait_until(lambda: gateway.request("/", address=usable)[0] == 404)
    gateway.write(
        "static.yaml", [gateway_class(), gateway_manifest("static", addresses=[{"value": usable}])]
    )
    wait_until(
        lambda: gateway.condition("Gateway", "static", "Programmed")["status"] == "True",
        what="programmed once the unusable address is gone",
    )
    gateway.remove("static.yaml")

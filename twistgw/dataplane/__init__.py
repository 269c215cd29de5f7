"""The data plane: serves traffic from the routing table."""

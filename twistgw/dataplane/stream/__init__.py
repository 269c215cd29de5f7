"""Stream proxying: TLS passthrough (and, later, TCP)."""

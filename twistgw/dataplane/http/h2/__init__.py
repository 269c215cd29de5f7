"""HTTP/2 (RFC 9113) on hyper-h2's sans-I/O state machine: towards clients
(``server``) and towards backends (``client``), each stream an exchange's end."""

"""Reading SNI from real ClientHellos (made by Python's ssl), whole and in pieces."""

from __future__ import annotations

import ssl

import pytest

from twistgw.dataplane.stream.clienthello import NotTLS, server_name


def _client_hello(sni: str | None) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_server_name_from_a_real_client_hello():
    hello = _client_hello("Passthrough.Example.COM")
    assert server_name(hello) == (True, "passthrough.example.com")


def test_partial_hello_asks_for_more_and_no_sni_is_none():
    hello = _client_hello("a.example.com")
    for cut in (0, 3, 5, 40, len(hello) - 1):
        assert server_name(hello[:cut]) == (False, None)
    assert server_name(_client_hello(None)) == (True, None)


def test_a_hello_split_over_records_is_reassembled():
    hello = _client_hello("split.example.com")
    body = hello[5:]
    middle = len(body) // 2
    records = b"".join(
        bytes([0x16]) + hello[1:3] + len(part).to_bytes(2, "big") + part
        for part in (body[:middle], body[middle:])
    )
    assert server_name(records) == (True, "split.example.com")


def test_other_protocols_are_refused():
    with pytest.raises(NotTLS):
        server_name(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

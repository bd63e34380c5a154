"""The suite's own guard: nothing in a test may reach beyond 127.0.0.1."""

from __future__ import annotations

import socket

import pytest


def test_public_address_is_refused(network_guard_check) -> None:
    with pytest.raises(ConnectionRefusedError, match="only connect to loopback"):
        network_guard_check()


def test_public_name_lookup_is_refused() -> None:
    with pytest.raises(ConnectionRefusedError, match="only resolve loopback"):
        socket.getaddrinfo("earthengine.googleapis.com", 443)


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass

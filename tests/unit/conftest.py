"""Unit tests run without PostgreSQL or Redis: any attempt to open a TCP or Unix-socket
connection fails the test. (tests/conftest.py only defines lazy fixtures; none is used here.)"""
from __future__ import annotations

import socket
from typing import Any, Iterator

import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse every socket connect during a unit test."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"unit test tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield

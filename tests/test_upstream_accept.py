"""The scripted upstream keeps accepting after a connection is aborted before accept."""

from __future__ import annotations

import socket

import httpx
import pytest

from retry_transport.testing.upstream import Reply, Upstream


class _AbortsOnce(socket.socket):
    aborted = 0

    def accept(self) -> tuple[socket.socket, object]:
        if not _AbortsOnce.aborted:
            _AbortsOnce.aborted += 1
            raise ConnectionAbortedError("the peer reset before accept")
        return super().accept()


def test_an_aborted_accept_does_not_stop_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(socket, "socket", _AbortsOnce)
        up = Upstream().start()
    try:
        up.script("/v1/x", Reply(200, b"ok"))
        response = httpx.get(up.url + "/v1/x", timeout=10.0)
        assert response.status_code == 200
        assert _AbortsOnce.aborted == 1
        assert up.connections_accepted == 1
    finally:
        up.stop()

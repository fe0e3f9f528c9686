"""pytest fixtures for a real loopback upstream; tests/conftest.py imports them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retry_transport.testing.upstream import Upstream

__all__ = ["upstream"]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A fresh `Upstream` on 127.0.0.1 for one test.

    Stopped after the test: every open connection is closed and every server thread joined.
    """
    with Upstream() as up:
        yield up

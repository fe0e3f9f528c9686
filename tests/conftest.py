"""Fixtures shared by every test module."""

from __future__ import annotations

import pytest

from tests.upstream_fixtures import upstream

__all__ = ["anyio_backend", "upstream"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test on asyncio and on trio (trio is a required test dependency)."""
    return str(request.param)

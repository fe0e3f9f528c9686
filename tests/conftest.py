"""Fixtures shared by every test module."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.upstream_fixtures import upstream

# The property tests draw the same examples on every run unless asked to explore
# (HYPOTHESIS_PROFILE=explore): the suite's coverage floor must not hang on a lucky draw.
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

__all__ = ["anyio_backend", "upstream"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test on asyncio and on trio (trio is a required test dependency)."""
    return str(request.param)

"""The testing switch: every retry wait switched off, by a call, a context or a pytest fixture."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._switch import SWITCH

__all__ = ["is_testing", "no_waiting", "set_testing"]


def set_testing(on: bool, *, max_attempts: int | None = None) -> None:
    """Make every transport wait zero seconds (``on=True``), optionally capping attempts;
    ``set_testing(False)`` restores normal behaviour."""
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    SWITCH.no_wait = on
    SWITCH.max_attempts = max_attempts if on else None


def is_testing() -> bool:
    """Whether the testing switch is on."""
    return SWITCH.no_wait


@contextmanager
def no_waiting(*, max_attempts: int | None = None) -> Iterator[None]:
    """Context manager form of `set_testing`: waits are zero inside, restored after."""
    previous = (SWITCH.no_wait, SWITCH.max_attempts)
    set_testing(True, max_attempts=max_attempts)
    try:
        yield
    finally:
        SWITCH.no_wait, SWITCH.max_attempts = previous


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture
    def retry_no_wait() -> Iterator[None]:
        """pytest fixture: every transport waits zero seconds during the test.

        Enable it with ``pytest_plugins = ["retry_transport.testing"]`` in your root
        ``conftest.py`` (or import it there), then ask for it by name or with
        ``@pytest.mark.usefixtures("retry_no_wait")``. For a cap on attempts as well, use
        ``with no_waiting(max_attempts=2):`` in the test instead.
        """
        with no_waiting():
            yield

    __all__ += ["retry_no_wait"]

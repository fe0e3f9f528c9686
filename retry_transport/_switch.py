"""The process-wide testing switch read by the drivers (see `retry_transport.testing`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SWITCH", "Switch"]


@dataclass(slots=True)
class Switch:
    """When ``no_wait`` is set, every transport waits zero seconds; ``max_attempts`` (if set)
    caps the attempts of every policy."""

    no_wait: bool = False
    max_attempts: int | None = None


SWITCH = Switch()

"""Validation of configuration values: one message shape for every class that takes them."""

from __future__ import annotations

import math

__all__ = ["check_callable", "check_count", "check_number", "check_type"]


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    positive: bool,
    maximum: float = math.inf,
) -> None:
    """Raise ValueError naming ``owner.name`` unless ``value`` is a finite real number (not a
    bool) that is > 0 (``positive``) or >= 0, and at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{owner}.{name} must be > 0, got {value!r}")
    if not positive and value < 0:
        raise ValueError(f"{owner}.{name} must be >= 0, got {value!r}")
    if value > maximum:
        raise ValueError(f"{owner}.{name} must be <= {maximum:g}, got {value!r}")


def check_count(owner: str, name: str, value: object) -> None:
    """Raise ValueError naming ``owner.name`` unless ``value`` is an integer (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name} must be an integer >= 1, got {value!r}")


def check_type(owner: str, name: str, value: object, kind: type | tuple[type, ...]) -> None:
    """Raise TypeError naming the parameter ``name`` unless ``value`` is a ``kind``."""
    if not isinstance(value, kind):
        raise TypeError(
            f"{owner}: {name} must be {_kind_name(kind)}, got {type(value).__name__} {value!r}"
        )


def check_callable(owner: str, name: str, value: object) -> None:
    """Raise TypeError naming the parameter ``name`` unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{owner}: {name} must be callable, got {value!r}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("None" if k is type(None) else f"a {k.__name__}" for k in kinds)

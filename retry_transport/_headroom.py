"""Per-scope headroom as metric samples, with a bounded label set: origin and model, never the key.

Standard library only, shared by `prometheus.PrometheusHook`, `otel.OpenTelemetryHook` and the
sidecar's metrics, so the three show the same series. A limiter keeps headroom per scope
(origin x credential fingerprint x model); a sample is kept per origin and model, the least
over the keys (the tightest is the one that matters; neither a key nor its fingerprint is
ever a label). The model comes from request bodies, which a sidecar's clients choose, so the
label set is capped: beyond `MAX_ORIGINS` origins, or `MAX_MODELS` models of one origin (in
sorted order: the same names keep their series from scrape to scrape), the rest fold into
`OTHER`. Scopes the limiter has forgotten (idle for its ``idle_ttl``) are not shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ._pacing import ScopeHeadroom

__all__ = [
    "LABELS",
    "MAX_MODELS",
    "MAX_ORIGINS",
    "OTHER",
    "HeadroomSample",
    "HeadroomSource",
    "headroom_samples",
]

LABELS = ("origin", "model", "dimension")
"""The labels of every headroom sample."""

MAX_ORIGINS = 10
"""The most origins shown by name; the others are shown as one, `OTHER`."""

MAX_MODELS = 25
"""The most models of one origin shown by name; the others are shown as one, `OTHER`."""

OTHER = "other"
"""The label value of everything folded together beyond a cap."""


class HeadroomSource(Protocol):
    """What can be watched: a limiter (`SharedLimiter`, `RedisLimiter`)."""

    def headroom(self) -> list[ScopeHeadroom]:
        """What each scope with header truth has left, per dimension."""
        ...


@dataclass(frozen=True, slots=True)
class HeadroomSample:
    """One series: what is left of ``dimension`` at ``origin`` for ``model`` and the refill per
    second it is paced against."""

    origin: str
    model: str
    dimension: str
    remaining: float
    pace: float

    @property
    def labels(self) -> dict[str, str]:
        """The sample's labels (`LABELS`) and their values."""
        return {"origin": self.origin, "model": self.model, "dimension": self.dimension}


def headroom_samples(
    sources: Iterable[HeadroomSource],
    *,
    max_origins: int = MAX_ORIGINS,
    max_models: int = MAX_MODELS,
) -> list[HeadroomSample]:
    """The samples of every scope of ``sources``, the least per series, sorted by labels.

    Origins beyond the first ``max_origins`` (sorted) are shown as origin and model `OTHER`;
    models beyond the first ``max_models`` of an origin as model `OTHER` of that origin.
    """
    rows = [row for source in sources for row in source.headroom()]
    origins = sorted({row.origin for row in rows})
    named_origins = set(origins[:max_origins])
    models: dict[str, set[str]] = {}
    for row in rows:
        if row.origin in named_origins:
            models.setdefault(row.origin, set()).add(row.model)
    named_models = {
        (origin, model) for origin, names in models.items() for model in sorted(names)[:max_models]
    }
    least: dict[tuple[str, str, str], tuple[float, float]] = {}
    for row in rows:
        origin, model = row.origin, row.model
        if origin not in named_origins:
            origin = model = OTHER
        elif (origin, model) not in named_models:
            model = OTHER
        key = (origin, model, row.dimension)
        found = least.get(key)
        if found is None or row.remaining < found[0]:
            least[key] = (row.remaining, row.pace)
    return [
        HeadroomSample(origin, model, dimension, remaining, pace)
        for (origin, model, dimension), (remaining, pace) in sorted(least.items())
    ]

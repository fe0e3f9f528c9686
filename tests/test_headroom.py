"""Per-scope headroom as metric samples: the least per origin and model, the label set bounded."""

from __future__ import annotations

import httpx

from retry_transport import SharedLimiter, SyncRetryTransport
from retry_transport._headroom import (
    MAX_MODELS,
    MAX_ORIGINS,
    OTHER,
    HeadroomSample,
    headroom_samples,
)
from retry_transport._pacing import ScopeHeadroom
from retry_transport._scope import Fingerprinter


class Rows:
    """A headroom source with fixed rows."""

    def __init__(self, *rows: ScopeHeadroom) -> None:
        self.rows = list(rows)

    def headroom(self) -> list[ScopeHeadroom]:
        return self.rows


def row(origin: str, model: str, remaining: float, pace: float = 1.0) -> ScopeHeadroom:
    return ScopeHeadroom(origin, model, "requests", 60.0, remaining, pace)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def openai_headers(remaining: int) -> list[tuple[str, str]]:
    return [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", str(remaining)),
        ("x-ratelimit-reset-requests", "18s"),
    ]


def test_the_least_over_keys_and_limiters_is_shown_with_its_pace() -> None:
    one = Rows(row("https://a.test", "m", 40.0, 2.0), row("https://a.test", "m", 7.0, 0.5))
    two = Rows(row("https://a.test", "m", 30.0))
    assert headroom_samples([one, two]) == [
        HeadroomSample("https://a.test", "m", "requests", 7.0, 0.5)
    ]


def test_samples_are_sorted_and_labelled_by_origin_model_and_dimension() -> None:
    source = Rows(
        ScopeHeadroom("https://b.test", "x", "tokens", None, 900.0, 10.0),
        row("https://a.test", "z", 5.0),
        row("https://a.test", "y", 6.0),
    )
    samples = headroom_samples([source])
    assert [(s.origin, s.model) for s in samples] == [
        ("https://a.test", "y"),
        ("https://a.test", "z"),
        ("https://b.test", "x"),
    ]
    assert samples[2].labels == {"origin": "https://b.test", "model": "x", "dimension": "tokens"}


def test_models_beyond_the_cap_fold_into_other_with_the_least_of_them() -> None:
    models = [f"model-{n:03d}" for n in range(MAX_MODELS + 5)]
    source = Rows(*(row("https://a.test", model, 100.0 - n) for n, model in enumerate(models)))
    samples = headroom_samples([source])
    named = [s.model for s in samples if s.model != OTHER]
    assert named == models[:MAX_MODELS]  # the same names from one scrape to the next
    (other,) = [s for s in samples if s.model == OTHER]
    assert other.origin == "https://a.test"
    assert other.remaining == 100.0 - (MAX_MODELS + 4)


def test_origins_beyond_the_cap_fold_into_one_other_series() -> None:
    origins = [f"https://o{n:02d}.test" for n in range(MAX_ORIGINS + 3)]
    source = Rows(*(row(origin, "m", float(n)) for n, origin in enumerate(origins)))
    samples = headroom_samples([source])
    assert len(samples) == MAX_ORIGINS + 1
    assert samples[-1] == HeadroomSample(OTHER, OTHER, "requests", float(MAX_ORIGINS), 1.0)
    assert {s.origin for s in samples[:-1]} == set(origins[:MAX_ORIGINS])


def test_caps_can_be_set_per_call() -> None:
    source = Rows(row("https://a.test", "m1", 1.0), row("https://a.test", "m2", 2.0))
    samples = headroom_samples([source], max_models=1)
    assert [(s.model, s.remaining) for s in samples] == [("m1", 1.0), (OTHER, 2.0)]


def test_a_limiter_shows_origin_and_model_never_the_key_nor_its_fingerprint() -> None:
    limiter = SharedLimiter(fingerprint_key=b"metrics-test")
    remaining = iter([42, 30])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=openai_headers(next(remaining)), json={})

    transport = SyncRetryTransport(httpx.MockTransport(answer), limiter=limiter)
    with httpx.Client(transport=transport) as http:
        for key in ("sk-one", "sk-two"):
            http.post(
                "https://api.test/v1/chat/completions",
                json={"model": "gpt-x"},
                headers={"authorization": f"Bearer {key}"},
            )
    (sample,) = headroom_samples([limiter])
    assert sample == HeadroomSample("https://api.test", "gpt-x", "requests", 30.0, sample.pace)
    fingerprints = {Fingerprinter(b"metrics-test")(key) for key in (b"sk-one", b"sk-two")}
    shown = repr(headroom_samples([limiter]))
    assert all(fingerprint not in shown for fingerprint in fingerprints)
    assert "sk-" not in shown


def test_idle_scopes_vanish_even_when_no_request_comes() -> None:
    clock = FakeClock()
    limiter = SharedLimiter(clock=clock)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=openai_headers(50), json={})

    transport = SyncRetryTransport(httpx.MockTransport(answer), limiter=limiter, clock=clock)
    with httpx.Client(transport=transport) as http:
        http.post("https://api.test/v1/chat/completions", json={"model": "gpt-x"})
    assert len(headroom_samples([limiter])) == 1
    clock.now += 599.0
    assert len(headroom_samples([limiter])) == 1  # still in use, as far as ten minutes go
    clock.now += 2.0
    assert headroom_samples([limiter]) == []


def test_a_limiter_without_pacing_shows_nothing() -> None:
    assert headroom_samples([SharedLimiter(pacing=False)]) == []

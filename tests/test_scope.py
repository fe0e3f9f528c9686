"""The scope of a request: origin x credential fingerprint x model, and its estimated cost."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from retry_transport._scope import (
    MAX_BODY,
    CostEstimate,
    Fingerprinter,
    Scope,
    estimate_cost,
    model_from_body,
    model_from_path,
    scope_of,
)


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes, bytes]]:
    return [(k.encode(), k.lower().encode(), v.encode()) for k, v in pairs]


def test_a_fingerprint_is_keyed_truncated_and_never_the_secret() -> None:
    first, second = Fingerprinter(b"k1"), Fingerprinter(b"k2")
    print_one = first(b"sk-secret")
    assert len(print_one) == 16
    assert "secret" not in print_one
    assert first(b"sk-secret") == print_one  # remembered
    assert second(b"sk-secret") != print_one  # another key, another fingerprint
    assert first(b"") == ""
    assert Fingerprinter()(b"x") != Fingerprinter()(b"x")  # a random key per process


def test_the_fingerprint_cache_is_bounded() -> None:
    prints = Fingerprinter(b"k", size=2)
    values = [prints(bytes([n])) for n in range(5)]
    assert len(set(values)) == 5
    assert len(prints._cache) == 2


def test_models_in_paths() -> None:
    assert model_from_path(b"/openai/deployments/gpt4o-prod/chat/completions") == "gpt4o-prod"
    assert model_from_path(b"/v1beta/models/gemini-2.5-pro:generateContent") == "gemini-2.5-pro"
    assert model_from_path(b"/model/anthropic.claude-v2/invoke") == "anthropic.claude-v2"
    assert model_from_path(b"/v1/chat/completions") == ""
    assert model_from_path(b"/openai/deployments/") == ""
    assert model_from_path(b"/v1/models") == ""
    assert model_from_path(b"/model/x") == ""


def test_models_in_bodies() -> None:
    assert model_from_body(b'{"messages": [], "model": "gpt-4o"}') == "gpt-4o"
    assert model_from_body(b'{"model": "a\\u00e9"}') == "a\u00e9"
    assert model_from_body(b'{"model": "a\\q"}') == ""  # a bad escape
    nested = json.dumps({"tools": [{"model": "inner"}], "model": "outer"}).encode()
    assert model_from_body(nested) == "outer"
    assert model_from_body(b'{"model": "a", "x": {"model": "b"}') == ""  # not JSON
    assert model_from_body(b'[{"model": "a"}, {"model": "b"}]') == ""
    assert model_from_body(b'{"model": 3, "m": {"model": "b"}, "n": {"model": "c"}}') == ""
    assert model_from_body(b'{"no": 1}') == ""
    assert model_from_body(b'{"model": "x"}' + b" " * MAX_BODY) == ""


def test_costs() -> None:
    assert estimate_cost(None) == CostEstimate(1.0, 0.0, 0.0)
    body = json.dumps({"model": "m", "max_tokens": 100, "messages": ["x" * 395]}).encode()
    cost = estimate_cost(body)
    assert cost.input_tokens == len(body) / 4
    assert cost.output_tokens == 100.0
    assert cost.tokens == cost.input_tokens + 100.0
    assert estimate_cost(b'{"maxOutputTokens": 7}').output_tokens == 7.0
    assert estimate_cost(b"x" * (MAX_BODY + 1)).output_tokens == 0.0


def test_the_scope_of_a_request() -> None:
    prints = Fingerprinter(b"k")
    headers = raw(("Authorization", "Bearer sk-1"), ("Content-Type", "application/json"))
    scope = scope_of("https://api.test", b"/v1/chat", headers, b'{"model":"m"}', prints)
    assert scope == Scope("https://api.test", prints(b"sk-1"), "m")
    assert scope.origin_scope == Scope("https://api.test", "", "")
    # The same key as x-api-key is the same scope.
    same = scope_of("https://api.test", b"/", raw(("x-api-key", "sk-1")), b'{"model":"m"}', prints)
    assert same == scope
    gemini = scope_of(
        "https://g.test", b"/v1beta/models/g:generateContent", [], None, prints, b"qk"
    )
    assert gemini == Scope("https://g.test", prints(b"qk"), "g")


@given(st.binary(max_size=2000))
def test_any_body_gives_a_model_and_a_cost_without_raising(body: bytes) -> None:
    assert isinstance(model_from_body(body), str)
    cost = estimate_cost(body)
    assert cost.requests == 1.0
    assert cost.tokens >= 0.0


@given(st.text(min_size=1, max_size=50).filter(lambda t: "\x00" not in t))
def test_a_generated_model_name_round_trips(name: str) -> None:
    body = json.dumps({"messages": [{"content": "hi"}], "model": name}).encode()
    assert model_from_body(body) == name

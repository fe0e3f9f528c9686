"""The text the rules see is bounded: nesting, value count, string-encoded JSON; and a defect in
a rule gives an UNRECOGNISED verdict instead of a crash."""

from __future__ import annotations

import json
import re

from retry_transport._classify import classify, error_text
from retry_transport._signatures import Rule
from retry_transport._verdict import Outcome, Verdict


def test_values_nested_deeper_than_the_bound_are_not_read() -> None:
    document: object = {"message": "deepest"}
    for _ in range(40):
        document = {"error": document}
    body = json.dumps({"message": "shallow", "error": document}).encode()
    text = error_text(body)
    assert "message: shallow" in text
    assert "deepest" not in text


def test_values_after_the_node_bound_are_not_read() -> None:
    body = json.dumps({"padding": list(range(5000)), "message": "late"}).encode()
    assert "late" not in error_text(body)
    assert "message: late" in error_text(json.dumps({"message": "late"}).encode())


def test_string_encoded_json_is_decoded_three_levels_deep_and_no_further() -> None:
    # the body is level 1; the third level's text is read as it is: neither decoded nor
    # searched for an embedded object (which would add a "message: embedded" line)
    innermost = json.dumps({"message": 'Error: {"message": "embedded"}'})
    body = json.dumps({"message": json.dumps({"message": innermost})}).encode()
    assert error_text(body) == 'message: Error: {"message": "embedded"}'
    two_levels = json.dumps({"message": 'Error: {"message": "embedded"}'}).encode()
    assert error_text(two_levels) == 'message: Error: {"message": "embedded"}\nmessage: embedded'


class _BrokenRule(Rule):
    def applies(self, *args: object, **kwargs: object) -> bool:
        raise RuntimeError("a defect in a rule")


def test_a_rule_that_raises_gives_unrecognised_not_a_crash() -> None:
    rule = _BrokenRule(name="broken", verdict=Verdict.TRANSIENT, match=re.compile("x"), seen="test")
    outcome = Outcome("POST", "https://api.example/v1", status=503, body=b"x")
    result = classify(outcome, [rule])
    assert result.verdict is Verdict.UNRECOGNISED
    assert result.reason == "classifier error RuntimeError"

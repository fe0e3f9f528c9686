"""`python -m retry_transport rules` prints the README's rule tables; the demo's stream reading."""

from __future__ import annotations

import pytest

from retry_transport.__main__ import main
from retry_transport._demo import _stream_outcome
from retry_transport._signatures import rules_markdown


def test_rules_prints_the_rule_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    assert out == rules_markdown()
    assert "Structured fields are read first." in out


def test_the_demo_skips_a_data_line_that_is_not_json() -> None:
    body = b'data: [not json\n\ndata: {"type": "error", "error": {"type": "overloaded_error"}}\n'
    assert _stream_outcome(body) == "200, stream failed: overloaded_error"

"""The README stays true: its two set-up commands, CI running the test one, the rules table."""

from __future__ import annotations

import re
from pathlib import Path

from retry_transport import RetryEvent, Verdict
from retry_transport._signatures import rules_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def first_code_block(text: str) -> list[str]:
    block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands() -> None:
    before = README.split("```", 1)[0]
    assert before.strip().startswith("# retry_transport")
    assert len(before.strip().splitlines()) == 1  # nothing but the title before the commands
    commands = first_code_block(README)
    assert len(commands) == 2
    assert commands[0].endswith("python -m retry_transport demo")
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = first_code_block(README)[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_readme_rules_table_is_the_classifiers_own() -> None:
    table = README.split("<!-- rules:start -->\n", 1)[1].split("<!-- rules:end -->", 1)[0]
    assert table == rules_markdown().rstrip("\n") + "\n"


def test_readme_log_field_table_lists_every_field_a_record_carries() -> None:
    # Before, `retry_paced` and `retry_cause` were on every record but not in the table.
    table = README.split("| field | value |\n", 1)[1].split("\n\n", 1)[0]
    named = {
        name
        for row in table.splitlines()[1:]
        for name in re.findall(r"`(retry_\w+)`", row.split("|")[1])
    }
    event = RetryEvent(
        kind="retry",
        method="POST",
        url="https://api.test/v1/x",
        attempt=1,
        max_attempts=5,
        verdict=Verdict.CONGESTION,
        reason="status 503",
        delay=1.0,
        status=503,
        exception=None,
        blocked_for=0.0,
        transport_name="nim",
    )
    assert named == set(event.log_extra())

"""``retry-transport classify`` run as a user runs it: a subprocess, a file or stdin."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retry_transport import Classification, Verdict
from retry_transport.__main__ import main
from retry_transport._cli_classify import add_arguments, explain, run

ROOT = Path(__file__).resolve().parent.parent


def classify_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "retry_transport", "classify", *args],
        input=stdin,
        capture_output=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_a_file_is_classified_with_its_rule_and_where_it_was_seen(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text("Daily request 200 limit exceeded. Please try again tomorrow.")
    done = classify_cli("--status", "429", str(body))
    assert done.returncode == 0
    out = done.stdout.decode()
    assert "verdict: fatal" in out
    assert "decided by: rule quota-period (seen: " in out
    assert "wait named by the body: none named" in out


def test_stdin_body_with_a_structured_field_and_a_wait() -> None:
    body = (
        b'{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":'
        b'"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":'
        b'"GenerateContentInputTokensPerModelPerMinute-FreeTier"}]},{"@type":'
        b'"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}'
    )
    done = classify_cli("--status", "429", "-", stdin=body)
    assert done.returncode == 0
    out = done.stdout.decode()
    assert "verdict: congestion" in out
    assert "structured field quota" in out
    assert "reader google-quota" in out
    assert "wait named by the body: 26s" in out


def test_a_header_and_a_pasted_stream_event() -> None:
    event = (
        b'event: error\ndata: {"error":{"message":"Failed to call a function.",'
        b'"type":"invalid_request_error","code":"tool_use_failed"}}\n\n'
    )
    done = classify_cli("--header", "x-request-id: abc", stdin=event)
    out = done.stdout.decode()
    assert done.returncode == 0
    assert "verdict: transient" in out
    assert "attempts: at most 2 in total" in out


@pytest.mark.parametrize(
    ("header", "said"), [("Retry-After: 7", "7s"), ("retry-after-ms: 1500", "1.5s")]
)
def test_a_wait_named_by_a_header_is_reported(header: str, said: str) -> None:
    # Before, a 429's Retry-After given with --header was not mentioned at all.
    out = io.StringIO()
    args = argparse.Namespace(status=429, header=[header], file="-")
    assert run(args, stdin=io.StringIO('{"error": {"message": "slow down"}}'), stdout=out) == 0
    assert out.getvalue().endswith(
        f"wait named by the body: none named\nwait named by the headers: {said}\n"
    )


def test_no_header_wait_says_nothing_of_headers() -> None:
    out = io.StringIO()
    args = argparse.Namespace(status=429, header=["x-request-id: abc"], file="-")
    assert run(args, stdin=io.StringIO("{}"), stdout=out) == 0
    assert "headers" not in out.getvalue()


def test_an_unknown_400_reports_its_shape() -> None:
    done = classify_cli(stdin=b"Bad Request")
    assert done.returncode == 0
    assert "decided by: the shape of a 400" in done.stdout.decode()


def test_a_status_default_is_reported() -> None:
    done = classify_cli("--status", "404", stdin=b"nope")
    assert "decided by: status 404" in done.stdout.decode()


def test_a_missing_file_is_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    done = classify_cli(str(tmp_path / "absent.json"))
    assert done.returncode == 2
    assert b"cannot read" in done.stderr
    assert b"No such file" in done.stderr


def test_a_status_that_is_not_a_number_is_exit_2() -> None:
    done = classify_cli("--status", "abc", stdin=b"x")
    assert done.returncode == 2
    assert b"argument --status: must be an HTTP status, 100 to 599, got 'abc'" in done.stderr
    assert done.stdout == b""


@pytest.mark.parametrize("status", ["99", "600", "-400", "40000"])
def test_a_status_outside_http_is_exit_2(status: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--status", status, "-"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("status", ["100", "599"])
def test_the_ends_of_the_status_range_are_taken(status: str) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--status", status]).status == int(status)


def test_a_header_without_a_colon_is_exit_2() -> None:
    done = classify_cli("--header", "nocolon", stdin=b"x")
    assert done.returncode == 2
    assert b"--header must look like 'Name: value'" in done.stderr


def test_in_process_main_reads_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = tmp_path / "b.txt"
    body.write_bytes(b'{"error":{"type":"overloaded_error","message":"Overloaded"}}')
    assert main(["classify", "--status", "529", str(body)]) == 0
    assert "decided by: rule overloaded (seen: " in capsys.readouterr().out


def test_in_process_run_reads_stdin() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--header", "x-amzn-errortype: ThrottlingException"])
    out = io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(b"{}"))
    assert run(args, stdin=stdin, stdout=out) == 0
    assert "verdict: congestion" in out.getvalue()


def test_in_process_run_reads_a_text_only_stdin() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    assert run(parser.parse_args([]), stdin=io.StringIO(""), stdout=out) == 0
    assert "decided by: rule bodyless-400 (seen: " in out.getvalue()


def test_in_process_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(tmp_path / "none")]) == 2
    assert main(["classify", "--header", ": v", "-"]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err
    assert "--header must look like" in err


def test_explain_names_an_unknown_reason_as_it_is() -> None:
    text = explain(Classification(Verdict.FATAL, "classifier error X"))
    assert "decided by: classifier error X" in text
    assert "decided by: rule nope" in explain(Classification(Verdict.FATAL, "rule nope"))
    assert "decided by: field x (nope)" in explain(Classification(Verdict.FATAL, "field x (nope)"))


def test_in_process_run_reads_a_pasted_stream_event() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    event = b'event: error\ndata: {"error":{"code":"tool_use_failed"}}\n\n'
    assert run(parser.parse_args([]), stdin=io.TextIOWrapper(io.BytesIO(event)), stdout=out) == 0
    text = out.getvalue()
    assert "reader sampling-failure (seen: " in text
    assert "attempts: at most 2 in total" in text


def test_in_process_run_names_the_shape() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    assert run(parser.parse_args([]), stdin=io.StringIO("Bad Request"), stdout=out) == 0
    assert "decided by: the shape of a 400" in out.getvalue()


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (
            [],
            b'event: error\ndata: {"message":"messages.1.content: bad"}\n\n',
            "stream error event",
        ),
        (["--status", "502"], b'{"error":{"message":"messages.1.content: bad"}}', "5xx that names"),
    ],
)
def test_in_process_run_names_the_shape_of_a_stream_event_and_a_5xx(
    status: list[str], body: bytes, said: str
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(body))
    assert run(parser.parse_args(status), stdin=stdin, stdout=out) == 0
    assert f"decided by: the shape of a {said}" in out.getvalue()

"""``retry-transport classify``: how the classifier judges one error body, for users."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from ._classify import classify
from ._signatures import RULES
from ._structured import READERS
from ._verdict import Classification, Outcome
from ._waits import server_wait

__all__ = ["add_arguments", "explain", "run"]

_PROG = "retry-transport classify"


def _status(value: str) -> int:
    """``--status``: an HTTP status code, 100 to 599."""
    try:
        status = int(value)
    except ValueError:
        status = 0
    if not 100 <= status <= 599:
        raise argparse.ArgumentTypeError(f"must be an HTTP status, 100 to 599, got {value!r}")
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``classify`` command's arguments."""
    parser.add_argument(
        "--status",
        type=_status,
        default=None,
        help="the HTTP status the body came with (default 400; 200 for an SSE error event)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="a response header (repeatable), e.g. 'x-amzn-errortype: ThrottlingException'",
    )
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="the error body, or '-' (the default) for standard input",
    )


def _headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"--header must look like 'Name: value', got {value!r}")
        headers[name.strip().lower()] = rest.strip()
    return headers


def _stream_payload(body: bytes) -> bytes | None:
    """The ``data:`` payload of a pasted SSE error event, or ``None`` if ``body`` is not one."""
    text = body.decode("utf-8", errors="replace").lstrip()
    if not text.startswith(("event:", "data:")):
        return None
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return "\n".join(data).encode("utf-8")


def _decided_by(classification: Classification) -> str:
    reason = classification.reason
    if reason.startswith("rule "):
        name = reason.removeprefix("rule ")
        for rule in RULES:
            if rule.name == name:
                return f"rule {name} (seen: {rule.seen})"
    if reason.startswith("field ") and reason.endswith(")"):
        reader = reason.rsplit("(", 1)[1].rstrip(")")
        for known in READERS:
            if known.name == reader:
                field = reason.removeprefix("field ").rsplit(" (", 1)[0]
                return f"structured field {field}, reader {reader} (seen: {known.seen})"
    if reason.startswith("shape: "):
        if reason.endswith("(stream event)"):
            return "the shape of a stream error event that no rule or field decides"
        if " inside a " in reason:
            return "the shape of a 5xx that names a cause, judged as a 400 is"
        return "the shape of a 400 that no rule or field decides"
    return reason


def explain(classification: Classification) -> str:
    """What ``classify`` prints: verdict, what decided it, the reason and any wait."""
    wait = "none named" if classification.wait is None else f"{classification.wait:g}s"
    lines = [
        f"verdict: {classification.verdict.value}",
        f"decided by: {_decided_by(classification)}",
        f"reason: {classification.reason}",
        f"wait named by the body: {wait}",
    ]
    if classification.attempts is not None:
        lines.append(f"attempts: at most {classification.attempts} in total")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Classify the body ``args`` names and print the explanation; 2 on bad input."""
    out = sys.stdout if stdout is None else stdout
    source = sys.stdin if stdin is None else stdin
    try:
        headers = _headers(args.header)
        if args.file == "-":
            body = source.buffer.read() if hasattr(source, "buffer") else source.read().encode()
        else:
            with open(args.file, "rb") as handle:
                body = handle.read()
    except ValueError as error:
        sys.stderr.write(f"{_PROG}: {error}\n")
        return 2
    except OSError as error:
        sys.stderr.write(f"{_PROG}: cannot read {args.file!r}: {error.strerror or error}\n")
        return 2
    payload = _stream_payload(body)
    stream = payload is not None
    status = args.status if args.status is not None else (200 if stream else 400)
    outcome = Outcome(
        "POST",
        "https://upstream.invalid/",
        status=status,
        headers=headers,
        body=body if payload is None else payload,
        stream_error=stream and status == 200,
    )
    out.write(explain(classify(outcome)))
    wait = server_wait(headers, now=time.time())
    if wait is not None:
        # What the transport honours before any wait a body names.
        out.write(f"wait named by the headers: {wait:g}s\n")
    return 0

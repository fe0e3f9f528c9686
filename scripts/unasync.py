"""Generate the sync twins of retry_transport's async modules by a token rewrite.

The async code is the one source: ``python scripts/unasync.py`` writes each sync module from
its async one; ``python scripts/unasync.py --check`` writes nothing and exits 1, naming the
file, if a generated module differs from what its source would give (a hand edit, or a source
edited without regenerating). The idea is httpcore's ``scripts/unasync.py``; the rules here
are this package's own.

The rewrite works on whole words, in order. What async and sync code do differently beyond
it lives in ``retry_transport/_io.py`` as ``async_*``/``sync_*`` pairs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "retry_transport"

# (async source, generated sync module), relative to the package.
FILES = (
    ("_async.py", "_sync.py"),
    ("_replay_async.py", "_replay_sync.py"),
)

# Regular expressions and their replacements, applied in this order to every line. Words are
# matched whole (``\b``); the limiter's and the ticket's awaited calls are named with their
# receiver.
RULES: tuple[tuple[str, str], ...] = (
    (r"\basync def ", "def "),
    (r"\basync with ", "with "),
    (r"\basync for ", "for "),
    (r"\bawait ", ""),
    (r"\bRetryTransport\b", "SyncRetryTransport"),
    (r"\bhandle_async_request\b", "handle_request"),
    (r"\bAsyncBaseTransport\b", "BaseTransport"),
    (r"\bAsyncTransportBase\b", "SyncTransportBase"),
    (r"\bAsyncHTTPTransport\b", "HTTPTransport"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncReplay\b", "SyncReplay"),
    (r"\bAsyncSleep\b", "SyncSleep"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\blimiter\.gate\(", "limiter.gate_sync("),
    (r"\blimiter\.block\(", "limiter.block_sync("),
    (r"\bticket\.gate\(", "ticket.gate_sync("),
    (r"\bticket\.block\(", "ticket.block_sync("),
    (r"\bticket\.done\(", "ticket.done_sync("),
    (r"\basync_(\w+)", r"sync_\1"),
    (r"\b_is_async = True\b", "_is_async = False"),
    (r"\b_replay_async\b", "_replay_sync"),
    (r"\basync\b", "sync"),
)

_COMPILED = tuple((re.compile(pattern), replacement) for pattern, replacement in RULES)


def header(source: str) -> str:
    """The comment every generated module starts with."""
    return (
        f"# Generated from retry_transport/{source} by scripts/unasync.py: do not edit.\n"
        "# Edit the source, then run `python scripts/unasync.py`.\n"
    )


def unasync(source_name: str, text: str) -> str:
    """The sync module generated from the async module ``text``, formatted as the project's
    own code is (imports sorted, ``ruff format``), so that it passes the same lint."""
    lines = []
    for line in text.splitlines(keepends=True):
        for pattern, replacement in _COMPILED:
            line = pattern.sub(replacement, line)
        lines.append(line)
    code = header(source_name) + "".join(lines)
    target = f"retry_transport/{source_name}"  # so that ruff applies the package's settings
    code = _ruff(["check", "--select", "I", "--fix", "--quiet", "--stdin-filename", target], code)
    return _ruff(["format", "--quiet", "--stdin-filename", target], code)


def _ruff(args: list[str], code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "-"],
        input=code,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ruff {args[0]} failed on generated code:\n{done.stderr}{done.stdout}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a generated file differs"
    )
    args = parser.parse_args(argv)
    stale = []
    for source, target in FILES:
        expected = unasync(source, (PACKAGE / source).read_text(encoding="utf-8"))
        path = PACKAGE / target
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == expected:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT).as_posix())
        else:
            path.write_text(expected, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT).as_posix()}")
    for name in stale:
        print(f"{name} differs from what scripts/unasync.py generates; run it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

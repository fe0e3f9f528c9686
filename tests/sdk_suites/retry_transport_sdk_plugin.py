"""A pytest plugin for running an SDK's own test suite with every client transport wrapped.

Loaded by `.ci/sdk-suites.sh` into the openai or anthropic test suite (``-p
retry_transport_sdk_plugin``, this directory on ``PYTHONPATH``). Environment:

- ``RETRY_TRANSPORT_SDK``: ``openai`` or ``anthropic``, the suite being run (required).
- ``RETRY_TRANSPORT_SDK_WRAP``: ``1`` (default) wraps every transport of every httpx2 (and
  httpx) client the suite builds in `RetryTransport` / `SyncRetryTransport`; ``0`` runs the
  suite unwrapped, for the baseline.

Tests listed in ``deselected.txt`` for the SDK are deselected in both modes (they cannot run
here: a mock server, files or tools the source distribution lacks). Tests listed in
``expected-failures.txt`` may fail when wrapped (each with its reason: mostly tests that count
the SDK's own retries, which the transport now makes below it). The run fails when any other
test fails, and when nothing was wrapped. Listed failures that passed are reported as stale.
Our transports wait zero seconds (`retry_transport.testing.set_testing`): the suites patch
their own sleeps, and ours would otherwise sleep for real. Each has a limiter of its own
without a retry budget: the suites keep session-wide clients, whose budget the error tests
would otherwise spend across unrelated tests, making failures depend on the order of tests.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SEPARATOR = " -- "


@dataclass
class Entry:
    """One listed test (a node id, or a prefix of node ids) and the reason it is listed."""

    nodeid: str
    reason: str
    matched: int = 0

    def matches(self, nodeid: str) -> bool:
        prefix = self.nodeid
        if prefix.endswith("/") or ("[" in prefix and not prefix.endswith("]")):
            return nodeid.startswith(prefix)  # a directory, or a prefix of parameter ids
        return nodeid == prefix or nodeid.startswith((prefix + "[", prefix + "::"))


def read_list(path: Path, sdk: str) -> list[Entry]:
    """The entries of ``path`` for ``sdk``: lines ``<sdk> <nodeid> -- <reason>``."""
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, reason = line.partition(SEPARATOR)
        name, _, nodeid = head.strip().partition(" ")
        if not sep or not reason.strip() or not nodeid.strip():
            raise pytest.UsageError(f"{path.name}:{number}: want '<sdk> <nodeid> -- <reason>'")
        if name == sdk:
            entries.append(Entry(nodeid.strip(), reason.strip()))
    return entries


def first_match(entries: Iterable[Entry], nodeid: str) -> Entry | None:
    for entry in entries:
        if entry.matches(nodeid):
            return entry
    return None


@dataclass
class Wrapping:
    """Patches the httpx2 and httpx client classes to wrap their transports, and counts."""

    wrapped: int = 0
    refused: list[str] = field(default_factory=list)

    def wrap(self, transport: Any, is_async: bool) -> Any:
        from retry_transport import RetryTransport, SharedLimiter, SyncRetryTransport

        if transport is None or isinstance(transport, RetryTransport | SyncRetryTransport):
            return transport
        wrapper: Any = RetryTransport if is_async else SyncRetryTransport
        try:
            wrapped = wrapper(transport, limiter=SharedLimiter(budget=None))
        except TypeError as exc:  # a transport we cannot wrap: say so at the end
            self.refused.append(f"{type(transport).__qualname__}: {exc}")
            return transport
        self.wrapped += 1
        return wrapped

    def install(self) -> None:
        modules: list[Any] = []
        for name in ("httpx2", "httpx"):
            try:
                module = __import__(name)
            except ImportError:
                continue
            if all(module is not seen for seen in modules):
                modules.append(module)
        for module in modules:
            self._patch(module.Client, is_async=False)
            self._patch(module.AsyncClient, is_async=True)

    def _patch(self, cls: type, *, is_async: bool) -> None:
        original: Callable[..., None] = cls.__init__  # type: ignore[misc]
        wrapping = self

        @functools.wraps(original)
        def __init__(client: Any, *args: Any, **kwargs: Any) -> None:
            original(client, *args, **kwargs)
            client._transport = wrapping.wrap(client._transport, is_async)
            client._mounts = {
                pattern: wrapping.wrap(transport, is_async)
                for pattern, transport in client._mounts.items()
            }

        cls.__init__ = __init__  # type: ignore[misc]


class SuitePlugin:
    """Deselects, wraps, and compares the failures with the expected ones."""

    def __init__(self, sdk: str, wrap: bool) -> None:
        self.sdk = sdk
        self.wrap = wrap
        self.deselected = read_list(HERE / "deselected.txt", sdk)
        self.expected = read_list(HERE / "expected-failures.txt", sdk) if wrap else []
        self.wrapping = Wrapping()
        self.failed: dict[str, Entry | None] = {}
        self.passed = 0
        self.skipped = 0

    def install(self) -> None:
        if self.wrap:
            from retry_transport.testing import set_testing

            set_testing(True)
            self.wrapping.install()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep, drop = [], []
        for item in items:
            entry = first_match(self.deselected, item.nodeid)
            if entry is None:
                keep.append(item)
            else:
                entry.matched += 1
                drop.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed.setdefault(report.nodeid, first_match(self.expected, report.nodeid))
        elif report.when == "call" and report.passed:
            self.passed += 1
        elif report.skipped:
            self.skipped += 1

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        unexpected = sorted(nodeid for nodeid, entry in self.failed.items() if entry is None)
        for entry in self.expected:
            entry.matched = sum(1 for e in self.failed.values() if e is entry)
        stale = [entry.nodeid for entry in self.expected if entry.matched == 0]
        expected = len(self.failed) - len(unexpected)
        mode = "wrapped" if self.wrap else "unwrapped"
        lines = [
            f"retry_transport sdk-suites: {self.sdk} {mode}: {self.passed} passed, "
            f"{expected} expected failures, {len(unexpected)} unexpected failures, "
            f"{self.skipped} skipped, {sum(e.matched for e in self.deselected)} deselected",
        ]
        if self.wrap:
            lines.append(f"  transports wrapped: {self.wrapping.wrapped}")
            lines += [f"  not wrapped: {why}" for why in sorted(set(self.wrapping.refused))]
        lines += [f"  UNEXPECTED FAILURE: {nodeid}" for nodeid in unexpected]
        lines += [f"  stale expected failure (passed): {nodeid}" for nodeid in stale]
        print("\n" + "\n".join(lines), file=sys.stderr)
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            return  # an interrupted or broken run keeps its own status
        bad = bool(unexpected) or (self.wrap and self.wrapping.wrapped == 0)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED if bad else pytest.ExitCode.OK


def pytest_configure(config: pytest.Config) -> None:
    sdk = os.environ.get("RETRY_TRANSPORT_SDK", "")
    if sdk not in ("openai", "anthropic"):
        raise pytest.UsageError("set RETRY_TRANSPORT_SDK to openai or anthropic")
    plugin = SuitePlugin(sdk, wrap=os.environ.get("RETRY_TRANSPORT_SDK_WRAP", "1") != "0")
    plugin.install()
    config.pluginmanager.register(plugin, "retry_transport_sdk_suite")

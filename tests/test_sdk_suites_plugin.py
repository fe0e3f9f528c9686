"""The plugin `.ci/sdk-suites.sh` loads into the SDKs' own test suites: its lists parse, every
entry has a reason, its node-id matching, and its wrapping of every client transport."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import httpx2
import pytest

from retry_transport import RetryTransport, SyncRetryTransport

HERE = Path(__file__).parent / "sdk_suites"


def _plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "retry_transport_sdk_plugin", HERE / "retry_transport_sdk_plugin.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


plugin = _plugin()


@pytest.mark.parametrize("name", ["deselected.txt", "expected-failures.txt"])
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_every_listed_test_has_a_reason(name: str, sdk: str) -> None:
    entries = plugin.read_list(HERE / name, sdk)
    assert entries
    assert all(entry.reason and entry.nodeid.startswith("tests/") for entry in entries)
    assert len({entry.nodeid for entry in entries}) == len(entries)


def test_a_line_without_a_reason_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("# a comment\n\nopenai tests/test_x.py::test_y\n")
    with pytest.raises(pytest.UsageError, match=r"list\.txt:3: want"):
        plugin.read_list(listed, "openai")


def test_entries_match_their_tests_parameters_and_members() -> None:
    entry = plugin.Entry("tests/test_x.py::TestA::test_b", "why")
    assert entry.matches("tests/test_x.py::TestA::test_b")
    assert entry.matches("tests/test_x.py::TestA::test_b[sync-1]")
    assert not entry.matches("tests/test_x.py::TestA::test_bc")
    assert plugin.Entry("tests/test_x.py::TestA", "why").matches("tests/test_x.py::TestA::test_b")
    assert plugin.Entry("tests/api/", "why").matches("tests/api/test_z.py::test_q")
    partial = plugin.Entry("tests/test_x.py::test_s[error event", "why")
    assert partial.matches("tests/test_x.py::test_s[error event-beta]")
    assert not partial.matches("tests/test_x.py::test_s[plain-beta]")


def test_every_client_transport_and_mount_is_wrapped_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (httpx, httpx2):
        monkeypatch.setattr(module.Client, "__init__", module.Client.__init__)
        monkeypatch.setattr(module.AsyncClient, "__init__", module.AsyncClient.__init__)
    wrapping = plugin.Wrapping()
    wrapping.install()
    mounted = httpx2.HTTPTransport()
    with httpx2.Client(mounts={"http://mounted.test": mounted, "http://none.test": None}) as c:
        assert isinstance(c._transport, SyncRetryTransport)
        wrapped_mount = c._mounts[
            next(iter(k for k in c._mounts if k.pattern.startswith("http://m")))
        ]
        assert isinstance(wrapped_mount, SyncRetryTransport)
        assert wrapped_mount.transport is mounted
        assert None in c._mounts.values()
    ours = RetryTransport(httpx.AsyncHTTPTransport())
    async_client = httpx.AsyncClient(transport=ours)
    assert async_client._transport is ours  # already ours: not wrapped again
    refused = httpx.Client(transport="not a transport")  # type: ignore[arg-type]
    kept: object = refused._transport
    assert kept == "not a transport"
    assert wrapping.wrapped == 2
    assert len(wrapping.refused) == 1
    assert wrapping.refused[0].startswith("str: transport must be")

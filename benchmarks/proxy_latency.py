"""What the retry sidecar adds on loopback: per-request latency, time to first content, and a
large stream's throughput and memory.

    .venv/bin/python -m benchmarks.proxy_latency [--requests 2000] [--streams 500] [--gib 1]

The scripted upstream (`retry_transport.testing.upstream.Upstream`) runs in this process; the
sidecar runs as ``python -m retry_transport proxy --upstream <upstream>`` in a child process,
exactly as a user starts it (default options: INFO logging, one access line per request). One
keep-alive httpx client measures, alternating request by request between the upstream directly
and the sidecar, so that drift hits both alike:

- **request**: a non-streamed ``POST /v1/messages`` (a canned Anthropic answer, 322 bytes),
  from sending to the last body byte;
- **first content**: a streamed ``POST /v1/messages``, from sending to the arrival of the
  first ``content_block_delta`` (what a user sees first; the sidecar holds the preamble until
  then, as the transport does);
- **large stream**: ``--gib`` GiB of 256 KiB chunks, once directly and once through the
  sidecar: throughput, and how much the sidecar's peak resident memory (VmHWM) grew.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from retry_transport.testing.upstream import Reply, Upstream

__all__ = ["main"]

_CHUNK = b"\xab" * (256 * 1024)
_MIB = 1024 * 1024
_BODY = {
    "model": "claude-sonnet-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "x"}],
}
_COMMAND = (sys.executable, "-m", "retry_transport", "proxy")


class _Sidecar:
    """``python -m retry_transport proxy --upstream URL --port 0`` in a child process."""

    def __init__(self, upstream: str, log: Path) -> None:
        self._log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*_COMMAND, "--upstream", upstream, "--port", "0"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", self._log.read_text())
            if found:
                url = found.group(1)
                try:
                    httpx.get(f"{url}/_retry_transport/healthz").raise_for_status()
                except httpx.HTTPError:
                    pass
                else:
                    return url
            time.sleep(0.05)
        raise RuntimeError(f"the sidecar did not start:\n{self._log.read_text()}")

    def peak_rss(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
        return int(found.group(1)) * 1024 if found else 0

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(30)


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _request(client: httpx.Client, base: str) -> Callable[[], object]:
    def call() -> object:
        response = client.post(f"{base}/v1/messages", json=_BODY)
        assert response.status_code == 200, response.text
        return response.content

    return call


def _first_content(client: httpx.Client, base: str) -> float:
    """Seconds from sending a streamed request to the arrival of its first content event."""
    start = time.perf_counter()
    seen = b""
    first = None
    with client.stream("POST", f"{base}/v1/messages", json={**_BODY, "stream": True}) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            if first is None:
                seen += chunk
                if b"content_block_delta" in seen:
                    first = time.perf_counter() - start
    assert first is not None
    return first


def _large(client: httpx.Client, base: str, size: int) -> float:
    """Seconds to stream ``size`` bytes from ``base``/large."""
    got = 0
    start = time.perf_counter()
    with client.stream("GET", f"{base}/large") as response:
        for chunk in response.iter_raw():
            got += len(chunk)
    elapsed = time.perf_counter() - start
    assert got == size, (got, size)
    return elapsed


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1e3

    return {"median_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99)}


def run(requests: int, streams: int, gib: float) -> dict[str, object]:
    """Measure; the figures as a JSON-ready dict."""
    count = max(1, round(gib * 1024 * 1024 * 1024 / len(_CHUNK)))
    size = count * len(_CHUNK)

    def large_body() -> Iterator[bytes]:
        for _ in range(count):
            yield _CHUNK

    results: dict[str, object] = {}
    with Upstream() as upstream, tempfile.TemporaryDirectory() as tmp:
        binary = (("content-type", "application/octet-stream"),)
        upstream.script("/large", Reply(200, headers=binary, chunks=large_body))
        sidecar = _Sidecar(upstream.url, Path(tmp) / "sidecar.log")
        try:
            with httpx.Client(timeout=60.0) as client:
                targets = {"direct": upstream.url, "sidecar": sidecar.url}
                for base in targets.values():  # warm up connections and code paths
                    for _ in range(50):
                        _request(client, base)()
                        _first_content(client, base)
                timings: dict[str, list[float]] = {name: [] for name in targets}
                for index in range(requests):
                    order = list(targets.items())
                    if index % 2:
                        order.reverse()
                    for name, base in order:
                        timings[name].append(_timed(_request(client, base)))
                first: dict[str, list[float]] = {name: [] for name in targets}
                for index in range(streams):
                    order = list(targets.items())
                    if index % 2:
                        order.reverse()
                    for name, base in order:
                        first[name].append(_first_content(client, base))
                rss_before = sidecar.peak_rss()
                large = {name: _large(client, base, size) for name, base in targets.items()}
                rss_grown = sidecar.peak_rss() - rss_before
        finally:
            exit_status = sidecar.stop()
    for name in ("direct", "sidecar"):
        results[f"request_{name}"] = _stats(timings[name])
        results[f"first_content_{name}"] = _stats(first[name])
        results[f"large_{name}_mib_per_s"] = size / _MIB / large[name]
    results["request_added_median_ms"] = (
        statistics.median(timings["sidecar"]) - statistics.median(timings["direct"])
    ) * 1e3
    results["first_content_added_median_ms"] = (
        statistics.median(first["sidecar"]) - statistics.median(first["direct"])
    ) * 1e3
    results["large_bytes"] = size
    results["sidecar_peak_rss_growth_mib"] = rss_grown / _MIB
    results["sidecar_exit_status_after_sigterm"] = exit_status
    results["requests"] = requests
    results["streams"] = streams
    results["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    return results


def _table(results: dict[str, object]) -> str:
    def row(label: str, key: str) -> str:
        direct = results[f"{key}_direct"]
        sidecar = results[f"{key}_sidecar"]
        assert isinstance(direct, dict)
        assert isinstance(sidecar, dict)
        cells = [f"{direct[k]:.3f} / {sidecar[k]:.3f}" for k in ("median_ms", "p90_ms", "p99_ms")]
        return f"| {label} | {' | '.join(cells)} | {results[f'{key}_added_median_ms']:+.3f} |"

    size = results["large_bytes"]
    assert isinstance(size, int)
    return "\n".join(
        [
            "| loopback, ms (direct / sidecar) | median | p90 | p99 | added (median) |",
            "|---|---|---|---|---|",
            row(f"request ({results['requests']} non-streamed POSTs)", "request"),
            row(f"first content ({results['streams']} streamed POSTs)", "first_content"),
            "",
            f"| {size / _MIB / 1024:g} GiB stream | direct | sidecar |",
            "|---|---|---|",
            f"| throughput, MiB/s | {results['large_direct_mib_per_s']:.0f} | "
            f"{results['large_sidecar_mib_per_s']:.0f} |",
            f"| sidecar peak memory growth | | {results['sidecar_peak_rss_growth_mib']:.1f} MiB |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="non-streamed requests each way")
    parser.add_argument("--streams", type=int, default=500, help="streamed requests each way")
    parser.add_argument("--gib", type=float, default=1.0, help="size of the large stream, GiB")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    results = run(args.requests, args.streams, args.gib)
    print(_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

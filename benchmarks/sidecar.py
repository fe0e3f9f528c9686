"""The sidecar side by side: the upstream directly, bare pass-throughs on the same server stack
(the floors), our sidecar, and LiteLLM's proxy, all forwarding to the same loopback upstream.

    .venv/bin/python -m benchmarks.sidecar [--requests 2000] [--streams 500] [--litellm PATH]
        [--baseline REF] [--workers N] [--floors all|own] [--json FILE] [--chart FILE]

Every server is a child process: the scripted upstream (`retry_transport.testing.upstream`,
its canned OpenAI chat completion), four floors (`benchmarks._floor`: a minimal ASGI app on
uvicorn and the sidecar's event loop, forwarding with one pooled httpx client on h11, with
one aiohttp session on h11 or on httptools, or with the sidecar's own pool on httptools as the
sidecar serves; no retry logic, no routing, no logging), the sidecar exactly as a user starts it
(``python -m retry_transport proxy --upstream URL``, default options, INFO logging) and
LiteLLM's proxy (``litellm --config`` with one ``openai/<model>`` entry whose ``api_base`` is
the upstream). This process is the client: one keep-alive httpx client per target.

- **request**: a non-streamed ``POST /v1/chat/completions``, from sending to the last body
  byte; ``--requests`` rounds, each sending one request to every target in turn (the order
  rotating from round to round, so that drift and the machine's other load hit all alike);
- **first content**: a streamed one, from sending to the arrival of the first chunk with
  content (``--streams`` rounds, interleaved the same way);
- **concurrent**: ``--concurrency`` clients at once, ``--burst`` requests each, per target and
  round (``--rounds``, order rotating): latency percentiles and requests per second;
- **CPU per request**: the CPU time (user + system) each server process (and its workers) used
  during the request rounds, divided by the requests it served; the least noisy figure on a
  shared machine. **CPU per stream** the same over the streamed rounds (each stream read to
  its end).

"Added" is a target's percentile minus the upstream's own. The machine's load (load average,
and the CPU time that other processes used while the benchmark ran) is part of the report.
``--baseline REF`` also measures the sidecar as it was at git ``REF`` (its code, run in a
tree of its own, with the packages installed here) in the same run;
``--workers N`` adds the sidecar with ``--workers N``; ``--floors own`` keeps only the two
floors on httptools (with the sidecar's own pool, and with aiohttp), for quicker comparisons.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ._common import baseline_tree, machine_facts, write_json

__all__ = ["main"]

_MODEL = "gpt-4o-mini"
_PATH = "/v1/chat/completions"
_BODY = {"model": _MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
_STREAM_BODY = {**_BODY, "stream": True}
_HEADERS = {"authorization": "Bearer sk-x"}
_CONTENT = re.compile(rb'"content":\s*"[^"]')
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)/")
_UPSTREAM = """
import sys
from retry_transport.testing.upstream import Upstream
with Upstream() as up:
    print(f"listening on {up.url}/", flush=True)
    sys.stdin.read()
"""
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class _Child:
    """A server in a child process, its output in a log file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    health: str | None = None
    """A path answering 200 once the server is ready (else: its "listening on" line)."""
    url: str | None = None
    cwd: Path | None = None
    """Where it runs (``python -m``/``-c`` import from there first, before ``PYTHONPATH``)."""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE,
                env={**os.environ, **self.env},
                cwd=self.cwd,
            )

    def ready(self, timeout: float) -> str:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if self.url is None:
                found = _LISTENING.search(self.log.read_text(errors="replace"))
                self.url = found.group(1) if found else None
            if self.url is not None:
                try:
                    path = self.health or "/"
                    if httpx.get(self.url + path, timeout=5.0).status_code < 500:
                        return self.url
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f} s:\n{tail}")

    def pids(self) -> list[int]:
        """The child's process and its own children (uvicorn's workers)."""
        if self.process is None:
            return []
        found = [self.process.pid]
        for pid in found:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                found.extend(int(child) for child in children)
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _litellm_path(given: str | None) -> str | None:
    if given:
        return given
    for candidate in (shutil.which("litellm"), "/tmp/llvenv/bin/litellm"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- measuring ----------------------------------------------------------------------------------


def _request(client: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    response = client.post(url + _PATH, json=_BODY, headers=_HEADERS)
    elapsed = time.perf_counter() - start
    if response.status_code != 200 or b'"content"' not in response.content:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:500]}")
    return elapsed


def _first_content(client: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    seen = b""
    first = None
    with client.stream("POST", url + _PATH, json=_STREAM_BODY, headers=_HEADERS) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.read()[:500]!r}")
        for chunk in response.iter_raw():
            if first is None:
                seen += chunk
                if _CONTENT.search(seen):
                    first = time.perf_counter() - start
    if first is None:
        raise RuntimeError(f"{url}: a stream without content: {seen[:500]!r}")
    return first


async def _burst(url: str, concurrency: int, each: int) -> tuple[list[float], float]:
    """``concurrency`` clients sending ``each`` requests one after another; the latencies and
    the seconds the burst took."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def one_client() -> None:
            for _ in range(each):
                start = time.perf_counter()
                response = await client.post(url + _PATH, json=_BODY, headers=_HEADERS)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: {response.status_code} {response.text[:500]}")

        # Warm every connection first, then measure.
        await asyncio.gather(*(client.post(url + _PATH, json=_BODY) for _ in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return latencies, time.perf_counter() - start


def _rotations(names: Sequence[str], rounds: int) -> Iterator[list[str]]:
    for index in range(rounds):
        shift = index % len(names)
        yield [*names[shift:], *names[:shift]]


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1e3

    return {"median_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "n": len(ordered)}


class _CpuMeter:
    """The machine's busy CPU time, and our processes' share of it, over a stretch."""

    def __init__(self, ours: Callable[[], list[int]]) -> None:
        self._ours = ours
        self._start = self._read()

    @staticmethod
    def _machine() -> tuple[int, int]:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields[:8]) - idle, sum(fields[:8])

    def _own(self) -> int:
        total = 0
        for pid in [os.getpid(), *self._ours()]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total

    def _read(self) -> tuple[float, int, int, int]:
        busy, total = self._machine()
        return time.monotonic(), busy, total, self._own()

    def report(self) -> dict[str, float]:
        now, busy, _, own = self._read()
        seconds = now - self._start[0]
        machine_busy = (busy - self._start[1]) / _TICKS
        ours = (own - self._start[3]) / _TICKS
        return {
            "seconds": round(seconds, 1),
            "machine_busy_cores": round(machine_busy / seconds, 2),
            "benchmark_cores": round(ours / seconds, 2),
            "other_processes_cores": round(max(0.0, machine_busy - ours) / seconds, 2),
        }


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"skipped": {}}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        upstream = _Child("upstream", [sys.executable, "-c", _UPSTREAM], scratch / "upstream.log")
        upstream.start()
        children = [upstream]
        try:
            up = upstream.ready(30)
            python = [sys.executable]
            floors = [
                _Child(
                    "floor: uvicorn + httpx",
                    [*python, "-m", "benchmarks._floor", "--upstream", up],
                    scratch / "floor-httpx.log",
                ),
                _Child(
                    "floor: uvicorn + aiohttp",
                    [*python, "-m", "benchmarks._floor", "--upstream", up, "--client", "aiohttp"],
                    scratch / "floor-aiohttp.log",
                ),
                _Child(
                    "floor: uvicorn (httptools) + aiohttp",
                    [
                        *python,
                        "-m",
                        "benchmarks._floor",
                        "--upstream",
                        up,
                        "--client",
                        "aiohttp",
                        "--http",
                        "httptools",
                    ],
                    scratch / "floor-httptools.log",
                ),
                _Child(
                    "floor: uvicorn (httptools) + wire",
                    [
                        *python,
                        "-m",
                        "benchmarks._floor",
                        "--upstream",
                        up,
                        "--client",
                        "wire",
                        "--http",
                        "httptools",
                    ],
                    scratch / "floor-wire.log",
                ),
            ]
            if args.floors == "own":
                floors = floors[-2:]
            targets = [
                *floors,
                _Child(
                    "sidecar",
                    [*python, "-m", "retry_transport", "proxy", "--upstream", up, "--port", "0"],
                    scratch / "sidecar.log",
                    health="/_retry_transport/healthz",
                ),
            ]
            if args.baseline:
                sidecar_argv = [*python, "-m", "retry_transport", "proxy"]
                tree = baseline_tree(args.baseline, scratch / "baseline")
                targets.append(
                    _Child(
                        f"sidecar before ({args.baseline})",
                        [*sidecar_argv, "--upstream", up, "--port", "0"],
                        scratch / "baseline.log",
                        env={"PYTHONPATH": str(tree)},
                        health="/_retry_transport/healthz",
                        cwd=tree,  # else the current tree, in the working directory, wins
                    )
                )
            if args.workers:
                targets.append(
                    _Child(
                        f"sidecar --workers {args.workers}",
                        [
                            *python,
                            "-m",
                            "retry_transport",
                            "proxy",
                            "--upstream",
                            up,
                            "--port",
                            "0",
                            "--workers",
                            str(args.workers),
                        ],
                        scratch / "workers.log",
                        health="/_retry_transport/healthz",
                    )
                )
            litellm = _litellm_path(args.litellm)
            if args.no_litellm:
                results["skipped"]["litellm"] = "--no-litellm given"
            elif litellm is None:
                results["skipped"]["litellm"] = (
                    "no litellm executable on PATH or at /tmp/llvenv/bin/litellm "
                    "(pip install 'litellm[proxy]' into a venv of its own, then --litellm PATH)"
                )
            else:
                config = scratch / "litellm.yaml"
                config.write_text(
                    "model_list:\n"
                    f"  - model_name: {_MODEL}\n"
                    "    litellm_params:\n"
                    f"      model: openai/{_MODEL}\n"
                    f"      api_base: {up}/v1\n"
                    "      api_key: sk-x\n"
                )
                port = _free_port()
                targets.append(
                    _Child(
                        "litellm proxy",
                        [
                            litellm,
                            "--config",
                            str(config),
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                        ],
                        scratch / "litellm.log",
                        env={
                            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
                            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                            "LITELLM_TELEMETRY": "False",
                            "LITELLM_LOG": "ERROR",
                        },
                        health="/health/liveliness",
                        url=f"http://127.0.0.1:{port}",
                    )
                )
            for child in targets:
                child.start()
                children.append(child)
            urls = {"direct": up}
            for child in list(targets):
                try:
                    urls[child.name] = child.ready(args.start_timeout)
                except RuntimeError as exc:
                    if child.name != "litellm proxy":
                        raise
                    results["skipped"]["litellm"] = f"did not start: {exc}"
                    child.stop()
            results["servers"] = {
                name: {"argv": next((c.argv for c in targets if c.name == name), None)}
                for name in urls
            }
            meter = _CpuMeter(lambda: [pid for child in children for pid in child.pids()])
            pids = {child.name: child.pids for child in targets}
            results["measure"] = _measure(args, urls, pids)
            results["cpu"] = meter.report()
            for child in targets:
                text = child.log.read_text(errors="replace")
                results["servers"][child.name] = {
                    **results["servers"].get(child.name, {}),
                    "log_lines": text.count("\n"),
                    "first_lines": text.splitlines()[:3],
                }
        finally:
            for child in reversed(children):
                child.stop()
    results["load_average_before"] = [round(value, 2) for value in load_before]
    results["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"] = machine_facts()
    results["options"] = {
        key: value for key, value in vars(args).items() if key not in ("json", "chart")
    }
    return results


def _cpu_seconds(pids: list[int]) -> float:
    """The CPU time the processes ``pids`` used so far: from their threads' scheduler
    statistics (nanoseconds) where the kernel keeps them, else from utime + stime (ticks)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
            try:
                nanoseconds = sum(int((t / "schedstat").read_text().split()[0]) for t in tasks)
                total += nanoseconds / 1e9
            except (OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return total


def _measure(
    args: argparse.Namespace, urls: dict[str, str], pids: dict[str, Callable[[], list[int]]]
) -> dict[str, Any]:
    names = list(urls)
    clients = {name: httpx.Client(timeout=60.0) for name in names}
    try:
        for name in names:  # warm up connections and code paths
            for _ in range(args.warmup):
                _request(clients[name], urls[name])
                _first_content(clients[name], urls[name])
        requests: dict[str, list[float]] = {name: [] for name in names}
        cpu_before = {name: _cpu_seconds(pids[name]()) for name in pids}
        for order in _rotations(names, args.requests):
            for name in order:
                requests[name].append(_request(clients[name], urls[name]))
        cpu_us = {
            name: (_cpu_seconds(pids[name]()) - cpu_before[name]) / args.requests * 1e6
            for name in pids
        }
        streams: dict[str, list[float]] = {name: [] for name in names}
        cpu_before = {name: _cpu_seconds(pids[name]()) for name in pids}
        for order in _rotations(names, args.streams):
            for name in order:
                streams[name].append(_first_content(clients[name], urls[name]))
        cpu_stream_us = {
            name: (_cpu_seconds(pids[name]()) - cpu_before[name]) / args.streams * 1e6
            for name in pids
        }
    finally:
        for client in clients.values():
            client.close()
    concurrent: dict[str, list[float]] = {name: [] for name in names}
    busy: dict[str, float] = dict.fromkeys(names, 0.0)
    for order in _rotations(names, args.rounds):
        for name in order:
            latencies, seconds = asyncio.run(_burst(urls[name], args.concurrency, args.burst))
            concurrent[name].extend(latencies)
            busy[name] += seconds
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {
            "request": _percentiles(requests[name]),
            "cpu_us_per_request": None if name not in cpu_us else round(cpu_us[name]),
            "cpu_us_per_stream": None if name not in cpu_us else round(cpu_stream_us[name]),
            "first_content": _percentiles(streams[name]),
            "concurrent": {
                **_percentiles(concurrent[name]),
                "requests_per_s": round(len(concurrent[name]) / busy[name], 1),
            },
        }
    for name in names:
        for kind in ("request", "first_content", "concurrent"):
            direct = out["direct"][kind]
            figures = out[name][kind]
            figures["added"] = {
                key: round(figures[key] - direct[key], 3)
                for key in ("median_ms", "p90_ms", "p99_ms")
            }
    return out


# -- the report ---------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    measure = results["measure"]
    options = results["options"]
    lines = [
        f"| added ms over the upstream (its own in the first row) | request: median | p90 | p99 "
        f"| first content: median | p90 | p99 | {options['concurrency']} at once: median | p99 "
        "| req/s | CPU per request | CPU per stream |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in measure.items():
        cells = []
        for kind, keys in (
            ("request", ("median_ms", "p90_ms", "p99_ms")),
            ("first_content", ("median_ms", "p90_ms", "p99_ms")),
            ("concurrent", ("median_ms", "p99_ms")),
        ):
            for key in keys:
                if name == "direct":
                    cells.append(f"({figures[kind][key]:.3f})")
                else:
                    cells.append(f"{figures[kind]['added'][key]:+.3f}")
        cells.append(f"{figures['concurrent']['requests_per_s']:,.0f}")
        for key in ("cpu_us_per_request", "cpu_us_per_stream"):
            cpu = figures.get(key)
            cells.append("" if cpu is None else f"{cpu} us")
        label = "upstream directly" if name == "direct" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cpu = results["cpu"]
    lines += [
        "",
        f"{options['requests']} non-streamed and {options['streams']} streamed requests per "
        f"target (interleaved), {options['rounds']} rounds of {options['concurrency']} clients x "
        f"{options['burst']} requests; {results['seconds']:.0f} s in all. Load average "
        f"{results['load_average_before'][0]:.2f} before, {results['load_average_after'][0]:.2f} "
        f"after; while measuring, other processes used {cpu['other_processes_cores']:.2f} of "
        f"{results['machine']['cores']} cores (the benchmark's own: "
        f"{cpu['benchmark_cores']:.2f}).",
    ]
    for name, why in results["skipped"].items():
        lines.append(f"{name}: skipped, {why}")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measure = results["measure"]
    names = list(measure)
    labels = ["upstream directly" if name == "direct" else name for name in names]
    kinds = (
        ("request", "non-streamed request"),
        ("first_content", "streamed: time to first content"),
        ("concurrent", f"{results['options']['concurrency']} clients at once"),
    )
    figure, axes = plt.subplots(1, 3, figsize=(17, 5.2), layout="constrained")
    colors = {"median_ms": "#2a7ab9", "p90_ms": "#8fbce6", "p99_ms": "#c9c9c9"}
    keys = ("median_ms", "p90_ms", "p99_ms")
    height = 0.26
    for axis, (kind, title) in zip(axes, kinds, strict=True):
        for offset, key in enumerate(keys):
            values = [measure[name][kind][key] for name in names]
            positions = [index + (offset - 1) * height for index in range(len(names))]
            bars = axis.barh(positions, values, height, color=colors[key], label=key[:-3])
            for bar, value in zip(bars, values, strict=True):
                axis.text(
                    bar.get_width() * 1.04,
                    bar.get_y() + bar.get_height() / 2,
                    f"{value:.2f}",
                    va="center",
                    fontsize=7,
                )
        axis.set_yticks(range(len(names)), labels)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_xlabel("latency, ms (log scale)")
        axis.set_title(title, fontsize=10)
        axis.grid(axis="x", which="both", alpha=0.3)
    handles, names_ = axes[0].get_legend_handles_labels()
    figure.legend(handles, names_, loc="outside lower center", ncol=3, fontsize=8)
    cpu = results["cpu"]
    figure.suptitle(
        f"Loopback on {results['machine']['cores']} cores: each server forwarding to the same "
        f"upstream; other processes used {cpu['other_processes_cores']:.2f} cores meanwhile "
        f"(load average {results['load_average_before'][0]:.1f})",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="non-streamed rounds")
    parser.add_argument("--streams", type=int, default=500, help="streamed rounds")
    parser.add_argument("--concurrency", type=int, default=8, help="clients at once")
    parser.add_argument("--burst", type=int, default=50, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=3, help="concurrent rounds")
    parser.add_argument("--warmup", type=int, default=50, help="requests of each kind, unmeasured")
    parser.add_argument(
        "--litellm",
        default=None,
        help="the litellm executable (default: on PATH, else /tmp/llvenv/bin/litellm)",
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="per server, seconds")
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REF",
        help="also measure the sidecar as it was at this git ref",
    )
    parser.add_argument("--workers", type=int, default=0, help="also measure --workers N")
    parser.add_argument(
        "--floors",
        choices=("all", "own"),
        default="all",
        help="all four floors, or only the two on httptools (+ the wire pool, + aiohttp)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--chart", type=Path, default=None, help="draw the chart here (PNG)")
    args = parser.parse_args(argv)
    results = run(args)
    print(table(results))
    if args.json is not None:
        write_json(args.json, results)
    if args.chart is not None:
        chart(results, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the scenarios share: configuration, progress, statistics, clients, machine facts."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import anthropic
import httpx
import httpx2
import openai
from httpx_retries import Retry
from httpx_retries import RetryTransport as HttpxRetriesTransport

from retry_transport import RetryPolicy, RetryTransport
from retry_transport.testing.upstream import Reply, anthropic_message, openai_chat

__all__ = [
    "ANTHROPIC_PATH",
    "OPENAI_PATH",
    "REPO",
    "Api",
    "Config",
    "JSONObj",
    "Progress",
    "anthropic_payload",
    "anthropic_sdk",
    "httpx_retries_default",
    "httpx_retries_llm",
    "machine_facts",
    "median",
    "openai_payload",
    "openai_sdk",
    "percentile",
    "raw_client",
    "success_reply",
]

JSONObj: TypeAlias = dict[str, Any]
"""A JSON object as written to results.json."""

Api: TypeAlias = Literal["openai", "anthropic"]

REPO = Path(__file__).resolve().parent.parent
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-5"
_MESSAGES = [{"role": "user", "content": "hi"}]

# httpx-retries "told to retry POST and 400 (and 529)": its allow-lists widened, nothing else
# changed (so its backoff stays at its default, backoff_factor=0: no wait between tries).
HTTPX_RETRIES_LLM = Retry(
    allowed_methods=[*Retry.RETRYABLE_METHODS, "POST"],
    status_forcelist=[*Retry.RETRYABLE_STATUS_CODES, 400, 529],
)

# Raw clients keep every connection alive, as the SDKs' own clients do (100 keep-alive).
_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=200)


@dataclass(frozen=True, slots=True)
class Config:
    """The sizes of one run; ``quick`` shrinks every scenario for a ~1 minute smoke run."""

    quick: bool
    overhead_blocks: int
    overhead_rounds_inprocess: int
    overhead_rounds_loopback: int
    overhead_rounds_transport: int
    outage_callers: int
    outage_seconds: float
    outage_drain_cap: float
    storm_callers: int
    stream_sizes: tuple[int, ...]
    ttfc_repeats: int
    backoff_scale: float
    """Factor applied to retry_transport's backoff bases in the failure scenarios (1.0: the
    library defaults)."""

    @classmethod
    def make(cls, *, quick: bool) -> Config:
        """The full run, or the quick one."""
        if quick:
            return cls(
                quick=True,
                overhead_blocks=3,
                overhead_rounds_inprocess=300,
                overhead_rounds_loopback=100,
                overhead_rounds_transport=300,
                outage_callers=50,
                outage_seconds=2.0,
                outage_drain_cap=6.0,
                storm_callers=20,
                stream_sizes=(16 << 20, 128 << 20),
                ttfc_repeats=60,
                backoff_scale=0.1,
            )
        return cls(
            quick=False,
            overhead_blocks=15,
            overhead_rounds_inprocess=1500,
            overhead_rounds_loopback=300,
            overhead_rounds_transport=1500,
            outage_callers=50,
            outage_seconds=10.0,
            outage_drain_cap=30.0,
            storm_callers=50,
            stream_sizes=(64 << 20, 1 << 30),
            ttfc_repeats=400,
            backoff_scale=1.0,
        )

    def policy(self) -> RetryPolicy:
        """retry_transport's default policy, its backoffs scaled by ``backoff_scale``."""
        policy = RetryPolicy()
        if self.backoff_scale == 1.0:
            return policy
        from dataclasses import replace

        scale = self.backoff_scale
        return replace(
            policy,
            congestion_backoff=replace(
                policy.congestion_backoff, base=policy.congestion_backoff.base * scale
            ),
            transient_backoff=replace(
                policy.transient_backoff, base=policy.transient_backoff.base * scale
            ),
        )


class Progress:
    """Progress lines on stderr, each stamped with the time since the run started."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self._start
        print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def section(self, title: str) -> Iterator[None]:
        """Announce a scenario, and how long it took once done."""
        self(f"== {title}")
        started = time.perf_counter()
        yield
        self(f"== {title}: done in {time.perf_counter() - started:.1f}s")


# -- statistics --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linearly interpolated between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- requests and clients ----------------------------------------------------------------------


def openai_payload(*, stream: bool = False) -> JSONObj:
    """An OpenAI chat completions request body."""
    return {"model": OPENAI_MODEL, "messages": _MESSAGES, "stream": stream}


def anthropic_payload(*, stream: bool = False) -> JSONObj:
    """An Anthropic messages request body."""
    return {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": _MESSAGES, "stream": stream}


def success_reply(api: Api, *, stream: bool = False) -> Reply:
    """The provider's canned success."""
    return openai_chat(stream=stream) if api == "openai" else anthropic_message(stream=stream)


def httpx_retries_default() -> HttpxRetriesTransport:
    """httpx-retries' transport with its default `Retry` (POST is not retried)."""
    return HttpxRetriesTransport(httpx.AsyncHTTPTransport(limits=_LIMITS))


def httpx_retries_llm() -> HttpxRetriesTransport:
    """httpx-retries told to retry POST, 400 and 529 (otherwise its defaults)."""
    return HttpxRetriesTransport(httpx.AsyncHTTPTransport(limits=_LIMITS), retry=HTTPX_RETRIES_LLM)


def raw_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A plain httpx client over ``transport`` (None: a bare `httpx.AsyncHTTPTransport`)."""
    if transport is None:
        transport = httpx.AsyncHTTPTransport(limits=_LIMITS)
    return httpx.AsyncClient(transport=transport, timeout=30.0)


def ours(policy: RetryPolicy | None = None) -> RetryTransport:
    """retry_transport over a bare httpx transport, default limiter."""
    return RetryTransport(httpx.AsyncHTTPTransport(limits=_LIMITS), policy=policy)


def openai_sdk(
    base_url: str, http_client: httpx.AsyncClient | httpx2.AsyncClient | None = None
) -> openai.AsyncOpenAI:
    """The openai SDK at its defaults (``max_retries=2``); None: its own default client.

    The SDK is typed for httpx2 clients but takes classic httpx ones too (httpx-retries can
    only wrap those).
    """
    client = cast("httpx2.AsyncClient | None", http_client)
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="sk-bench", http_client=client)


def anthropic_sdk(
    base_url: str, http_client: httpx2.AsyncClient | None = None
) -> anthropic.AsyncAnthropic:
    """The anthropic SDK at its defaults (``max_retries=2``); None: its own default client."""
    return anthropic.AsyncAnthropic(
        base_url=base_url, api_key="sk-ant-bench", http_client=http_client
    )


# -- the machine -------------------------------------------------------------------------------

_PACKAGES = (
    "retry-transport",
    "httpx",
    "httpcore",
    "httpx2",
    "httpcore2",
    "httpx-retries",
    "openai",
    "anthropic",
    "anyio",
    "h11",
    "matplotlib",
)


def baseline_tree(ref: str, into: Path) -> Path:
    """The package as it was at git ``ref``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "retry_transport"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    """The output of a read-only git command in the checkout, or None."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.rstrip("\n")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where unknown)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def machine_facts() -> JSONObj:
    """CPU, cores, memory, OS, Python and library versions, and the code measured: the
    checkout's commit, the library files changed since (other work in progress) and a digest
    of the library's sources."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    memory = None
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/meminfo", encoding="utf-8") as info,
    ):
        memory = round(int(info.readline().split()[1]) / (1 << 20), 1)
    status = _git("status", "--porcelain", "--", "retry_transport")
    digest = hashlib.sha256()
    for source in sorted((REPO / "retry_transport").glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "library_changes": None
        if status is None
        else sorted(line[3:] for line in status.splitlines()),
        "library_digest": digest.hexdigest()[:12],
    }


def write_json(path: Path, data: JSONObj) -> None:
    """Write ``data`` as indented JSON (atomically: a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(path.suffix + ".tmp")
    scratch.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    scratch.replace(path)

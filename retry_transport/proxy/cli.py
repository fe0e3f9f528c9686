"""``python -m retry_transport proxy``: the sidecar's options, validated into `ProxySettings`.

Standard library only: the ``proxy`` subcommand's help and errors work without the ``proxy``
extra, which `run` imports (Starlette, uvicorn) only once the options are valid.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .._budget import RetryBudget
from .._policy import Backoff, RetryPolicy
from .settings import MIB, OWN_PREFIX, ProxySettings, UpstreamSpec, address_kind

__all__ = ["add_arguments", "run", "settings_from_args"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)
REDIS_PASSWORD_ENV = "RETRY_TRANSPORT_REDIS_PASSWORD"
"""The environment variable the Redis password may come from (kept out of ``ps``)."""
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


# -- argparse value types: each error names the rule broken and the value given ----------------


def _number(
    kind: Callable[[str], float], rule: str, ok: Callable[[float], bool]
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    return parse


def _count(text: str) -> int:
    return int(_number(int, "an integer >= 1", lambda v: v >= 1)(text))


def _whole(text: str) -> int:
    return int(_number(int, "an integer >= 0", lambda v: v >= 0)(text))


_positive = _number(float, "a number of seconds > 0", lambda v: v > 0)
_seconds = _number(float, "a number of seconds >= 0", lambda v: v >= 0)
_ratio = _number(float, "a number within [0, 1000]", lambda v: 0 <= v <= 1000)


def _port(text: str) -> int:
    return int(_number(int, "a port number within [0, 65535]", lambda v: 0 <= v <= 65535)(text))


def _bytes(text: str) -> int:
    """``8388608``, ``512k``, ``8m``, ``1g`` (powers of 1024)."""
    match = re.fullmatch(r"(\d+)\s*([kmg]?)(?:i?b)?", text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"must be a size in bytes such as 8m or 65536, got {text!r}"
        )
    scale = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[match.group(2)]
    return int(match.group(1)) * scale


def _upstream(text: str) -> UpstreamSpec:
    name: str | None = None
    url = text.strip()
    head, equals, tail = url.partition("=")
    if equals and "/" not in head and ":" not in head:
        name, url = head, tail.strip()
        if not _NAME.match(name):
            raise argparse.ArgumentTypeError(
                f"name {name!r} must be letters, digits, '.', '_', '~' or '-' (a path segment)"
            )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected URL or NAME=URL with an http:// or https:// URL, got {text!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise argparse.ArgumentTypeError(
            "the URL must not carry credentials: clients send their own auth headers, "
            "which the sidecar passes through"
        )
    if any(char.isspace() or not char.isprintable() for char in parts.path):
        raise argparse.ArgumentTypeError(f"the URL's path must not hold spaces: {url!r}")
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"the URL must have no query or fragment, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"the URL has an invalid port: {url!r}") from None
    host = parts.hostname
    if not _valid_host(host):
        raise argparse.ArgumentTypeError(
            f"the URL's host {host!r} is neither a host name nor an IP address: {url!r}"
        )
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return UpstreamSpec(name, f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _HOSTNAME.match(host) is not None
    return True


def _listen_host(text: str) -> str:
    """An address to listen on: an IP address (IPv6 without brackets) or a host name."""
    host = text.strip()
    if not _valid_host(host):
        raise argparse.ArgumentTypeError(
            f"must be an IP address (IPv6 without brackets, e.g. ::1) or a host name, got {text!r}"
        )
    return host


def _same_place(upstream: UpstreamSpec, host: str, port: int) -> bool:
    """Whether ``upstream`` is the address the sidecar listens on (a loop, known at start)."""
    parts = urlsplit(upstream.url)
    upstream_port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    if port == 0 or upstream_port != port or parts.hostname is None:
        return False
    return address_kind(parts.hostname) is not None and (
        address_kind(host) == "any" or address_kind(parts.hostname) == address_kind(host)
    )


def _redis(text: str) -> str:
    if urlsplit(text).scheme not in ("redis", "rediss", "unix"):
        raise argparse.ArgumentTypeError(
            f"must be a redis://, rediss:// or unix:// URL, got {text!r}"
        )
    return text


# -- the parser -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sidecar's options to ``parser`` (the ``proxy`` subcommand's)."""
    defaults = ProxySettings(upstreams=())
    policy = defaults.policy
    budget = RetryBudget()
    parser.description = (
        "A local reverse proxy that forwards every request to an LLM provider through "
        "RetryTransport: transient 400s, overloads and 429s are retried, streams included, "
        "for any program that can be pointed at a base URL."
    )
    parser.epilog = (
        f"The sidecar's own endpoints: GET {OWN_PREFIX}/healthz and GET {OWN_PREFIX}/metrics "
        "(also /healthz and /metrics when no upstream is served at the root)."
    )
    where = parser.add_argument_group("where")
    where.add_argument(
        "--upstream",
        metavar="[NAME=]URL",
        type=_upstream,
        action="append",
        required=True,
        help="the provider to forward to, e.g. https://api.anthropic.com; repeat with "
        "NAME=URL to serve several under /NAME/... (at most one without a name, served at /)",
    )
    where.add_argument(
        "--host",
        type=_listen_host,
        default=defaults.host,
        help="address to listen on (%(default)s)",
    )
    where.add_argument(
        "--port", type=_port, default=defaults.port, help="port to listen on (%(default)s; 0: any)"
    )
    retry = parser.add_argument_group("retry policy")
    retry.add_argument(
        "--max-attempts",
        type=_count,
        default=policy.max_attempts,
        metavar="N",
        help="total tries per request, the first included (%(default)s)",
    )
    retry.add_argument(
        "--max-retry-after",
        type=_seconds,
        default=policy.max_retry_after,
        metavar="SECONDS",
        help="a server asking to wait longer gets its response passed on at once (%(default)s)",
    )
    retry.add_argument(
        "--deadline",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="time for all attempts and waits of one request together (none)",
    )
    retry.add_argument(
        "--peek-limit",
        type=_bytes,
        default=policy.peek_limit,
        metavar="BYTES",
        help="bytes of an error body or a stream's preamble read to classify it (%(default)s)",
    )
    retry.add_argument(
        "--unclassified-400-attempts",
        type=_count,
        default=policy.unclassified_400_attempts,
        metavar="N",
        help="total tries for a 400 that no rule recognises (%(default)s)",
    )
    for kind, backoff in (
        ("congestion", policy.congestion_backoff),
        ("transient", policy.transient_backoff),
    ):
        retry.add_argument(
            f"--{kind}-base",
            type=_positive,
            default=backoff.base,
            metavar="SECONDS",
            help=f"{kind} backoff: first retry waits up to this (%(default)s)",
        )
        retry.add_argument(
            f"--{kind}-cap",
            type=_positive,
            default=backoff.cap,
            metavar="SECONDS",
            help=f"{kind} backoff: longest wait (%(default)s)",
        )
    retry.add_argument(
        "--retry-read-errors",
        action="store_true",
        help="also retry POSTs after a read timeout or a dropped response (the upstream may "
        "have acted on them already)",
    )
    retry.add_argument(
        "--first-content-timeout",
        type=_positive,
        default=policy.first_content_timeout,
        metavar="SECONDS",
        help="per attempt, the longest wait for a 200 event stream's first content; a stall "
        "past it is retried (%(default)s)",
    )
    retry.add_argument(
        "--no-first-content-timeout",
        action="store_true",
        help="wait for a stream's first content as long as the read timeout allows",
    )
    retry.add_argument(
        "--no-peek-sse",
        action="store_true",
        help="do not hold a stream's preamble to retry an error before its first content",
    )
    retry.add_argument(
        "--retry-budget",
        type=_ratio,
        default=budget.ratio,
        metavar="RATIO",
        help="retries allowed per request, over a 10 s window, plus one per second (%(default)s)",
    )
    retry.add_argument(
        "--no-retry-budget", action="store_true", help="no cap on retries (not recommended)"
    )
    retry.add_argument(
        "--max-concurrency",
        type=_count,
        default=None,
        metavar="N",
        help="most requests in flight to each upstream at once (no cap)",
    )
    retry.add_argument(
        "--redis",
        type=_redis,
        default=None,
        metavar="URL",
        help="share the 429/overload block through Redis or Valkey with every sidecar using "
        "the same server and upstream URL (needs the redis extra)",
    )
    retry.add_argument(
        "--redis-password-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="read the Redis password from FILE (or set $"
        + REDIS_PASSWORD_ENV
        + "); keeps it out of the URL and the process list",
    )
    retry.add_argument(
        "--redis-timeout",
        type=_positive,
        default=defaults.redis_timeout,
        metavar="SECONDS",
        help="longest wait for each Redis call; past it the sidecar goes on with its own "
        "state for that call, never an error (%(default)s)",
    )
    serving = parser.add_argument_group("serving")
    serving.add_argument(
        "--replay-limit",
        type=_bytes,
        default=defaults.replay_limit,
        metavar="BYTES",
        help="request bodies up to this size are kept for retries; larger uploads are "
        "streamed and sent once (8m)",
    )
    serving.add_argument(
        "--connect-timeout",
        type=_positive,
        default=defaults.connect_timeout,
        metavar="SECONDS",
        help="to connect to the upstream, per attempt (%(default)s)",
    )
    serving.add_argument(
        "--read-timeout",
        type=_seconds,
        default=defaults.read_timeout,
        metavar="SECONDS",
        help="longest silence from the upstream, per read; 0: none (%(default)s)",
    )
    serving.add_argument(
        "--header-timeout",
        type=_positive,
        default=defaults.header_timeout,
        metavar="SECONDS",
        help="a client must send a request's headers within this, from connecting or from "
        "the end of its previous response; else the connection is closed (%(default)s)",
    )
    serving.add_argument(
        "--body-timeout",
        type=_seconds,
        default=defaults.body_timeout,
        metavar="SECONDS",
        help="longest silence while a request body arrives, answered 408; 0: none (%(default)s)",
    )
    serving.add_argument(
        "--max-connections",
        type=_count,
        default=defaults.max_connections,
        metavar="N",
        help="client connections open at once; one more is answered 503 and closed (%(default)s)",
    )
    serving.add_argument(
        "--workers",
        type=_count,
        default=defaults.workers,
        metavar="N",
        help="processes serving the one port, to use more cores; they share the 429 block "
        "only through --redis (%(default)s)",
    )
    serving.add_argument(
        "--grace",
        type=_whole,
        default=defaults.grace,
        metavar="SECONDS",
        help="after SIGTERM, time in-flight responses get to finish (%(default)s)",
    )
    serving.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default=defaults.log_level,
        type=str.lower,
        help="retries are logged at info, give-ups at warning (%(default)s)",
    )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ProxySettings:
    """The settings the parsed options (and ``environ``, default ``os.environ``) describe.

    Raises:
        ValueError: the options contradict each other; the message names the option.
    """
    environ = os.environ if environ is None else environ
    upstreams: tuple[UpstreamSpec, ...] = tuple(args.upstream)
    for spec in upstreams:
        if _same_place(spec, args.host, args.port):
            raise ValueError(
                f"argument --upstream: {spec.url} is this sidecar's own address "
                f"(--host {args.host} --port {args.port}): every request would loop"
            )
    names = [spec.name for spec in upstreams]
    if names.count(None) > 1:
        raise ValueError(
            "argument --upstream: only one upstream can be served at the root; "
            "give the others a name (NAME=URL)"
        )
    duplicates = sorted({name for name in names if name is not None and names.count(name) > 1})
    if duplicates:
        raise ValueError(f"argument --upstream: name {duplicates[0]!r} is used twice")
    if args.redis is not None and importlib.util.find_spec("redis") is None:
        raise ValueError(
            "argument --redis: needs the redis package: pip install 'retry-transport[redis]'"
        )
    password = _redis_password(args, environ)
    policy = RetryPolicy(  # every value was checked by its option's type
        max_attempts=args.max_attempts,
        congestion_backoff=Backoff(args.congestion_base, args.congestion_cap),
        transient_backoff=Backoff(args.transient_base, args.transient_cap),
        max_retry_after=args.max_retry_after,
        deadline=args.deadline,
        peek_sse=not args.no_peek_sse,
        peek_limit=args.peek_limit,
        first_content_timeout=(
            None if args.no_first_content_timeout else args.first_content_timeout
        ),
        unclassified_400_attempts=args.unclassified_400_attempts,
        retry_read_errors=args.retry_read_errors,
    )
    return ProxySettings(
        upstreams=upstreams,
        host=args.host,
        port=args.port,
        policy=policy,
        budget=None if args.no_retry_budget else RetryBudget(ratio=args.retry_budget),
        max_concurrency=args.max_concurrency,
        replay_limit=args.replay_limit,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout or None,
        redis_url=args.redis,
        redis_password=password,
        redis_timeout=args.redis_timeout,
        grace=args.grace,
        log_level=args.log_level,
        workers=args.workers,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout or None,
        max_connections=args.max_connections,
    )


def _redis_password(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The Redis password from ``--redis-password-file`` or the environment, or None."""
    path: Path | None = args.redis_password_file
    if path is None:
        return environ.get(REDIS_PASSWORD_ENV) or None
    if args.redis is None:
        raise ValueError("argument --redis-password-file: needs --redis")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"argument --redis-password-file: cannot read {str(path)!r}: {exc}"
        ) from None
    password = text.strip("\r\n")
    if not password:
        raise ValueError(f"argument --redis-password-file: {str(path)!r} is empty")
    return password


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Validate the options, then serve until SIGTERM or SIGINT; the exit status."""
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        from .serving import serve
    except ImportError as exc:
        parser.exit(
            2,
            f"{parser.prog}: error: the sidecar needs the proxy extra "
            f"(pip install 'retry-transport[proxy]'): {exc}\n",
        )
    return serve(settings)

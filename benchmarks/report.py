"""Render results.json as Markdown tables (results.md) and a matplotlib chart (chart.png)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from ._common import JSONObj

__all__ = ["render_chart", "render_markdown", "targets"]

_OURS = "retry_transport"
_HR_DEFAULT = "httpx-retries (default)"
_HR_LLM = "httpx-retries (POST, 400, 529)"
_PRIMARY_MODES = (
    "in-process async",
    "in-process sync",
    "transport call async",
    "transport call sync",
    "transport call async, rate-limit headers",
)


def _fmt(value: float, digits: int = 2) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:,.{digits}f}")
    )


def _signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}"


def _with_range(value: float, bounds: list[float]) -> str:
    return f"{value:+.2f} ({bounds[0]:+.1f} to {bounds[1]:+.1f})"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    marks = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if mark == "r" else ":---" for mark in marks]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _variant(mode: JSONObj, name: str) -> JSONObj:
    return next(row for row in mode["variants"] if row["variant"] == name)


# -- targets ------------------------------------------------------------------------------------


def targets(results: JSONObj) -> list[JSONObj]:
    """Each design target, the figure measured for it, and whether it was met."""
    found: list[JSONObj] = []
    overhead = results.get("overhead")
    if overhead:
        for mode_name in _PRIMARY_MODES:
            if mode_name not in overhead["modes"]:  # a run from before the mode existed
                continue
            mode = overhead["modes"][mode_name]
            ours = _variant(mode, _OURS)
            default = _variant(mode, _HR_DEFAULT)
            llm = _variant(mode, _HR_LLM)
            found.append(
                {
                    "target": f"success-path overhead ≤ httpx-retries' ({mode_name})",
                    "figure": (
                        f"retry_transport {_signed(ours['added_us'])} µs; httpx-retries "
                        f"{_signed(default['added_us'])} µs (default), "
                        f"{_signed(llm['added_us'])} µs (retrying POST); bare "
                        f"{_fmt(_variant(mode, 'bare')['us_per_request'])} µs"
                    ),
                    "met": bool(ours["added_us"] <= min(default["added_us"], llm["added_us"])),
                }
            )
    outage = results.get("outage")
    if outage:
        ours = next(row for row in outage["variants"] if row["variant"].startswith(_OURS))
        worst = max(ours["amplification"], ours["amplification_completed"])
        found.append(
            {
                "target": "outage amplification ≤ 1.3x (retry_transport, default budget)",
                "figure": (
                    f"{ours['amplification']:.2f}x of all {ours['logical_requests']} logical "
                    f"requests ({ours['amplification_completed']:.2f}x of the "
                    f"{ours['completed']} that finished; {ours['pending_at_cap']} still held "
                    f"by the limiter when the drain was cut)"
                ),
                "met": bool(worst <= 1.3),
            }
        )
    storm = results.get("storm")
    if storm:
        shared = storm["variants"][0]
        found.append(
            {
                "target": "429 storm: no request inside the Retry-After window (shared limiter)",
                "figure": f"{shared['requests_in_window']} of {shared['callers']} callers",
                "met": shared["requests_in_window"] == 0,
            }
        )
    streaming = results.get("streaming")
    if streaming:
        memory = streaming["memory"]
        sizes = streaming["sizes"]
        small, large = min(sizes), max(sizes)
        for variant in ("retry_transport, async", "retry_transport, sync"):
            peak = {
                row["size_bytes"]: row["peak_rss_mib"]
                for row in memory
                if row["variant"] == variant
            }
            growth = peak[large] - peak[small]
            found.append(
                {
                    "target": f"flat memory while streaming ({variant})",
                    "figure": (
                        f"peak RSS {peak[small]:.1f} MiB at {small >> 20} MiB streamed, "
                        f"{peak[large]:.1f} MiB at {large >> 20} MiB ({growth:+.1f} MiB)"
                    ),
                    "met": bool(abs(growth) < 4.0),
                }
            )
        for mode, data in streaming["first_content"].items():
            found.append(
                {
                    "target": f"preamble hold costs < 1 ms to first content ({mode})",
                    "figure": (
                        f"{data['hold_cost_median_ms'] * 1000:+.0f} µs at the median, "
                        f"{data['hold_cost_p95_ms'] * 1000:+.0f} µs at p95"
                    ),
                    "met": bool(data["hold_cost_median_ms"] < 1.0),
                }
            )
    found += _pacing_targets(results.get("pacing") or {})
    return found


def _pacing_targets(pacing: JSONObj) -> list[JSONObj]:
    """The pacing goals: <= 1% refused at >= 90% goodput with headers and for a fleet; without
    headers, fewer refusals than botocore's adaptive mode at no less goodput."""
    found: list[JSONObj] = []
    for key, label, ours_prefix in (
        ("headers", "header pacing", "ours (default"),
        ("fleet", "a fleet of 4 through Valkey", "ours: RedisLimiter"),
    ):
        rows = pacing.get(key) or []
        ours = next((row for row in rows if row["row"].startswith(ours_prefix)), None)
        if ours is not None:
            found.append(
                {
                    "target": f"{label}: <= 1% of attempts refused at >= 90% goodput",
                    "figure": (
                        f"{ours['share_429']:.1%} refused, {ours['goodput_share']:.0%} goodput"
                    ),
                    "met": bool(ours["share_429"] <= 0.01 and ours["goodput_share"] >= 0.9),
                }
            )
    rows = pacing.get("no_headers") or []
    ours = next((row for row in rows if row["row"].startswith("ours")), None)
    boto = next((row for row in rows if row["row"].startswith("botocore")), None)
    if ours is not None and boto is not None:
        found.append(
            {
                "target": "no headers: fewer 429s than botocore adaptive, goodput no lower",
                "figure": (
                    f"{ours['share_429']:.1%} refused, {ours['ok']} served; botocore "
                    f"{boto['share_429']:.1%}, {boto['ok']}"
                ),
                "met": bool(ours["share_429"] < boto["share_429"] and ours["ok"] >= boto["ok"]),
            }
        )
    return found


# -- Markdown -----------------------------------------------------------------------------------


def _overhead_md(overhead: JSONObj) -> str:
    rows: list[list[str]] = []
    for mode_name, mode in overhead["modes"].items():
        for row in mode["variants"]:
            bare = row["variant"] == "bare"
            rows.append(
                [
                    mode_name,
                    row["variant"],
                    _fmt(row["us_per_request"]),
                    f"{row['requests_per_second']:,.0f}",
                    f"{row['ratio_to_bare']:.3f}",
                    "—" if bare else _with_range(row["added_us"], row["added_us_range"]),
                    "—" if bare else _with_range(row["added_cpu_us"], row["added_cpu_us_range"]),
                ]
            )
    header = [
        "mode",
        "variant",
        "µs / request",
        "req/s",
        "ratio to bare",
        "added µs (block range)",
        "added µs, CPU time (block range)",
    ]
    return _table(header, rows, "llrrrrr")


def _profile_md(profile: JSONObj) -> str:
    lines = _table(
        ["where", "statement on the fast path", "ns"],
        [[row["where"], row["statement"], f"{row['ns']:,.0f}"] for row in profile["lines"]],
        "llr",
    )
    calls = _table(
        ["transport call", "ns", "added ns"],
        [
            [row["variant"], f"{row['ns']:,.0f}", f"{row['added_ns']:+,.0f}"]
            for row in profile["calls"]
        ],
        "lrr",
    )
    counts = ", ".join(
        f"{row['variant']} {row['calls_per_request']:.0f}" for row in profile["call_counts"]
    )
    return f"{lines}\n\n{calls}\n\nPython function calls per request (cProfile): {counts}."


def _cell(cell: JSONObj | None) -> str:
    if cell is None:
        return "n/a"
    return f"{cell['attempts']} · {cell['seconds']:.2f} s · {cell['outcome']}"


def _failures_md(failures: JSONObj) -> str:
    header = ["scenario", *failures["columns"]]
    rows = [
        [row["label"], *(_cell(failures["cells"][row["key"]][col]) for col in failures["columns"])]
        for row in failures["rows"]
    ]
    return _table(header, rows, "l" * len(header))


def _outage_md(outage: JSONObj) -> str:
    rows = [
        [
            row["variant"],
            str(row["logical_requests"]),
            str(row["upstream_requests"]),
            f"**{row['amplification']:.2f}x**",
            f"{row['amplification_completed']:.2f}x ({row['completed']})",
            str(row["pending_at_cap"]),
            f"{row['upstream_per_second_in_window']:,.0f}",
            f"{row['latency_median_s']:.2f} / {row['latency_p95_s']:.2f}",
            "—" if row.get("longest_block_s") is None else f"{row['longest_block_s']:.1f}",
        ]
        for row in outage["variants"]
    ]
    header = [
        "client",
        "logical requests",
        "upstream requests",
        "upstream / logical",
        "of those finished (n)",
        "still held at cut-off",
        "upstream req/s",
        "latency s, median / p95 (finished only)",
        "longest limiter block, s",
    ]
    return _table(header, rows)


def _storm_md(storm: JSONObj) -> str:
    rows = [
        [
            row["variant"],
            f"**{row['requests_in_window']}**",
            str(row["upstream_requests"]),
            f"{row['successes']}/{row['logical_requests']}",
            f"{row['seconds']:.1f}",
        ]
        for row in storm["variants"]
    ]
    header = [
        "client",
        f"requests inside the {storm['retry_after']:g} s window",
        "upstream requests in all",
        "succeeded",
        "seconds",
    ]
    return _table(header, rows)


def _streaming_md(streaming: JSONObj) -> str:
    sizes = streaming["sizes"]
    variants = list(dict.fromkeys(row["variant"] for row in streaming["memory"]))
    memory_rows: list[list[str]] = []
    for variant in variants:
        cells: list[str] = [variant]
        for size in sizes:
            row = next(
                r
                for r in streaming["memory"]
                if r["variant"] == variant and r["size_bytes"] == size
            )
            cells.append(f"{row['peak_rss_mib']:.1f} MiB ({row['mib_per_second']:.0f} MiB/s)")
        memory_rows.append(cells)
    memory = _table(
        ["client", *(f"peak RSS, {size >> 20} MiB streamed" for size in sizes)], memory_rows
    )
    latency_rows: list[list[str]] = []
    for mode, data in streaming["first_content"].items():
        for row in data["variants"]:
            latency_rows.append(
                [mode, row["variant"], f"{row['median_ms']:.3f}", f"{row['p95_ms']:.3f}"]
            )
        latency_rows.append(
            [
                mode,
                "**cost of the hold** (peek_sse True minus False)",
                f"**{data['hold_cost_median_ms'] * 1000:+.0f} µs**",
                f"{data['hold_cost_p95_ms'] * 1000:+.0f} µs",
            ]
        )
    latency = _table(["mode", "client", "first content, median ms", "p95 ms"], latency_rows, "llrr")
    return f"{memory}\n\n{latency}"


def _load(values: list[float]) -> str:
    return f"{values[0]:.2f}" if values else "unknown"


def _machine_md(meta: JSONObj) -> str:
    machine = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v is not None)
    changes = machine.get("library_changes") or []
    dirty = f" plus uncommitted changes to {', '.join(changes)}" if changes else ""
    return (
        f"- command: `{meta['command']}`\n"
        f"- date: {meta['started']}, {meta['seconds']:.0f} s in all\n"
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['os']}, {machine['python']}\n"
        f"- load average (1 min) at start / end: {_load(meta['load_start'])} / "
        f"{_load(meta['load_end'])} (other jobs shared the machine during the run)\n"
        f"- libraries: {versions}\n"
        f"- code measured: commit {machine['commit']}{dirty} (library source digest "
        f"{machine['library_digest']})"
    )


def render_markdown(results: JSONObj, chart_name: str = "chart.png") -> str:
    """The whole report as Markdown."""
    meta = results["meta"]
    parts = [
        "# retry_transport benchmarks",
        _machine_md(meta),
        f"![benchmark chart]({chart_name})",
    ]
    found = targets(results)
    if found:
        parts += [
            "## Targets",
            _table(
                ["target", "measured", "met"],
                [[t["target"], t["figure"], "yes" if t["met"] else "**no**"] for t in found],
                "llc",
            ),
        ]
    if "overhead" in results:
        parts += [
            "## 1. Success-path overhead",
            results["overhead"]["method"] + ".",
            _overhead_md(results["overhead"]),
        ]
    if "fast_path_profile" in results:
        parts += [
            "### Where the fast path's time goes",
            _profile_md(results["fast_path_profile"]),
        ]
    if "failures" in results:
        policy = results["failures"]["retry_transport_policy"]
        scale = policy["backoff_scale"]
        waits = (
            "the library defaults"
            if scale == 1.0
            else f"its backoff bases scaled by {scale:g} (quick run)"
        )
        parts += [
            "## 2. Failure scenarios (one logical POST each: attempts · wall time · outcome)",
            f"SDKs and peers at their defaults, real sleeps; retry_transport with {waits} "
            "(congestion base/cap "
            f"{policy['congestion_backoff'][0]:g}/{policy['congestion_backoff'][1]:g} s, "
            f"transient {policy['transient_backoff'][0]:g}/{policy['transient_backoff'][1]:g} s, "
            "full jitter). Jitter is one seeded draw per cell. SDK columns: the SDK over its own "
            "default client; the other columns: a plain httpx client over that transport, or, "
            "in the rows that say so, the SDK on top of it. httpx-retries cannot wrap the "
            "httpx2 transports the anthropic SDK needs.",
            _failures_md(results["failures"]),
        ]
    if "outage" in results:
        outage = results["outage"]
        parts += [
            "## 3. Outage amplification",
            f"{outage['callers']} concurrent callers, one client, an upstream that always "
            f"answers 503, {outage['seconds']:g} s of new requests, then up to "
            f"{outage['drain_cap_seconds']:g} s for those in flight to finish.",
            _outage_md(outage),
        ]
    if "storm" in results:
        storm = results["storm"]
        parts += [
            "## 4. 429 storm",
            f"Every request gets 429 with Retry-After: {storm['retry_after']:g} until the "
            f"window closes; {storm['callers']} callers, one logical POST each, start evenly "
            "spread over the window after a trigger request got its 429.",
            _storm_md(storm),
        ]
    if "streaming" in results:
        parts += ["## 5. Streaming", _streaming_md(results["streaming"])]
    if "pacing" in results:
        from .pacing import _markdown as pacing_markdown

        parts += [
            "## 6. Pacing before the 429",
            pacing_markdown(results["pacing"]).strip(),
            "![pacing](pacing.png)",
        ]
    return "\n\n".join(parts) + "\n"


# -- chart --------------------------------------------------------------------------------------


def _wrap(label: str, width: int = 26) -> str:
    return "\n".join(textwrap.wrap(label, width))


def _bars(
    axis: Any, labels: list[str], values: list[float], color: Any = None, digits: int = 2
) -> None:
    positions = list(range(len(labels)))
    axis.barh(positions, values, color=color)
    axis.set_yticks(positions, [_wrap(label) for label in labels], fontsize=7)
    axis.invert_yaxis()
    for position, value in zip(positions, values, strict=True):
        axis.text(value, position, f" {value:.{digits}f}", va="center", fontsize=7)


def render_chart(results: JSONObj, path: Path) -> None:
    """A 2x3 grid of the headline figures, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(18, 10), layout="constrained")
    colors = {"ours": "#2a7ab9", "peer": "#bbbbbb", "sdk": "#e39b3a", "bad": "#c0392b"}

    axis = axes[0][0]
    if "overhead" in results:
        # The chart keeps to the plain 200s: with rate-limit headers the scale is another one.
        modes = [m for m in results["overhead"]["modes"] if m in _PRIMARY_MODES[:4]]
        names = [_OURS, _HR_DEFAULT, _HR_LLM]
        width = 0.27
        for index, name in enumerate(names):
            values = [
                _variant(results["overhead"]["modes"][mode], name)["added_us"] for mode in modes
            ]
            xs = [i + (index - 1) * width for i in range(len(modes))]
            axis.bar(
                xs,
                values,
                width,
                label=name,
                color=[colors["ours"], "#999999", "#cccccc"][index],
            )
        axis.set_xticks(range(len(modes)), [m.replace(" ", "\n", 2) for m in modes], fontsize=7)
        axis.set_ylabel("µs added over the bare transport")
        axis.set_title("1. success-path overhead", fontsize=10)
        axis.legend(fontsize=7)

    axis = axes[0][1]
    if "failures" in results:
        failures = results["failures"]
        columns = failures["columns"]
        grid: list[list[float]] = []
        for row in failures["rows"]:
            cells = failures["cells"][row["key"]]
            grid.append([math.nan if cells[c] is None else cells[c]["attempts"] for c in columns])
        axis.imshow(grid, cmap="Oranges", aspect="auto", vmin=0, vmax=12)
        for i, row in enumerate(failures["rows"]):
            for j, column in enumerate(columns):
                cell = failures["cells"][row["key"]][column]
                text = "n/a" if cell is None else f"{cell['attempts']}\n{cell['seconds']:.1f}s"
                axis.text(j, i, text, ha="center", va="center", fontsize=6)
        axis.set_xticks(range(len(columns)), [c.replace(" (", "\n(") for c in columns], fontsize=6)
        axis.set_yticks(
            range(len(failures["rows"])), [r["key"] for r in failures["rows"]], fontsize=7
        )
        axis.set_title("2. failure scenarios: attempts and wall time", fontsize=10)

    axis = axes[0][2]
    if "outage" in results:
        rows = results["outage"]["variants"]
        _bars(
            axis,
            [row["variant"] for row in rows],
            [row["amplification"] for row in rows],
            [colors["ours"] if _OURS in row["variant"] else colors["peer"] for row in rows],
        )
        axis.axvline(1.3, color=colors["bad"], linestyle="--", linewidth=1, label="target 1.3x")
        axis.set_xlabel("upstream requests per logical request")
        axis.set_title("3. outage amplification (always 503)", fontsize=10)
        axis.legend(fontsize=7)

    axis = axes[1][0]
    if "storm" in results:
        rows = results["storm"]["variants"]
        _bars(
            axis,
            [row["variant"] for row in rows],
            [float(row["requests_in_window"]) for row in rows],
            [colors["ours"] if _OURS in row["variant"] else colors["peer"] for row in rows],
            digits=0,
        )
        axis.set_xlabel("requests reaching the upstream inside the Retry-After window")
        axis.set_title("4. 429 storm", fontsize=10)

    axis = axes[1][1]
    if "streaming" in results:
        streaming = results["streaming"]
        sizes = streaming["sizes"]
        variants = list(dict.fromkeys(row["variant"] for row in streaming["memory"]))
        width = 0.8 / len(sizes)
        for index, size in enumerate(sizes):
            values = [
                next(
                    r["peak_rss_mib"]
                    for r in streaming["memory"]
                    if r["variant"] == v and r["size_bytes"] == size
                )
                for v in variants
            ]
            xs = [i + (index - (len(sizes) - 1) / 2) * width for i in range(len(variants))]
            axis.bar(xs, values, width, label=f"{size >> 20} MiB streamed")
        axis.set_xticks(range(len(variants)), [v.replace(", ", "\n") for v in variants], fontsize=7)
        axis.set_ylabel("peak RSS of the client process, MiB")
        axis.set_title("5a. memory while streaming", fontsize=10)
        axis.legend(fontsize=7)

    axis = axes[1][2]
    if "streaming" in results:
        first = results["streaming"]["first_content"]
        labels: list[str] = []
        medians: list[float] = []
        p95s: list[float] = []
        for mode, data in first.items():
            for row in data["variants"]:
                labels.append(f"{mode}: {row['variant']}")
                medians.append(row["median_ms"])
                p95s.append(row["p95_ms"])
        positions = list(range(len(labels)))
        axis.barh(positions, medians, color=colors["ours"], label="median")
        axis.scatter(p95s, positions, color=colors["bad"], marker="|", s=120, label="p95")
        axis.set_yticks(positions, [_wrap(label, 30) for label in labels], fontsize=7)
        axis.invert_yaxis()
        axis.set_xlabel("ms to the first content event")
        axis.set_title("5b. time to first content, preamble hold on/off", fontsize=10)
        axis.legend(fontsize=7)

    meta = results["meta"]
    figure.suptitle(
        f"retry_transport benchmarks · {meta['machine']['cpu']}, {meta['machine']['cores']} "
        f"cores, {meta['machine']['python']} · {meta['command']}",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

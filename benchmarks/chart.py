"""Draw the results of ``benchmarks.compare`` as a PNG (matplotlib, Agg backend).

``python -m benchmarks.chart RESULTS.json OUT.png`` redraws a saved run.

Three panels share the contenders' rows: throughput (tasks/s, log scale, with
the ratio to the trio channel), idle latency (p50 bar, p99 tick, log scale)
and memory per queued task. pyapalis rows are drawn in a strong colour, the
yardsticks in grey, the peers in a muted one.

matplotlib (the ``bench`` extra) is imported by :func:`render`, not with the
module: asv imports every module under ``benchmarks/`` to discover its suites,
and must not need the extra.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["render"]

_PYAPALIS = "#d9480f"
_YARDSTICK = "#868e96"
_PEER = "#4c6ef5"


def _colour(key: str) -> str:
    if key.startswith("pyapalis"):
        return _PYAPALIS
    if key in ("trio", "asyncio"):
        return _YARDSTICK
    return _PEER


def _si(value: float, _position: Any = None) -> str:
    for threshold, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:g}{suffix}"
    return f"{value:g}"


def _latency_label(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.1f} ms"
    if us >= 10:
        return f"{us:.0f} µs"
    return f"{us:.1f} µs"


def render(payload: dict[str, Any], path: str | Path) -> None:
    """Write the chart of a ``benchmarks.compare`` JSON payload to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    results = [r for r in payload["results"] if not r.get("skipped")]
    if not results:
        raise ValueError("render: no contender has results to draw")
    largest_n = max(r["n"] for r in results)
    names = [r["name"] if r["n"] == largest_n else f"{r['name']}\n(N={r['n']:,})" for r in results]
    colours = [_colour(r["key"]) for r in results]
    rows = list(range(len(results)))

    figure, (speed, latency, memory) = plt.subplots(
        1,
        3,
        figsize=(15, 0.55 * len(results) + 2.2),
        sharey=True,
        gridspec_kw={"width_ratios": [2.2, 1.4, 1.0]},
    )

    rates = [r["tasks_per_second"] or 0.0 for r in results]
    speed.barh(rows, rates, color=colours)
    speed.set_xscale("log")
    speed.set_xlim(min(x for x in rates if x > 0) / 2, max(rates) * 8)
    speed.xaxis.set_major_formatter(FuncFormatter(_si))
    speed.set_title("throughput, tasks/s (log scale; higher is better)", fontsize=10)
    for row, r in zip(rows, results, strict=True):
        ratio = r.get("ratio_to_channel")
        rate = float(f"{r['tasks_per_second']:.3g}")  # three significant digits
        label = f" {_si(rate)}/s"
        if ratio is not None:
            label += f"  ({ratio:.2f}x channel)"
        speed.text(r["tasks_per_second"], row, label, va="center", fontsize=8.5)

    p50 = [r.get("latency_p50_us") for r in results]
    p99 = [r.get("latency_p99_us") for r in results]
    measured = [v for v in p50 + p99 if v]
    latency.barh(rows, [v or 0.0 for v in p50], color=colours, alpha=0.85)
    latency.scatter([v or float("nan") for v in p99], rows, marker="|", s=200, color="black")
    latency.set_xscale("log")
    if measured:
        latency.set_xlim(min(measured) / 2, max(measured) * 12)
    latency.set_title("idle push-to-handler latency, p50 bar, p99 tick", fontsize=10)
    latency.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _latency_label(v)))
    for row, low, high in zip(rows, p50, p99, strict=True):
        if low:
            latency.text(
                max(low, high or low) * 1.15, row, _latency_label(low), va="center", fontsize=8.5
            )

    per_task = [r.get("bytes_per_task") or 0.0 for r in results]
    memory.barh(rows, per_task, color=colours, alpha=0.85)
    memory.set_xlim(0, max([*per_task, 1.0]) * 1.35)
    memory.set_title(
        "peak memory per queued task, bytes\n(args, a small int, included)", fontsize=10
    )
    for row, value in zip(rows, per_task, strict=True):
        if value:
            memory.text(value, row, f" {value:.0f}", va="center", fontsize=8.5)

    speed.set_yticks(rows, names)
    speed.invert_yaxis()
    for axis in (speed, latency, memory):
        axis.grid(axis="x", which="major", alpha=0.3)
        axis.spines[["top", "right"]].set_visible(False)
        axis.tick_params(axis="x", labelsize=8)

    env = payload.get("environment", {})
    settings = payload.get("settings", {})
    figure.suptitle(
        f"pyapalis vs peers, in-memory, trivial handler: N={settings.get('n', '?'):,} "
        f"(slow peers fewer), median of {settings.get('repeats', '?')} runs",
        fontsize=12,
        x=0.01,
        ha="left",
    )
    versions = " · ".join(
        f"{r['key'].split('-')[0]} {r['version']}"
        for r in results
        if r.get("version") and r["key"] in ("trio", "pyapalis-c1", "huey", "taskiq", "dramatiq")
    )
    figure.text(
        0.01,
        0.005,
        f"{env.get('date', '')} · {env.get('processor', '')}, {env.get('cpus', '?')} CPUs · "
        f"{env.get('python', '')} · pyapalis core: {env.get('pyapalis_core', '?')} · {versions}",
        fontsize=8,
        color="#495057",
    )
    figure.tight_layout(rect=(0, 0.03, 1, 0.95))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m benchmarks.chart RESULTS.json OUT.png", file=sys.stderr)
        return 2
    render(json.loads(Path(args[0]).read_text(encoding="utf-8")), args[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

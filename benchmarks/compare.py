"""Side-by-side comparison: the same workload on several queues, in one run.

``python -m benchmarks.compare [--n N] [--repeats R] [--latency-samples M]
[--json PATH] [--chart PATH] [--only KEYS] [--in-process]``

What is measured (the same for every contender, see ``benchmarks.peers``):

* **throughput**: ``N`` small ints are pushed up front, one by one, through
  the framework's ordinary push API; then its consumer runs a trivial handler
  (it increments a counter) on every task. The clock runs from the first push
  to the completion of the last task. Slow peers run a smaller ``N`` (their
  cap is printed); tasks per second is what is compared.
* **idle latency**: the consumer is idle; one task carrying ``perf_counter()``
  is pushed and the handler records the time it took to get there. ``M``
  samples, one task at a time; p50 and p99.
* **peak memory**: the peak growth of the resident set during the first
  throughput run, when all ``N`` tasks are queued at once (bytes per task =
  growth / N; args, a small int, included). See ``benchmarks.peers._probe``.

Each contender runs in a fresh Python process, so none inherits another's
heap, threads or GC state. In it, the first throughput run measures memory
(a cold process pays page faults for every new allocation); then ``R`` more
runs measure speed, and the table shows their median and best.

Contenders: a raw trio memory channel (the yardstick every ratio refers to),
``asyncio.Queue``, pyapalis (``MemoryStorage`` and a worker, concurrency 1 and
100; at concurrency 1 also with handlers that take a ``WorkerContext``, an
``Attempt`` and a ``TaskId``, or a ``Data[T]``), huey ``MemoryHuey`` with a
consumer, taskiq ``InMemoryBroker``, dramatiq ``StubBroker`` with a worker.
Peers that are not installed are skipped with a note (``pip install -e
'.[bench]'`` installs them).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .peers import (
    CONTENDERS,
    Contender,
    Probe,
    by_key,
    missing_requirements,
    version_of,
)
from .peers.pyapalis_worker import drain
from .peers.pyapalis_worker import latencies as pyapalis_latencies

__all__ = [
    "TARGETS",
    "Result",
    "drain",
    "format_table",
    "main",
    "measure_contender",
    "pyapalis_latencies",
    "run",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
YARDSTICK = "trio"
"""The contender every ratio refers to."""

SHAPES = ("pyapalis-context-c1", "pyapalis-attempt-c1", "pyapalis-data-c1")
"""Contenders whose handlers take more than the args (see ``benchmarks.peers.pyapalis_shapes``)."""

#: (contender, peer, minimum ratio of tasks/s): the speed targets of issues 3, 6 and 13
#: (every handler shape at least 6x the channel and 0.9x the args-only handler), and
#: issue 20's stretch target: at concurrency 1, at least asyncio's bare queue.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("pyapalis-c1", "trio", 6.0),
    ("pyapalis-c1", "asyncio", 1.0),
    ("pyapalis-c100", "trio", 3.0),
    ("pyapalis-bulk-c1", "trio", 5.0),
    ("pyapalis-bulk-c100", "trio", 3.0),
    ("pyapalis-c1", "huey", 15.0),
    ("pyapalis-c1", "taskiq", 30.0),
    ("pyapalis-c1", "dramatiq", 50.0),
    *((shape, "trio", 6.0) for shape in SHAPES),
    *((shape, "pyapalis-c1", 0.9) for shape in SHAPES),
)

#: (contender, peer, maximum ratio of idle latency p50): the latency targets of issues 3
#: and 13 (a handler that injects parameters reaches it as soon as the channel's does).
LATENCY_TARGETS: tuple[tuple[str, str, float], ...] = (
    ("pyapalis-c1", "trio", 1.0),
    *((shape, "trio", 1.0) for shape in SHAPES),
)

WORKLOAD = (
    "throughput: N tasks pushed up front, one by one, through each framework's push API, "
    "then a trivial handler (counter += 1) runs on each; timed from the first push to "
    "the last completion; median of R warm runs in a fresh process per contender. "
    "latency: idle consumer, one task at a time, push to handler start. "
    "memory: peak resident-set growth while all N tasks are queued (first run), per task."
)

_CHILD_PREFIX = "@@compare "


@dataclass
class Result:
    """One contender's figures (NaN where not measured)."""

    key: str
    name: str
    version: str = ""
    setup: str = ""
    n: int = 0
    tasks_per_second: float = math.nan
    """Median of the warm runs."""
    best_tasks_per_second: float = math.nan
    cold_tasks_per_second: float = math.nan
    """The first run of the process (the one that measured memory)."""
    runs: list[float] = field(default_factory=list)
    """Tasks/s of every warm run."""
    push_us_per_task: float = math.nan
    """Median cost of one push (the push loop / N)."""
    ratio_to_channel: float = math.nan
    latency_samples: int = 0
    latency_p50_us: float = math.nan
    latency_p99_us: float = math.nan
    peak_memory_bytes: float = math.nan
    bytes_per_task: float = math.nan
    memory_method: str = ""
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


# -- measuring one contender (in this process) ----------------------------------


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def measure_contender(
    contender: Contender,
    n: int,
    repeats: int,
    latency_samples: int,
    step: Callable[[str], None] = lambda _label: None,
) -> Result:
    """Run ``contender``'s workloads in this process; ``step`` is called after each run."""
    result = Result(contender.key, contender.name, version_of(contender), contender.setup)
    missing = missing_requirements(contender)
    if missing:
        result.skipped = f"not installed: {', '.join(missing)} (pip install -e '.[bench]')"
        return result
    if contender.max_n is not None and n > contender.max_n:
        result.notes.append(f"N capped at {contender.max_n:,} (slow peer; tasks/s is compared)")
        n = contender.max_n
    result.n = n

    timings = []
    for run_index in range(repeats + 1):
        gc.collect()
        probe = Probe(n)
        contender.throughput(n, probe)
        timing = probe.timing()
        if run_index == 0:
            result.cold_tasks_per_second = timing.tasks_per_second
            result.peak_memory_bytes = timing.peak_growth_bytes
            result.bytes_per_task = timing.peak_growth_bytes / n
            result.memory_method = timing.memory_method
            step("memory run")
        else:
            timings.append(timing)
            step(f"run {run_index}/{repeats}")
    if not timings:  # repeats == 0: the cold run is all there is
        timings = [timing]
    rates = [t.tasks_per_second for t in timings]
    result.runs = rates
    result.tasks_per_second = statistics.median(rates)
    result.best_tasks_per_second = max(rates)
    result.push_us_per_task = statistics.median(t.push_seconds / n * 1e6 for t in timings)

    samples = latency_samples
    if contender.max_latency_samples is not None and samples > contender.max_latency_samples:
        samples = contender.max_latency_samples
        result.notes.append(f"{samples} latency samples (each waits for a poll)")
    if samples > 0:
        gc.collect()
        ordered = sorted(contender.latency(samples))
        result.latency_samples = len(ordered)
        result.latency_p50_us = statistics.median(ordered) * 1e6
        result.latency_p99_us = _percentile(ordered, 0.99) * 1e6
    step("latency")
    return result


def steps_for(contender: Contender, repeats: int) -> int:
    """Progress steps :func:`measure_contender` reports (memory run, repeats, latency)."""
    return 0 if missing_requirements(contender) else repeats + 2


def _child_main(key: str, n: int, repeats: int, latency_samples: int) -> int:
    """Measure one contender and report to the parent through stdout."""

    def report(kind: str, payload: Any) -> None:
        print(_CHILD_PREFIX + json.dumps({"kind": kind, "payload": payload}), flush=True)

    result = measure_contender(
        by_key(key), n, repeats, latency_samples, step=lambda label: report("step", label)
    )
    report("result", asdict(result))
    return 0


def _measure_in_child(
    contender: Contender,
    n: int,
    repeats: int,
    latency_samples: int,
    step: Callable[[str], None],
) -> Result:
    """Run :func:`measure_contender` in a fresh interpreter; a crash becomes a note."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.compare",
        "--child",
        contender.key,
        "--n",
        str(n),
        "--repeats",
        str(repeats),
        "--latency-samples",
        str(latency_samples),
    ]
    payload: dict[str, Any] | None = None
    with subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            if not line.startswith(_CHILD_PREFIX):
                continue
            message = json.loads(line[len(_CHILD_PREFIX) :])
            if message["kind"] == "step":
                step(message["payload"])
            else:
                payload = message["payload"]
        stderr = process.stderr.read()
        returncode = process.wait()
    if payload is None or returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:]) or f"exit status {returncode}"
        return Result(contender.key, contender.name, skipped=f"failed: {tail}")
    return Result(**payload)


# -- the whole run -------------------------------------------------------------


class _Progress:
    """A tqdm bar when tqdm is installed, else one line per step on stderr."""

    def __init__(self, total: int) -> None:
        self._bar: Any = None
        self._done = 0
        self._total = total
        self._label = ""
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True)

    def contender(self, name: str) -> None:
        self._label = name
        if self._bar is not None:
            self._bar.set_description(name)
            self._bar.set_postfix_str("", refresh=True)

    def step(self, label: str) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(1)
        else:
            print(f"[{self._done}/{self._total}] {self._label}: {label}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run(
    n: int,
    latency_samples: int,
    repeats: int,
    only: Iterable[str] | None = None,
    in_process: bool = False,
    contenders: Sequence[Contender] = CONTENDERS,
) -> list[Result]:
    """Measure every contender (or those in ``only``), each in its own process
    unless ``in_process``; ratios refer to the trio channel when it ran."""
    chosen = list(contenders)
    if only is not None:
        wanted = set(only)
        chosen = [c for c in chosen if c.key in wanted]
    progress = _Progress(sum(steps_for(c, repeats) for c in chosen))
    results = []
    try:
        for contender in chosen:
            progress.contender(contender.name)
            if in_process or missing_requirements(contender):
                result = measure_contender(contender, n, repeats, latency_samples, progress.step)
            else:
                result = _measure_in_child(contender, n, repeats, latency_samples, progress.step)
            if in_process and not result.skipped:
                result.notes.append("measured in a shared process")
            results.append(result)
    finally:
        progress.close()
    yardstick = next((r for r in results if r.key == YARDSTICK and not r.skipped), None)
    if yardstick is not None:
        for result in results:
            result.ratio_to_channel = result.tasks_per_second / yardstick.tasks_per_second
    return results


def check_targets(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Each target of :data:`TARGETS` whose two contenders ran: the ratio and whether met."""
    by_key_ = {r.key: r for r in results if not r.skipped}
    checks = []
    for key, peer, required in TARGETS:
        if key in by_key_ and peer in by_key_:
            ratio = by_key_[key].tasks_per_second / by_key_[peer].tasks_per_second
            best = by_key_[key].best_tasks_per_second / by_key_[peer].best_tasks_per_second
            checks.append(
                {
                    "contender": key,
                    "peer": peer,
                    "required": required,
                    "ratio": ratio,
                    "ratio_of_best": best,
                    "met": ratio >= required,
                }
            )
    return checks


def check_latency_targets(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Each target of :data:`LATENCY_TARGETS` whose two contenders measured latency."""
    by_key_ = {r.key: r for r in results if not r.skipped and r.latency_samples}
    checks = []
    for key, peer, allowed in LATENCY_TARGETS:
        if key in by_key_ and peer in by_key_:
            ratio = by_key_[key].latency_p50_us / by_key_[peer].latency_p50_us
            checks.append(
                {
                    "contender": key,
                    "peer": peer,
                    "allowed": allowed,
                    "ratio": ratio,
                    "met": ratio <= allowed,
                }
            )
    return checks


# -- output ----------------------------------------------------------------------


def _rate(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _duration_us(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} s"
    if value >= 1e3:
        return f"{value / 1e3:.1f} ms"
    return f"{value:.1f} µs"


def _megabytes(value: float) -> str:
    return "-" if math.isnan(value) else f"{value / 1e6:.1f}"


def format_table(results: Sequence[Result]) -> str:
    """The results as a fixed-width text table (also valid Markdown)."""
    header = (
        "| contender | N | tasks/s (median) | best | x trio channel | idle p50 | idle p99 "
        "| peak MB | bytes/task |"
    )
    lines = [header, "|" + "---|" * 9]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.name} | skipped: {r.skipped} |" + " |" * 7)
            continue
        ratio = "-" if math.isnan(r.ratio_to_channel) else f"{r.ratio_to_channel:.2f}"
        per_task = "-" if math.isnan(r.bytes_per_task) else f"{r.bytes_per_task:.0f}"
        lines.append(
            f"| {r.name} | {r.n:,} | {_rate(r.tasks_per_second)} | "
            f"{_rate(r.best_tasks_per_second)} | {ratio} | {_duration_us(r.latency_p50_us)} | "
            f"{_duration_us(r.latency_p99_us)} | {_megabytes(r.peak_memory_bytes)} | {per_task} |"
        )
    return "\n".join(lines)


def format_targets(checks: Sequence[dict[str, Any]]) -> str:
    lines = []
    for check in checks:
        verdict = "met" if check["met"] else "MISSED"
        lines.append(
            f"  {check['contender']} vs {check['peer']}: {check['ratio']:.2f}x "
            f"(best-of: {check['ratio_of_best']:.2f}x), target >= {check['required']:g}x: {verdict}"
        )
    return "\n".join(lines)


def format_latency_targets(checks: Sequence[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {check['contender']} vs {check['peer']}: {check['ratio']:.2f}x, "
        f"target <= {check['allowed']:g}x: {'met' if check['met'] else 'MISSED'}"
        for check in checks
    )


def environment() -> dict[str, Any]:
    """Where and with what the run happened."""
    from pyapalis import _implementation

    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan, math.nan, math.nan)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(load),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pyapalis_core": _implementation.IMPLEMENTATION,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def payload_for(
    results: Sequence[Result], settings: dict[str, Any], env: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document: environment, settings, workload, results, targets."""
    return {
        "schema": 1,
        "environment": env,
        "settings": settings,
        "workload": WORKLOAD,
        "yardstick": YARDSTICK,
        "results": [asdict(r) for r in results],
        "targets": check_targets(results),
        "latency_targets": check_latency_targets(results),
    }


def _write_json(path: str, payload: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # NaN is not JSON: write null for figures that were not measured.
    text = json.dumps(_nan_to_none(payload), indent=2, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


# -- command line ------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _keys(text: str) -> list[str]:
    keys = [part.strip() for part in text.split(",") if part.strip()]
    known = [c.key for c in CONTENDERS]
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown contender(s) {', '.join(unknown) or repr(text)}; known: {', '.join(known)}"
        )
    return keys


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Run the same workload on pyapalis and its peers; print, save and chart it.",
    )
    parser.add_argument(
        "--n", type=_positive_int, default=100_000, help="tasks per throughput run (100,000)"
    )
    parser.add_argument(
        "--repeats", type=_non_negative_int, default=5, help="timed runs after the memory run (5)"
    )
    parser.add_argument(
        "--latency-samples",
        type=_non_negative_int,
        default=2_000,
        help="idle latency samples (2,000; 0 skips)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--chart", metavar="PATH", help="draw a PNG chart (needs matplotlib)")
    parser.add_argument(
        "--only",
        type=_keys,
        metavar="KEYS",
        help="comma-separated contenders: " + ",".join(c.key for c in CONTENDERS),
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every contender in this process (quicker; memory figures less fair)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        return _child_main(args.child, args.n, args.repeats, args.latency_samples)
    env = environment()
    print(WORKLOAD, file=sys.stderr)
    results = run(args.n, args.latency_samples, args.repeats, args.only, args.in_process)
    print(format_table(results))
    for r in results:
        for note in r.notes:
            print(f"  {r.name}: {note}")
    checks = check_targets(results)
    if checks:
        print("targets (ratios of median tasks/s):")
        print(format_targets(checks))
    latency_checks = check_latency_targets(results)
    if latency_checks:
        print("latency targets (ratios of idle p50):")
        print(format_latency_targets(latency_checks))
    settings = {
        "n": args.n,
        "repeats": args.repeats,
        "latency_samples": args.latency_samples,
        "isolation": "in-process" if args.in_process else "one process per contender",
        "command": "python -m benchmarks.compare " + " ".join(argv or sys.argv[1:]),
    }
    payload = payload_for(results, settings, env)
    if args.json:
        _write_json(args.json, payload)
        print(f"results written to {args.json}")
    if args.chart:
        from .chart import render

        try:
            render(_nan_to_none(payload), args.chart)
        except ImportError as exc:  # matplotlib is imported by render()
            print(f"no chart: {exc} (pip install matplotlib)", file=sys.stderr)
        else:
            print(f"chart written to {args.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

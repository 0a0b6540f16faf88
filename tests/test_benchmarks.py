"""The benchmarks must not rot: the comparison, its chart and the asv suites run.

Everything runs with tiny sizes. The in-process tests use only the contenders
that need nothing beyond pyapalis' own dependencies; the peers (huey, taskiq,
dramatiq, from the ``bench`` extra) run in a subprocess, as the comparison
runs them, and are skipped when they are not installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `pytest` run without `python -m`
    sys.path.insert(0, str(REPO_ROOT))

import pyapalis  # noqa: E402
from benchmarks import bench_memory, bench_scale, bench_worker, compare  # noqa: E402
from benchmarks.peers import CONTENDERS, Contender, by_key, channels  # noqa: E402

CURRENT = pyapalis._implementation.IMPLEMENTATION
BUILT_INS = [
    "trio",
    "asyncio",
    "pyapalis-c1",
    "pyapalis-c100",
    "pyapalis-bulk-c1",
    "pyapalis-bulk-c100",
    "pyapalis-context-c1",
    "pyapalis-attempt-c1",
    "pyapalis-data-c1",
]
PEERS = [c.key for c in CONTENDERS if c.requires]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_compare(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- the comparison, in this process ---------------------------------------------


def test_in_process_run_measures_every_built_in_contender() -> None:
    results = compare.run(n=300, latency_samples=5, repeats=2, only=BUILT_INS, in_process=True)

    assert [r.key for r in results] == BUILT_INS
    for result in results:
        assert result.skipped is None
        assert result.n == 300
        assert len(result.runs) == 2
        assert result.tasks_per_second == statistics.median(result.runs)
        assert result.best_tasks_per_second == max(result.runs)
        assert result.tasks_per_second > 0 and result.cold_tasks_per_second > 0
        assert result.latency_samples == 5
        assert 0 < result.latency_p50_us <= result.latency_p99_us
        assert result.push_us_per_task > 0
        assert not math.isnan(result.peak_memory_bytes)
        assert result.notes == ["measured in a shared process"]
    trio_result = results[0]
    assert trio_result.ratio_to_channel == 1.0
    pyapalis_c1 = results[2]
    assert pyapalis_c1.ratio_to_channel == pytest.approx(
        pyapalis_c1.tasks_per_second / trio_result.tasks_per_second
    )


def test_median_and_best_come_from_the_timed_runs_not_the_memory_run() -> None:
    (result,) = compare.run(n=200, latency_samples=0, repeats=3, only=["trio"], in_process=True)

    assert len(result.runs) == 3
    assert result.tasks_per_second == sorted(result.runs)[1]
    assert result.best_tasks_per_second == max(result.runs)
    assert result.latency_samples == 0 and math.isnan(result.latency_p50_us)


def test_every_handler_call_is_counted_exactly_n_times() -> None:
    calls: list[int] = []
    original = channels.trio_throughput

    def counting_throughput(n: int, probe: Any) -> None:
        calls.append(n)
        original(n, probe)

    contender = Contender("trio", "counted", "", counting_throughput, channels.trio_latency)
    compare.run(123, 0, 2, in_process=True, contenders=[contender])

    assert calls == [123, 123, 123]  # the memory run, then two timed runs


def test_a_peer_that_is_not_installed_is_skipped_with_a_note() -> None:
    missing = Contender(
        "ghost",
        "ghost queue",
        "",
        channels.trio_throughput,
        channels.trio_latency,
        requires=("pyapalis_no_such_module_for_tests",),
    )
    results = compare.run(100, 5, 1, contenders=[by_key("trio"), missing])

    assert results[1].skipped == (
        "not installed: pyapalis_no_such_module_for_tests (pip install -e '.[bench]')"
    )
    assert math.isnan(results[1].tasks_per_second)
    assert "| ghost queue | skipped: not installed" in compare.format_table(results)
    assert compare.steps_for(missing, 5) == 0


def test_a_slow_peer_runs_its_capped_n_and_says_so() -> None:
    capped = Contender(
        "trio", "capped", "", channels.trio_throughput, channels.trio_latency, max_n=150
    )
    (result,) = compare.run(1_000, 0, 1, in_process=True, contenders=[capped])

    assert result.n == 150
    assert result.notes[0] == "N capped at 150 (slow peer; tasks/s is compared)"


def test_targets_are_ratios_of_median_tasks_per_second() -> None:
    fast = compare.Result("pyapalis-c1", "p", tasks_per_second=600.0, best_tasks_per_second=900.0)
    channel = compare.Result("trio", "t", tasks_per_second=100.0, best_tasks_per_second=200.0)
    huey = compare.Result("huey", "h", tasks_per_second=50.0, best_tasks_per_second=60.0)
    skipped = compare.Result("taskiq", "q", skipped="not installed")

    checks = compare.check_targets([fast, channel, huey, skipped])

    assert checks == [
        {
            "contender": "pyapalis-c1",
            "peer": "trio",
            "required": 6.0,
            "ratio": 6.0,
            "ratio_of_best": 4.5,
            "met": True,
        },
        {
            "contender": "pyapalis-c1",
            "peer": "huey",
            "required": 15.0,
            "ratio": 12.0,
            "ratio_of_best": 15.0,
            "met": False,
        },
    ]


def test_the_latency_target_is_the_ratio_of_idle_p50s() -> None:
    quick = compare.Result("pyapalis-c1", "p", latency_samples=10, latency_p50_us=4.0)
    channel = compare.Result("trio", "t", latency_samples=10, latency_p50_us=5.0)
    unmeasured = compare.Result("trio", "t")

    [check] = compare.check_latency_targets([quick, channel])
    assert check == {
        "contender": "pyapalis-c1",
        "peer": "trio",
        "allowed": 1.0,
        "ratio": 0.8,
        "met": True,
    }
    assert "pyapalis-c1 vs trio: 0.80x, target <= 1x: met" in compare.format_latency_targets(
        [check]
    )
    slow = compare.Result("pyapalis-c1", "p", latency_samples=10, latency_p50_us=6.0)
    assert compare.check_latency_targets([slow, channel])[0]["met"] is False
    assert compare.check_latency_targets([quick, unmeasured]) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "trio,nosuch"], "unknown contender(s) nosuch; known: trio, asyncio"),
        (["--n", "0"], "argument --n: must be >= 1, got 0"),
        (["--n", "ten"], "argument --n: expected an integer, got 'ten'"),
        (["--repeats", "-1"], "argument --repeats: must be >= 0, got -1"),
    ],
)
def test_bad_command_line_arguments_are_refused_by_name(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        compare.parser().parse_args(argv)

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# -- the command, as CI runs it -----------------------------------------------------


def test_command_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    json_path = tmp_path / "results.json"

    completed = _run_compare(
        "--n=400", "--repeats=1", "--latency-samples=5", "--only=trio,pyapalis-c1",
        f"--json={json_path}",
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("| contender | N | tasks/s (median) |")
    assert lines[2].startswith("| trio memory channel | 400 |")
    assert lines[3].startswith("| pyapalis c=1 | 400 |")
    assert "pyapalis-c1 vs trio:" in completed.stdout
    assert "timed from the first push to the last completion" in completed.stderr
    payload = json.loads(json_path.read_text(encoding="utf-8"))
    assert payload["settings"]["isolation"] == "one process per contender"
    assert [r["key"] for r in payload["results"]] == ["trio", "pyapalis-c1"]
    assert payload["results"][0]["ratio_to_channel"] == 1.0
    assert payload["results"][1]["memory_method"] in ("VmHWM after clear_refs", "ru_maxrss")
    assert payload["targets"][0]["peer"] == "trio"
    assert payload["environment"]["pyapalis_core"] == CURRENT


@pytest.mark.slow  # several seconds: the peers start threads and import pydantic
@pytest.mark.skipif(
    not any(importlib.util.find_spec(by_key(k).requires[0]) for k in PEERS),
    reason="no peer framework installed (pip install -e '.[bench]')",
)
def test_installed_peers_run_in_their_own_processes(tmp_path: Path) -> None:
    json_path = tmp_path / "peers.json"

    completed = _run_compare(
        "--n=60", "--repeats=0", "--latency-samples=1", f"--only={','.join(PEERS)}",
        f"--json={json_path}",
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    results = {r["key"]: r for r in json.loads(json_path.read_text(encoding="utf-8"))["results"]}
    for key in PEERS:
        installed = importlib.util.find_spec(by_key(key).requires[0]) is not None
        result = results[key]
        if installed:
            assert result["skipped"] is None, result
            assert result["n"] == 60 and result["tasks_per_second"] > 0
            assert result["latency_samples"] == 1
        else:
            assert result["skipped"].startswith("not installed")


# -- the chart ------------------------------------------------------------------------


def test_chart_option_draws_a_png_and_a_saved_run_can_be_redrawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from benchmarks import chart

    chart_path, json_path = tmp_path / "chart.png", tmp_path / "results.json"

    status = compare.main(
        ["--n=100", "--repeats=1", "--latency-samples=3", "--only=trio,pyapalis-c1",
         "--in-process", f"--chart={chart_path}", f"--json={json_path}"]
    )  # fmt: skip

    assert status == 0
    assert f"chart written to {chart_path}" in capsys.readouterr().out
    assert chart_path.read_bytes().startswith(PNG_MAGIC)
    saved = json.loads(json_path.read_text(encoding="utf-8"))
    assert saved["settings"]["isolation"] == "in-process"
    with pytest.raises(ValueError, match=r"^render: no contender has results to draw$"):
        chart.render({"results": [{"key": "huey", "skipped": "x"}]}, tmp_path / "none.png")


# -- the asv suites ----------------------------------------------------------------------

SUITES = [
    bench_memory.StoragePush,
    bench_memory.StoragePop,
    bench_memory.QueuedTaskMemory,
    bench_memory.QueuedTaskResidentMemory,
    bench_worker.WorkerDrain,
    bench_worker.WorkerThroughput,
    bench_worker.IdleLatency,
    bench_scale.Backlog,
    bench_scale.BacklogRatio,
    bench_scale.ScheduleHeap,
    bench_scale.ReadyBesideSchedule,
]


@pytest.fixture
def small_suites(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the suites' fixed sizes so each benchmark runs in milliseconds."""
    monkeypatch.setattr(bench_memory, "BATCH", 200)
    monkeypatch.setattr(bench_memory, "MEMORY_TASKS", 2_000)
    monkeypatch.setattr(bench_memory, "TRACED_TASKS", 2_000)
    monkeypatch.setattr(bench_scale, "BATCH", 200)
    monkeypatch.setattr(bench_scale, "LARGE_BACKLOG", 5_000)
    monkeypatch.setattr(bench_scale, "SMALL_BACKLOG", 500)
    monkeypatch.setattr(bench_scale, "RATIO_ROUNDS", 3)
    monkeypatch.setattr(bench_worker.IdleLatency, "samples", 20)


@pytest.mark.usefixtures("small_suites")
@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"{s.__module__}.{s.__name__}")
def test_asv_suite_runs_at_its_smallest_parameters(suite: type) -> None:
    # The implementation loaded now (switching would swap pyapalis under the
    # other tests); every other parameter at its first, smallest value.
    names = suite.param_names
    assert names[0] == "implementation"
    params = [CURRENT] + [values[0] for values in suite.params[1:]]
    methods = [
        name
        for name in dir(suite)
        if name.split("_", 1)[0] in ("time", "peakmem", "track") and callable(getattr(suite, name))
    ]
    assert methods, f"{suite.__name__} has no benchmark"
    for method in methods:
        instance = suite()
        try:
            instance.setup(*params)
        except NotImplementedError as skipped:
            pytest.skip(str(skipped))
        value = getattr(instance, method)(*params)
        getattr(instance, "teardown", lambda *_: None)(*params)
        if method.startswith("track"):
            assert isinstance(value, float) and math.isfinite(value), (method, value)
            if "rss" not in method:  # RSS is the OS's view: other threads may free pages
                assert value >= 0, (method, value)


def test_every_suite_is_parametrized_over_both_implementations() -> None:
    discovered = [
        obj
        for module in (bench_memory, bench_worker, bench_scale)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and obj.__module__ == module.__name__
        and not obj.__name__.startswith("_")
        and any(n.startswith(("time_", "peakmem_", "track_")) for n in dir(obj))
    ]

    assert sorted(s.__name__ for s in discovered) == sorted(s.__name__ for s in SUITES)
    for suite in discovered:
        assert suite.params[0] == ["cython", "python"], suite.__name__
        assert len(suite.params) == len(suite.param_names), suite.__name__
        for values in suite.params[1:]:
            assert values == sorted(values), f"{suite.__name__}: smallest parameters first"


def test_load_pyapalis_switches_implementations_and_back() -> None:
    # In a subprocess: switching swaps the pyapalis modules of the process.
    script = """
import pyapalis
from benchmarks._support import load_pyapalis
first = pyapalis._implementation.IMPLEMENTATION
other = {"cython": "python", "python": "cython"}[first]
try:
    switched = load_pyapalis(other)
    print(other, switched._implementation.IMPLEMENTATION, switched.Task.__module__)
except NotImplementedError as exc:
    print(other, "skipped", exc)
back = load_pyapalis(first)
print(first, back is pyapalis, back.Task is pyapalis.Task)
try:
    load_pyapalis("rust")
except ValueError as exc:
    print(exc)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYAPALIS_NO_EXTENSIONS"}
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    if importlib.util.find_spec("pyapalis._core") is None:
        pytest.skip("the compiled core is not built")
    assert completed.stdout.splitlines() == [
        "python python pyapalis._twin._task",
        "cython True True",
        "load_pyapalis: implementation must be one of ['cython', 'python'], got 'rust'",
    ]


# -- the runtime latency script -----------------------------------------------------


def test_runtime_latency_rows_each_return_one_figure_per_sample() -> None:
    from benchmarks import runtime_latency

    labels = [label for label, _run in runtime_latency.LATENCY_ROWS]
    assert any(label.startswith("floor: plain thread") for label in labels)
    assert any(label.startswith("floor: trio task") for label in labels)
    for _label, run in runtime_latency.LATENCY_ROWS:
        values = run(5)
        assert len(values) == 5
        assert all(0 < value < 5.0 for value in values)


def test_the_paired_latency_probe_samples_both_consumers_alternately() -> None:
    import trio

    from benchmarks import idle_latency_paired

    latencies = trio.run(idle_latency_paired.paired, 6, 20)
    assert set(latencies) == {"trio channel", "pyapalis worker"}
    assert all(len(values) == 6 for values in latencies.values())  # warm-up tasks not counted
    assert all(0 < value < 5.0 for values in latencies.values() for value in values)


# -- asv discovery without the bench extra ---------------------------------------------

BENCH_EXTRA_MODULES = ["matplotlib", "tqdm", "huey", "taskiq", "dramatiq"]

_DISCOVER = """
import sys
for name in sys.argv[1:]:
    sys.modules[name] = None  # as if the bench extra were not installed
from asv_runner.discovery import disc_benchmarks
names = sorted(b.name for b in disc_benchmarks("benchmarks"))
print(len(names))
print("\\n".join(names))
"""


def test_asv_discovers_the_suites_without_the_bench_extra() -> None:
    """asv imports every module under ``benchmarks/`` (helpers included) to find
    the suites: none of them may need the ``bench`` extra at import."""
    proc = subprocess.run(
        [sys.executable, "-c", _DISCOVER, *BENCH_EXTRA_MODULES],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    count, *names = proc.stdout.splitlines()
    assert int(count) == len(names) > 0
    assert any(name.startswith("bench_core.") for name in names), names
    # Only the bench_* suites hold benchmarks: no helper is mistaken for one.
    assert all(name.startswith("bench_") for name in names), names


def test_cpu_per_task_rows_measure_what_they_say() -> None:
    from benchmarks import cpu_per_task

    for _label, baseline, measure in cpu_per_task.ROWS:
        base, ours = cpu_per_task.best_per_task(baseline, measure, 50, 1)
        assert base > 0 and ours > 0


def test_the_board_counts_benchmark_measures_both_ways_on_both_backends() -> None:
    import trio

    from benchmarks import board_counts

    rows = trio.run(board_counts.measure, 30, 1)
    assert [row["backend"] for row in rows] == ["SqliteStorage", "JsonStorage"]
    assert all(row["count_tasks_ms"] > 0 and row["listing_ms"] > 0 for row in rows)

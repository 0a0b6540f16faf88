"""The layer benchmarks must not rot: the script mode, the table and the asv suites run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `pytest` run without `python -m`
    sys.path.insert(0, str(REPO_ROOT))

import pyapalis  # noqa: E402
from benchmarks import bench_layers  # noqa: E402

CURRENT = pyapalis._implementation.IMPLEMENTATION


def test_every_built_in_layer_has_a_configuration() -> None:
    assert list(bench_layers.LAYERS)[:2] == ["none", "passthrough"]
    expected = {
        "event_listener", "acknowledge", "circuit_breaker", "long_running", "retry",
        "timeout", "catch_panic", "concurrency_limit", "rate_limit", "load_shed",
        "tracing", "tracing-on", "prometheus", "otel",
    }  # fmt: skip
    assert expected <= set(bench_layers.LAYERS)


def test_measure_overheads_and_the_table() -> None:
    rows = bench_layers.measure_overheads(n=300, repeats=1, layers=["retry", "timeout"])
    assert [row.layer for row in rows] == ["none", "retry", "timeout"]
    none = rows[0]
    assert none.overhead_ns == 0.0
    for row in rows:
        assert row.skipped is None
        assert row.ns_per_task > 0
        assert math.isclose(row.overhead_ns, row.ns_per_task - none.ns_per_task)
    table = bench_layers.format_table(rows, 300, 1)
    assert table.splitlines()[2].startswith("| layer | ns/task |")
    assert "| timeout |" in table
    with pytest.raises(ValueError, match=r"^measure_overheads: unknown layers \['nope'\]"):
        bench_layers.measure_overheads(n=10, repeats=1, layers=["nope"])


def test_script_mode(capsys: pytest.CaptureFixture[str]) -> None:
    bench_layers.main(["--n", "200", "--repeats", "1", "--only", "catch_panic",
                       "--implementation", CURRENT])  # fmt: skip
    out = capsys.readouterr().out
    assert f"({CURRENT} core)" in out
    assert "| catch_panic |" in out


@pytest.mark.parametrize("layer", ["none", "load_shed", "long_running", "prometheus", "otel"])
def test_asv_suites_run(layer: str) -> None:
    drain = bench_layers.LayerDrain()
    drain.n = 200
    try:
        drain.setup(CURRENT, layer)
    except NotImplementedError as reason:  # an extra that is not installed: asv skips it
        pytest.skip(str(reason))
    drain.time_drain(CURRENT, layer)
    assert len(drain.storage) == 0
    if layer != "none":
        overhead = bench_layers.LayerOverhead()
        overhead.n, overhead.repeats = 200, 1
        overhead.setup(CURRENT, layer)
        assert math.isfinite(overhead.track_overhead_ns(CURRENT, layer))

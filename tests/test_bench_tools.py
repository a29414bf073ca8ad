"""``tools/bench.py compare`` and ``callgrind``: they run, and their output has sane figures.

The hftbacktest comparison needs the optional ``bench`` extra and the instruction counts need
valgrind; each test says why it skips when they are missing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "tools" / "bench.py"
sys.path.insert(0, str(ROOT / "tools"))

HAVE_HBT = (
    importlib.util.find_spec("hftbacktest") is not None
    and importlib.util.find_spec("numba") is not None
)
HAVE_VALGRIND = shutil.which("valgrind") is not None and shutil.which("callgrind_control")


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.slow  # about 19 s, most of it numba compiling the strategy
@pytest.mark.skipif(not HAVE_HBT, reason="hftbacktest not installed: pip install -e '.[bench]'")
def test_compare_runs_all_three_on_the_same_events() -> None:
    done = _bench("compare", "--events", "20000", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["events"] == 20000
    assert out["hbt_rows"] >= out["events"]  # the opening snapshot is one row per level
    assert out["simulated_s"] > 0
    assert out["numba_compile_cpu_s_excluded"] > 0
    cfa, numba_run, py_run = (out["results"][k] for k in ("cfa", "hbt_numba", "hbt_python"))
    assert cfa["events"] >= out["events"]  # the same background events plus our own
    assert cfa["placed"] > 0 and cfa["fills"] > 0
    for r in (cfa, numba_run, py_run):
        assert r["cpu_us_per_event"] > 0
    for r in (numba_run, py_run):
        assert r["feed_events"] > 0.9 * out["events"]
        assert r["orders_submitted"] > 0
    # the compiled and the Python strategy are one source on the same data: same decisions
    for key in ("feed_events", "orders_submitted", "cancels", "fills", "position"):
        assert numba_run[key] == py_run[key], key
    assert py_run["cpu_us_per_event"] > numba_run["cpu_us_per_event"]
    assert out["ratios_us_per_event"]["cfa_over_hbt_numba"] > 0
    assert out["ratios_us_per_event"]["cfa_over_hbt_python"] > 0
    assert "different work" in out["caveat"]


def test_compare_without_hftbacktest_says_so_and_exits_2() -> None:
    code = (
        "import sys; sys.modules['hftbacktest'] = None; "
        f"sys.path.insert(0, {str(ROOT / 'tools')!r}); "
        "import bench; sys.exit(bench.main(['compare', '--events', '100']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 2
    assert "pip install -e '.[bench]'" in done.stderr


def test_to_hftbacktest_maps_ladders_and_trades() -> None:
    pytest.importorskip("hftbacktest", reason="hftbacktest not installed")
    import bench_compare
    from hftbacktest import BUY_EVENT, DEPTH_EVENT, SELL_EVENT, TRADE_EVENT

    from cfa.core.types import BookDelta, BookSnapshot, Outcome, Side, Trade

    events = [
        BookSnapshot("T", 0, 1.0, yes=((4000, 500),), no=((5500, 300),)),
        BookDelta("T", 1, 1.5, Outcome.YES, 4000, -200),
        BookDelta("T", 2, 2.0, Outcome.NO, 5500, 100),
        Trade("T", "t1", 2.5, 4500, 1500, Side.BID),
    ]
    arr = bench_compare.to_hftbacktest(events)
    assert len(arr) == 5
    kinds = [(int(r["ev"]) & 0xFF, bool(int(r["ev"]) & BUY_EVENT)) for r in arr]
    assert kinds == [
        (DEPTH_EVENT, True),
        (DEPTH_EVENT, False),
        (DEPTH_EVENT, True),
        (DEPTH_EVENT, False),
        (TRADE_EVENT, True),
    ]
    assert int(arr[1]["ev"]) & SELL_EVENT
    assert arr["px"].tolist() == pytest.approx([0.40, 0.45, 0.40, 0.45, 0.45])
    # depth rows carry the level's new total (contracts), not the change
    assert arr["qty"].tolist() == pytest.approx([5.0, 3.0, 3.0, 4.0, 15.0])
    assert arr["exch_ts"].tolist() == [1_000_000_000] * 2 + [1_500_000_000, 2_000_000_000] + [
        2_500_000_000
    ]
    assert (arr["local_ts"] == arr["exch_ts"]).all()


@pytest.mark.parametrize(
    ("profiler", "seconds", "groups"),
    [
        # every group shows under cProfile (deterministic); the sampler's 4 ms ticks may miss
        # the small ones (quote, risk: 2-3 %) in a short run, so only the big ones are asserted
        (
            "cprofile",
            "600",
            ("loop/session", "audit", "simulator", "book", "estimators", "quote", "risk"),
        ),
        ("sample", "1200", ("loop/session", "audit", "simulator", "book", "estimators")),
    ],
)
def test_profile_groups_cover_the_run(profiler: str, seconds: str, groups: tuple[str, ...]) -> None:
    done = _bench("callgrind", "--profile", "--profiler", profiler, "--seconds", seconds, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["profiler"] == profiler
    assert out["events"] > 10_000
    assert out["placed"] > 0
    if profiler == "sample":
        assert out["samples"] > 50
    pct = out["groups_pct"]
    assert sum(pct.values()) == pytest.approx(100.0, abs=0.5)
    for g in groups:
        assert pct[g] > 0, g
    assert out["top_functions"] and out["top_functions"][0]["pct"] > 0


def test_group_of_maps_modules() -> None:
    import bench_callgrind as bc

    assert bc.group_of("/x/cfa/audit/store.py") == "audit"
    assert bc.group_of("/x/cfa/runtime/recorder.py") == "audit"
    assert bc.group_of("/x/cfa/runtime/loop.py") == "loop/session"
    assert bc.group_of("/x/cfa/exchange/sim/market.py") == "simulator"
    assert bc.group_of("/x/cfa/core/book.py") == "book"
    assert bc.group_of("/x/cfa/core/quoting.py") == "quote"
    assert bc.group_of("/x/cfa/risk/gate.py") == "risk"
    assert bc.group_of("/usr/lib/python3.11/json/encoder.py") is None
    assert bc.group_of("~") is None


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_VALGRIND, reason="valgrind (callgrind_control) not installed")
def test_callgrind_counts_instructions_per_event() -> None:
    done = _bench("callgrind", "--seconds", "5", "--runs", "1", "--json", timeout=900)
    out = json.loads(done.stdout)
    (run,) = out["runs"]
    assert run["events"] > 0
    assert run["ir"] > 0
    assert 1_000 < run["ir_per_event"] < 10_000_000
    # 5 simulated seconds end inside the σ warm-up: no order, which the command reports
    if run["placed"] == 0:
        assert done.returncode == 1 and "placed no order" in done.stderr
    else:
        assert done.returncode == 0, done.stderr

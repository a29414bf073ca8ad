"""``tools/bench.py callgrind``: instructions per event of a fixed run, and ``--profile``.

**Workload** (fixed and deterministic): one ``calm`` market of the simulator, seed ``--seed``
(1, which trades), ``--seconds`` (600) simulated seconds, through a
:class:`cfa.runtime.session.Session` with the default policy, no agents, and the audit store on
a SQLite file in a temporary directory: the fast path end to end, as ``bench.py sim`` runs it.

**Instruction counts.** The workload runs in a child interpreter under
``valgrind --tool=callgrind --instr-atstart=no``: instrumentation is off while the interpreter
starts, imports cfa (numpy, statsmodels, …) and builds the exchange, the store and the
session. The child then says ``ready`` on its stdout and waits; the parent switches
instrumentation on with ``callgrind_control -i on <pid>`` (synchronous: it returns once
valgrind has applied it), tells the child to go, the child runs ``Session.run()`` and prints
its event count and order traffic, the parent switches instrumentation off and lets the child
exit. So the total (``Ir``, instructions executed, from valgrind's log) is the session run
only, with no start-up, import or shutdown cost, and no second run to subtract. ``Ir/event``
divides by the session's own event count (``Session.events``, counted in the child).

Instruction counts do not move with machine load, unlike CPU seconds; ``--runs`` (2) repeats
the measurement to show it. The child runs with ``PYTHONHASHSEED=0`` so that dict and set
layouts are the same each time, and with the session's two *wall-clock* timers off: the audit
commit at least every 0.25 s of wall time (``flush_interval``) and the heartbeat every 1 s.
Valgrind slows the run 20–50x, so those would fire 20–50x more often than at native speed and
make the count depend on how fast the machine ran the child (0.7 % between two runs on a
loaded machine with them on); the commit every ``flush_every`` (2,000) events, which is what
commits natively in a run this short, stays. The spread between runs is printed.

``--top N`` prints the N functions with the most *exclusive* (self) Ir of the last run
(``callgrind_annotate``). For Python they are the interpreter's C functions (the eval loop, dict
and object internals, the JSON encoder, SQLite, hashing), which says how the work splits
between the interpreter, the encoders and SQLite, not which cfa module asks for it (inclusive
counts are no better: every entry is the same chain of eval-loop and asyncio frames).

**``--profile``** (no valgrind; default 7,200 simulated s): the same workload in process, with
its CPU assigned to groups of cfa modules (:data:`GROUPS`): ``loop/session``, ``audit``,
``simulator``, ``book``, ``estimators``, ``quote``, ``risk``, ``other cfa``. Time spent in code
outside cfa (the standard library, builtins such as ``json.dumps`` or ``sqlite3``'s
``execute``, numpy) goes to the cfa function that called it; what no cfa function called (the
asyncio event loop around the session) is ``asyncio/outside cfa``. By default a sampling
profiler (:class:`_Sampler`: ``SIGPROF`` every 1 ms of CPU, the innermost cfa frame of each
sample), which costs about 1 % and does not distort; a group's share has a standard error of
about ``100·sqrt(p(1−p)/samples)`` percentage points (±1.4 at 25 % with 1,000 samples).
``--profiler cprofile`` uses :mod:`cProfile` instead (non-cfa time charged to cfa callers in
proportion to each caller's share of the calls' time, recursively): exact call counts, but
its own cost per call (it runs the workload about 5x slower) inflates code that makes many
small calls, such as the estimators' per-event updates, several-fold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import math
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audit", ("cfa/audit/", "cfa/runtime/recorder.py")),
    ("simulator", ("cfa/exchange/",)),
    ("book", ("cfa/core/book.py",)),
    (
        "estimators",
        (
            "cfa/core/estimators.py",
            "cfa/core/signals.py",
            "cfa/core/volforecast.py",
            "cfa/core/regime.py",
        ),
    ),
    ("quote", ("cfa/core/quoting.py", "cfa/core/grid.py")),
    ("risk", ("cfa/risk/",)),
    ("loop/session", ("cfa/runtime/", "cfa/control/")),
    ("other cfa", ("cfa/",)),
)
"""Group name -> path fragments of its modules (relative to the repository; first match wins)."""

OUTSIDE = "asyncio/outside cfa"
"""The group of time no cfa function called (the event loop, the profiler's own frame)."""


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _prepare(
    seconds: float, seed: int, db: Path, wall_timers: bool = True
) -> tuple[Any, Any]:
    """The exchange, store and session of the workload, ready to run. ``wall_timers=False``
    turns off the session's wall-clock commit timer and heartbeat (see the module docstring)."""
    import inspect

    import cfa.runtime.session as session_mod
    from cfa.audit import AuditStore
    from cfa.exchange.sim import SimExchange
    from cfa.risk.policy import load_policy
    from cfa.runtime.session import Session

    ex = SimExchange.from_scenarios(["calm"], seed=seed, duration=seconds)
    await ex.start()
    store = AuditStore.open(db)
    extra: dict[str, Any] = {}
    if not wall_timers:
        if "flush_interval" in inspect.signature(Session).parameters:
            extra["flush_interval"] = math.inf
        if hasattr(session_mod, "HEARTBEAT_INTERVAL_S"):
            session_mod.HEARTBEAT_INTERVAL_S = math.inf  # type: ignore[misc]
    session = Session(
        ex, await ex.get_markets(), load_policy("default"), store, store.start_run({}), **extra
    )
    return store, session


def _traffic(db: Path) -> dict[str, int]:
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_runtime import order_traffic

    return order_traffic(db)


async def _workload(
    seconds: float,
    seed: int,
    db: Path,
    before: Callable[[], None],
    after: Callable[[], None],
    wall_timers: bool = True,
) -> int:
    """Run the workload; ``before`` and ``after`` bracket ``Session.run()``. Returns events."""
    store, session = await _prepare(seconds, seed, db, wall_timers)
    before()
    await session.run()
    after()
    store.close()
    return int(session.events)


def _child(seconds: float, seed: int, db: Path) -> None:
    """The child under valgrind: handshake on stdin/stdout around the session run."""

    def before() -> None:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.readline()

    def after() -> None:
        sys.stdout.write("done\n")
        sys.stdout.flush()
        sys.stdin.readline()

    events = asyncio.run(_workload(seconds, seed, db, before, after, wall_timers=False))
    print(json.dumps({"events": events, **_traffic(db)}), flush=True)


def valgrind_missing() -> str | None:
    """None when valgrind and callgrind_control are on PATH, else the message to print."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            return f"bench callgrind: {tool} is not on PATH (apt-get install valgrind)"
    return None


_IR = re.compile(r"Collected\s*:\s*(\d+)")


def callgrind_once(seconds: float, seed: int, tmp: Path, k: int) -> dict[str, Any]:
    """One instrumented run (see the module docstring); Ir, events and order traffic."""
    out_file = tmp / f"callgrind.{k}.out"
    log_file = tmp / f"valgrind.{k}.log"
    err_file = tmp / f"child.{k}.err"
    env = dict(os.environ, PYTHONHASHSEED="0")
    err = err_file.open("wb")
    p = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_file}",
            f"--log-file={log_file}",
            sys.executable,
            __file__,
            "_child",
            repr(seconds),
            str(seed),
            str(tmp / f"run.{k}.db"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,  # numpy warns about long double under valgrind: noise
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert p.stdin is not None and p.stdout is not None

    def expect(word: str) -> None:
        line = p.stdout.readline().strip() if p.stdout else ""
        if line != word:
            p.kill()
            tail = err_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"callgrind child said {line!r}, expected {word!r}:\n{tail}")

    def control(state: str) -> None:
        subprocess.run(
            ["callgrind_control", "-i", state, str(p.pid)], capture_output=True, check=True
        )

    try:
        expect("ready")
        control("on")
        p.stdin.write("go\n")
        p.stdin.flush()
        expect("done")
        control("off")
        p.stdin.write("exit\n")
        p.stdin.flush()
        res: dict[str, Any] = json.loads(p.stdout.readline())
        if p.wait(timeout=600) != 0:
            raise RuntimeError(f"callgrind child exited {p.returncode}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        err.close()
    m = _IR.search(log_file.read_text(errors="replace"))
    if m is None:
        raise RuntimeError(f"no instruction count in {log_file}")
    ir = int(m.group(1))
    return {
        "ir": ir,
        "ir_per_event": round(ir / max(res["events"], 1), 1),
        "out_file": str(out_file),
        **res,
    }


def top_functions(out_file: str, n: int) -> list[tuple[int, str]]:
    """The ``n`` functions with the most exclusive Ir in a callgrind output file, as
    (Ir, ``file:function`` with the directories dropped)."""
    done = subprocess.run(
        ["callgrind_annotate", "--threshold=100", out_file],
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[int, str]] = []
    line_re = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.+)$")
    started = False
    for line in done.stdout.splitlines():
        if not started:
            started = line.strip().startswith("Ir") and "file:function" in line
            continue
        m = line_re.match(line)
        if m and ":" in m.group(2):
            name = re.sub(r"\s*\[[^]]*\]$", "", m.group(2).strip())  # the object file
            file, _, fn = name.rpartition(":")
            rows.append((int(m.group(1).replace(",", "")), f"{Path(file).name}:{fn}"))
        if len(rows) >= n:
            break
    return rows


# -- cProfile grouping ------------------------------------------------------------------------


def group_of(filename: str) -> str | None:
    """The group of a function's file, or None when it is not cfa's."""
    path = filename.replace(os.sep, "/")
    i = path.rfind("/cfa/")
    if i < 0:
        return None
    rel = path[i + 1 :]
    for name, parts in GROUPS:
        if any(rel.startswith(p) for p in parts):
            return name
    return None


def attributed_profile(stats: pstats.Stats) -> dict[Any, float]:
    """Seconds of own time per cfa function (``(file, line, name)``), with the time of non-cfa
    functions charged to their cfa callers (see the module docstring); :data:`OUTSIDE` holds
    what no cfa function called."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Any, dict[Any, float]] = {}

    def share(func: Any, stack: frozenset[Any]) -> dict[Any, float]:
        """How one second of ``func``'s own time splits over cfa functions."""
        if func in memo:
            return memo[func]
        if group_of(func[0]) is not None:
            out = {func: 1.0}
        else:
            callers = raw[func][4] if func in raw else {}
            weights = {c: v[3] for c, v in callers.items() if c not in stack}
            total = sum(weights.values())
            out = {}
            if total <= 0:
                out[OUTSIDE] = 1.0
            else:
                for c, w in weights.items():
                    for key, frac in share(c, stack | {func}).items():
                        out[key] = out.get(key, 0.0) + frac * w / total
        memo[func] = out  # in a cycle, the first answer stands (an approximation)
        return out

    funcs: dict[Any, float] = {}
    for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
        for key, frac in share(func, frozenset()).items():
            funcs[key] = funcs.get(key, 0.0) + tt * frac
    return funcs


def grouped_profile(funcs: dict[Any, float]) -> dict[str, float]:
    """Seconds per group from :func:`attributed_profile`'s seconds per function."""
    groups: dict[str, float] = {}
    for key, t in funcs.items():
        g = OUTSIDE if key == OUTSIDE else (group_of(key[0]) or OUTSIDE)
        groups[g] = groups.get(g, 0.0) + t
    return groups


SAMPLE_INTERVAL_S = 0.001
"""CPU seconds between two samples of the sampling profiler (the kernel may round it up to
its tick, 1–4 ms)."""


class _Sampler:
    """A sampling profiler on ``SIGPROF`` (``setitimer(ITIMER_PROF)``: the interval counts the
    process's CPU time). Each sample charges the innermost cfa frame of the main thread's
    stack: time in C functions and the standard library goes to the cfa code that called them
    (the handler runs in the main thread once the running C call returns, so a sample taken
    during, say, ``sqlite3`` ``execute`` lands on the Python frame that called it)."""

    def __init__(self) -> None:
        self.funcs: dict[Any, float] = {}
        self.samples = 0
        self._code_key: dict[Any, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.samples += 1
        f = frame
        while f is not None:
            code = f.f_code
            key = self._code_key.get(code)
            if key is None:
                fn = code.co_filename
                key = (fn, code.co_firstlineno, code.co_name) if group_of(fn) else False
                self._code_key[code] = key
            if key:
                self.funcs[key] = self.funcs.get(key, 0.0) + 1.0
                return
            f = f.f_back
        self.funcs[OUTSIDE] = self.funcs.get(OUTSIDE, 0.0) + 1.0

    def start(self) -> None:
        import signal

        signal.signal(signal.SIGPROF, self._handler)
        signal.setitimer(signal.ITIMER_PROF, SAMPLE_INTERVAL_S, SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        import signal

        signal.setitimer(signal.ITIMER_PROF, 0.0, 0.0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)


def profile_once(seconds: float, seed: int, tmp: Path, profiler: str) -> dict[str, Any]:
    """The workload under the sampling profiler (``profiler="sample"``) or cProfile
    (``"cprofile"``); share per group and the top cfa functions, events, CPU."""
    prof = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    sampler = _Sampler()
    db = tmp / "profile.db"
    c0 = [0.0]
    c1 = [0.0]

    def before() -> None:
        c0[0] = _cpu_s()
        if profiler == "cprofile":
            prof.enable()
        else:
            sampler.start()

    def after() -> None:
        if profiler == "cprofile":
            prof.disable()
        else:
            sampler.stop()
        c1[0] = _cpu_s()

    events = asyncio.run(_workload(seconds, seed, db, before, after))
    funcs = attributed_profile(pstats.Stats(prof)) if profiler == "cprofile" else sampler.funcs
    groups = grouped_profile(funcs)
    total = sum(groups.values()) or 1.0
    top = sorted(((t, k) for k, t in funcs.items() if k != OUTSIDE), reverse=True)[:15]
    order = [name for name, _ in GROUPS] + [OUTSIDE]
    return {
        "profiler": profiler,
        "samples": sampler.samples if profiler == "sample" else None,
        "events": events,
        "cpu_s_profiled": round(c1[0] - c0[0], 3),
        "cpu_us_per_event_profiled": round(1e6 * (c1[0] - c0[0]) / max(events, 1), 2),
        "groups_weight": {g: round(groups.get(g, 0.0), 4) for g in order},
        "groups_pct": {g: round(100 * groups.get(g, 0.0) / total, 1) for g in order},
        "top_functions": [
            {
                "function": f"{k[0][k[0].rfind('/cfa/') + 1 :]}:{k[1]}({k[2]})",
                "group": group_of(k[0]),
                "pct": round(100 * t / total, 1),
            }
            for t, k in top
        ],
        **_traffic(db),
    }


# -- the subcommand ---------------------------------------------------------------------------


def configure_callgrind(p: argparse.ArgumentParser) -> None:
    """Options of ``bench.py callgrind``."""
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="simulated seconds (600; with --profile 7200, for enough samples)",
    )
    p.add_argument("--seed", type=int, default=1, help="simulator seed (1: it trades)")
    p.add_argument("--runs", type=int, default=2, help="instrumented runs, to show repeatability")
    p.add_argument("--top", type=int, default=0, help="also print the top N functions by Ir")
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead: profile the workload, percent of CPU per cfa module group",
    )
    p.add_argument(
        "--profiler",
        choices=("sample", "cprofile"),
        default="sample",
        help="with --profile: a SIGPROF sampler (default; about 1 %% overhead) or cProfile "
        "(exact call counts, but its cost per call inflates code that makes many small calls)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")


def cmd_callgrind(args: argparse.Namespace) -> int:
    """Ir and Ir/event of the workload (``--runs`` times), or ``--profile``'s breakdown.
    Exits 2 without valgrind, 1 when the workload placed no order."""
    from bench import machine_info  # type: ignore[import-not-found]  # tools/ is on sys.path

    if args.seconds is None:
        args.seconds = 7200.0 if args.profile else 600.0
    if args.seconds < 0 or args.runs < 1:
        print("bench callgrind: --seconds must be ≥ 0 and --runs ≥ 1", file=sys.stderr)
        return 2
    payload: dict[str, Any] = {
        "bench": "callgrind --profile" if args.profile else "callgrind",
        "machine": machine_info(),
        "load_1m": os.getloadavg()[0],
        "scenario": "calm",
        "seed": args.seed,
        "simulated_s": args.seconds,
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.profile:
            r = profile_once(args.seconds, args.seed, tmp, args.profiler)
            payload |= r
            placed = r["placed"]
        else:
            missing = valgrind_missing()
            if missing:
                print(missing, file=sys.stderr)
                return 2
            runs = [callgrind_once(args.seconds, args.seed, tmp, k) for k in range(args.runs)]
            irs = [r["ir_per_event"] for r in runs]
            mean = sum(irs) / len(irs)
            payload["runs"] = [{k: v for k, v in r.items() if k != "out_file"} for r in runs]
            payload["ir_per_event_spread_pct"] = round(100 * (max(irs) - min(irs)) / mean, 3)
            if args.top > 0:
                payload["top"] = top_functions(runs[-1]["out_file"], args.top)
            placed = runs[0]["placed"]
    if args.json:
        print(json.dumps(payload, indent=2))
    elif args.profile:
        how = (
            f"sampling profiler, {payload['samples']:,} samples"
            if args.profiler == "sample"
            else "cProfile (inflates many-small-call code)"
        )
        print(
            f"{how}; one calm market, seed {args.seed}, {args.seconds:g} simulated s, "
            f"{payload['events']:,} events, {payload['cpu_s_profiled']:.2f} s CPU profiled "
            f"({payload['cpu_us_per_event_profiled']:.2f} µs/event); orders placed "
            f"{payload['placed']:,}, fills {payload['fills']:,}, denied {payload['denied']:,}"
        )
        print("share of CPU per group (calls outside cfa charged to their cfa callers):")
        for g, pct in payload["groups_pct"].items():
            print(f"  {g:<20} {pct:5.1f} %")
        print("top cfa functions (own time plus the non-cfa calls charged to them):")
        for f in payload["top_functions"]:
            print(f"  {f['pct']:5.1f} %  {f['group']:<13} {f['function']}")
    else:
        print(
            f"callgrind, one calm market, seed {args.seed}, {args.seconds:g} simulated s "
            "(Session.run only: start-up and imports not instrumented), PYTHONHASHSEED=0:"
        )
        for k, r in enumerate(payload["runs"]):
            print(
                f"  run {k + 1}: {r['ir']:,} Ir over {r['events']:,} events = "
                f"{r['ir_per_event']:,.1f} Ir/event; orders placed {r['placed']:,}, "
                f"fills {r['fills']:,}, denied {r['denied']:,}"
            )
        print(f"  spread of Ir/event between runs: {payload['ir_per_event_spread_pct']} %")
        for ir, fn in payload.get("top", []):
            print(f"  {ir:>15,}  {fn}")
    if placed == 0:
        print(
            f"FAILED: the workload placed no order with seed {args.seed} (it measures no order "
            "traffic)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_child":
    sys.path.insert(0, str(ROOT))
    with contextlib.suppress(BrokenPipeError):
        _child(float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))

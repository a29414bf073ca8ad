"""The eval executors: in-process, spawn pool and a local Ray cluster give the same results in
job order, call on_result once per job, and turn a raising job function into an error result."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eval_jobs import fake_job

from cfa.eval.executors import LocalExecutor, RayExecutor, error_result, make_executor
from cfa.eval.models import Job, RunResult
from cfa.eval.runner import run_job

TESTS = Path(__file__).resolve().parent


def _jobs(root: Path) -> list[Job]:
    # a longer job first, so that completion order can differ from job order
    specs = [("calm", 1, "static-as", 300.0), ("calm", 2, "static-as", 120.0)]
    specs += [("calm", 1, "naive", 120.0), ("regime-shift", 3, "static-as", 120.0)]
    return [
        Job(
            scenario=sc,
            seed=seed,
            strategy=st,
            duration_s=dur,
            db=str(root / f"{sc}-{st}-{seed}.db"),
        )
        for sc, seed, st, dur in specs
    ]


def _comparable(results: list[RunResult]) -> list[tuple[str, object, str | None]]:
    """What must agree between executors (run ids, paths and wall times differ)."""
    return [(r.job.key, r.metrics, r.error) for r in results]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Job], list[RunResult]]:
    jobs = _jobs(tmp_path_factory.mktemp("inline"))
    seen: list[RunResult] = []
    results = LocalExecutor(1).run(run_job, jobs, seen.append)
    assert [r.job for r in seen] == jobs  # in process: in order
    return jobs, results


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ex = RayExecutor(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        yield ex
    finally:
        ex.close()


def test_inline_runs_real_jobs(reference: tuple[list[Job], list[RunResult]]) -> None:
    jobs, results = reference
    assert [r.job for r in results] == jobs
    assert all(r.error is None and r.metrics is not None for r in results), results
    assert all(r.run_id for r in results)


def _check_same(
    jobs: list[Job], ref: list[RunResult], got: list[RunResult], seen: list[RunResult]
) -> None:
    assert [r.job.key for r in got] == [j.key for j in jobs]
    assert _comparable(got) == _comparable(ref)
    assert sorted(r.job.key for r in seen) == sorted(j.key for j in jobs)  # once per job


def test_pool_matches_inline(reference: tuple[list[Job], list[RunResult]], tmp_path: Path) -> None:
    _, ref = reference
    jobs = _jobs(tmp_path)
    seen: list[RunResult] = []
    with LocalExecutor(2) as ex:
        got = ex.run(run_job, jobs, seen.append)
        assert [r.job for r in got] == jobs
        _check_same(jobs, ref, got, seen)
        # a raising job function is an error result; the other jobs go on
        fakes = [j.model_copy(update={"seed": s}) for j, s in zip(jobs[:3], (1, 2, 3), strict=True)]
        out = ex.run(fake_job, fakes)
    assert [r.job.seed for r in out] == [1, 2, 3]
    assert out[1].metrics is None and out[1].error is not None
    assert out[1].error.startswith("ValueError: boom on")
    assert out[0].metrics is not None and out[2].metrics is not None


def test_ray_matches_inline(
    reference: tuple[list[Job], list[RunResult]], ray_executor: RayExecutor, tmp_path: Path
) -> None:
    _, ref = reference
    jobs = _jobs(tmp_path)
    seen: list[RunResult] = []
    got = ray_executor.run(run_job, jobs, seen.append)
    assert [r.job for r in got] == jobs
    _check_same(jobs, ref, got, seen)


def test_ray_raising_job(ray_executor: RayExecutor, tmp_path: Path) -> None:
    jobs = [
        j.model_copy(update={"seed": s}) for j, s in zip(_jobs(tmp_path), (1, 2, 3, 4), strict=True)
    ]
    seen: list[RunResult] = []
    out = ray_executor.run(fake_job, jobs, seen.append)
    assert [r.job.seed for r in out] == [1, 2, 3, 4] and len(seen) == 4
    assert out[1].metrics is None and out[1].error is not None
    assert out[1].error.startswith("ValueError: boom on"), out[1].error
    assert "\n" not in out[1].error
    assert all(r.metrics is not None for i, r in enumerate(out) if i != 1)


def test_ray_reuses_an_initialised_session(ray_executor: RayExecutor) -> None:
    other = make_executor("ray", 1, None)
    assert isinstance(other, RayExecutor)
    other.close()  # did not start Ray: must not shut the shared session down
    import ray

    assert ray.is_initialized()
    assert other.run(fake_job, []) == []


def test_inline_raising_and_bad_returns(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)[:3]
    jobs = [j.model_copy(update={"seed": s}) for j, s in zip(jobs, (1, 2, 3), strict=True)]
    seen: list[RunResult] = []
    out = LocalExecutor(1).run(fake_job, jobs, seen.append)
    assert [r.job.seed for r in out] == [1, 2, 3] == [r.job.seed for r in seen]
    assert out[1].error == "ValueError: boom on calm/static-as/2"

    def not_a_result(job: Job) -> RunResult:
        return "oops"  # type: ignore[return-value]

    (bad,) = LocalExecutor(1).run(not_a_result, jobs[:1])
    assert bad.metrics is None and bad.error is not None and "not a RunResult" in bad.error

    def failing_callback(r: RunResult) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # the caller's own failure propagates
        LocalExecutor(1).run(fake_job, jobs, failing_callback)


def test_error_result_is_one_line(tmp_path: Path) -> None:
    job = _jobs(tmp_path)[0]
    r = error_result(job, RuntimeError("first line\nsecond line"))
    assert r.error == "RuntimeError: first line" and r.metrics is None and r.run_id is None
    assert error_result(job, KeyError()).error == "KeyError"


def test_make_executor() -> None:
    ex = make_executor("local", 1, None)
    assert isinstance(ex, LocalExecutor) and ex.workers == 1
    assert make_executor("local", 0, None).workers == (os.cpu_count() or 1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("dask", 2, None)
    with pytest.raises(ValueError, match="workers"):
        make_executor("local", -1, None)
    with pytest.raises(ValueError, match="ray"):
        make_executor("local", 2, "auto")


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'cfa\[ray\]'"):
        RayExecutor()

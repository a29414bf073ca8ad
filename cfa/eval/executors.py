"""Where the jobs of a suite run: in this process, in a local process pool, or on Ray.

Every executor has one contract (:class:`Executor`): ``run(fn, jobs, on_result)`` runs
``fn(job)`` for every job and returns the results **in job order**, calling ``on_result`` once
per job, in the order they finish (a progress bar, a results file being appended), from the
calling thread. A job function that raises, or a worker that dies, gives a
:class:`~cfa.eval.models.RunResult` with ``metrics`` None and ``error`` set: one failed job
never ends the suite. An exception raised by ``on_result`` itself, or Ctrl-C
(KeyboardInterrupt), cancels the jobs not yet started and propagates. ``close()`` frees the
pool or the Ray session; executors are also context managers.

The job function must be importable by its module path (a top-level function such as
:func:`cfa.eval.runner.run_job`): pool and Ray workers import it by name.

- :class:`LocalExecutor` — ``workers == 1``: in this process, in order; ``workers > 1``: a
  :class:`concurrent.futures.ProcessPoolExecutor` with the **spawn** start method, so workers
  start clean (no inherited threads, event loops or open SQLite handles).
- :class:`RayExecutor` — an existing Ray cluster (``address``) or a local one started here;
  needs the ``ray`` extra (``pip install 'cfa[ray]'``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, Protocol, Self

from cfa.eval.models import Job, RunResult

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "error_result", "make_executor"]

JobFn = Callable[[Job], RunResult]
OnResult = Callable[[RunResult], None]

RAY_EXTRA_HINT = "the ray executor needs Ray: pip install 'cfa[ray]'"


class Executor(Protocol):
    """Runs a suite's jobs (see the module doc for the contract)."""

    def run(
        self, fn: JobFn, jobs: Sequence[Job], on_result: OnResult | None = None
    ) -> list[RunResult]:
        """``[fn(job) for job in jobs]``, in job order, however and wherever they run."""
        ...

    def close(self) -> None:
        """Free workers and sessions; idempotent."""
        ...


def error_result(job: Job, exc: BaseException | str) -> RunResult:
    """The result of a job whose function raised (or whose worker died): one error line."""
    if isinstance(exc, BaseException):
        text = str(exc).strip().splitlines()
        msg = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    else:
        msg = exc
    return RunResult(job=job, run_id=None, metrics=None, error=msg[:500])


def _checked(job: Job, out: object) -> RunResult:
    if isinstance(out, RunResult):
        return out
    return error_result(job, f"job function returned {type(out).__name__}, not a RunResult")


def _check_workers(workers: int) -> int:
    """``workers`` as a count: 0 means every core of this machine."""
    if workers < 0:
        raise ValueError(f"workers must be ≥ 0 (0: every core), not {workers}")
    return workers or os.cpu_count() or 1


class LocalExecutor:
    """Jobs on this machine: in this process (``workers == 1``) or a spawn process pool.

    ``workers`` 0 means one worker per core. The pool starts on the first :meth:`run` and is
    reused until :meth:`close`; a pool broken by a dying worker is replaced on the next run.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = _check_workers(workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(
        self, fn: JobFn, jobs: Sequence[Job], on_result: OnResult | None = None
    ) -> list[RunResult]:
        """Run ``fn`` on every job (see :class:`Executor`)."""
        if self.workers == 1:
            return self._run_inline(fn, jobs, on_result)
        return self._run_pool(fn, jobs, on_result)

    @staticmethod
    def _run_inline(fn: JobFn, jobs: Sequence[Job], on_result: OnResult | None) -> list[RunResult]:
        out: list[RunResult] = []
        for job in jobs:
            try:
                res = _checked(job, fn(job))
            except Exception as exc:
                res = error_result(job, exc)
            out.append(res)
            if on_result is not None:
                on_result(res)
        return out

    def _run_pool(
        self, fn: JobFn, jobs: Sequence[Job], on_result: OnResult | None
    ) -> list[RunResult]:
        if not jobs:
            return []
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,  # spawn pools start workers as jobs need them
                mp_context=multiprocessing.get_context("spawn"),
            )
        pool = self._pool
        futures: dict[Future[RunResult], int] = {}
        results: list[RunResult | None] = [None] * len(jobs)
        try:
            for i, job in enumerate(jobs):
                futures[pool.submit(fn, job)] = i
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=futures.__getitem__):
                    i = futures[fut]
                    job = jobs[i]
                    try:
                        res = _checked(job, fut.result())
                    except BrokenProcessPool as exc:
                        res = error_result(job, f"worker process died: {exc}")
                    except Exception as exc:
                        res = error_result(job, exc)
                    results[i] = res
                    if on_result is not None:
                        on_result(res)
        except BaseException:
            # Ctrl-C or a failing on_result: drop what has not started, stop the workers
            for fut in futures:
                fut.cancel()
            self._kill_pool()
            raise
        if any(not f.cancelled() and isinstance(f.exception(), BrokenProcessPool) for f in futures):
            self._kill_pool()  # a broken pool takes no more jobs: the next run starts a new one
        return [r for r in results if r is not None]

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())  # private: best effort
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # running jobs would otherwise hold the interpreter's exit
            if p.is_alive():
                p.terminate()

    def close(self) -> None:
        """Shut the pool down (waiting for its workers to exit); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Jobs as Ray tasks: on the cluster at ``address``, or on a local cluster started here.

    ``address`` (e.g. ``"auto"`` or ``"ray://head:10001"``) connects to an existing cluster;
    :meth:`close` disconnects and leaves the cluster running. Without it a local cluster
    starts with ``num_cpus`` CPUs (None: every core), no dashboard, usage stats off, and
    worker logs kept out of this terminal; :meth:`close` shuts it down. If Ray is already
    initialised in this process it is used as is (``address``, ``num_cpus`` and
    ``runtime_env`` are then ignored) and left running. ``runtime_env`` goes to
    ``ray.init`` (e.g. ``env_vars`` or ``working_dir`` for workers on other machines).
    Each job is one task asking for one CPU; ``max_retries`` (default 0) re-runs a job whose
    worker died — a retried job writes its audit store again, so it stays off unless asked.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        runtime_env: dict[str, Any] | None = None,
        max_retries: int = 0,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ImportError(RAY_EXTRA_HINT) from exc
        self._ray = ray
        self.max_retries = max_retries
        self._started = False
        if ray.is_initialized():
            return
        # quiet: worker logs stay in Ray's log files, no start-up banners or notices
        opts: dict[str, Any] = {"log_to_driver": False, "logging_level": "error"}
        if runtime_env is not None:
            opts["runtime_env"] = runtime_env
        if address is not None:
            ray.init(address=address, **opts)
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(num_cpus=num_cpus, include_dashboard=False, **opts)
        self._started = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(
        self, fn: JobFn, jobs: Sequence[Job], on_result: OnResult | None = None
    ) -> list[RunResult]:
        """Run ``fn`` on every job as Ray tasks (see :class:`Executor`)."""
        if not jobs:
            return []
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(fn)
        refs = [remote.remote(job) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[RunResult | None] = [None] * len(jobs)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    job = jobs[i]
                    try:
                        res = _checked(job, ray.get(ref))
                    except Exception as exc:
                        res = error_result(job, _ray_cause(exc))
                    results[i] = res
                    if on_result is not None:
                        on_result(res)
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):  # finished or gone: nothing to cancel
                    ray.cancel(ref, force=True)
            raise
        return [r for r in results if r is not None]

    def close(self) -> None:
        """``ray.shutdown()`` if this executor called ``ray.init``; idempotent."""
        if self._started:
            self._started = False
            self._ray.shutdown()


def _ray_cause(exc: BaseException) -> BaseException:
    """The job function's own exception inside a RayTaskError (whose text is a traceback)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def make_executor(name: str, workers: int = 1, address: str | None = None) -> Executor:
    """The executor the CLI names: ``local`` (``workers`` processes; 1 = in this process) or
    ``ray`` (``address`` of a cluster, or a local cluster of ``workers`` CPUs). ``workers`` 0
    means every core. Unknown names raise ValueError."""
    if name == "local":
        if address is not None:
            raise ValueError("--address is for the ray executor")
        return LocalExecutor(workers)
    if name == "ray":
        n = _check_workers(workers)
        return RayExecutor(address=address, num_cpus=None if address is not None else n)
    raise ValueError(f"unknown executor {name!r}: use 'local' or 'ray'")

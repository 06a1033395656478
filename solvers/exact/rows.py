"""Independent exact subproblems (one per output row) dispatched through a
``concurrent.futures.Executor``.

Rows under a row budget are independent MILPs. :func:`run_jobs` keeps at most ``workers``
of them in flight on ``executor`` (a local process pool with ``workers`` processes when
none is given, started by forkserver or spawn, so the calling script needs the usual
``if __name__ == "__main__":`` guard; this process when ``workers == 1``), gives each the time it may use when it
is submitted, and shows a progress bar per finished job. Any executor whose ``submit``
pickles its arguments works: ``ProcessPoolExecutor``, Dask's ``Client.get_executor()``
(``pip install "maskopt[distributed]"``), or a ``ThreadPoolExecutor`` (HiGHS sessions then
take turns, see :mod:`maskopt.solvers.exact.highs`).

Time: with a total ``deadline`` a job submitted when ``left`` seconds remain and ``n``
jobs (this one included) are not yet submitted gets ``left · workers / n`` seconds, capped
by ``job_limit``; results come back in job order whatever the completion order, so the
answer does not depend on the executor (only the time each job got can).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any


def _context():
    """Worker processes by ``forkserver`` where the platform has it (Linux; Python 3.14's
    default there), else ``spawn``; never ``fork``: a forked child inherits HiGHS's thread
    pool without its threads, and HiGHS then fails ("Invalid argument"). Either way a
    script that starts the pool must guard its top level with ``if __name__ == "__main__":``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


GUARD = ("A worker process of the local pool (workers > 1) stopped abruptly. Worker processes start by "
         "{method} and import the main script again: guard its top level with `if __name__ == \"__main__\":` "
         "(see the traceback above), or pass workers=1 or an executor of your own.")


def share(deadline: float | None, job_limit: float | None, workers: int, not_submitted: int) -> float | None:
    """Seconds a job submitted now may use (``deadline`` in ``time.time()`` seconds)."""
    limits = [] if job_limit is None else [job_limit]
    if deadline is not None:
        limits.append(max(deadline - time.time(), 0.0) * min(workers, not_submitted) / max(not_submitted, 1))
    return min(limits) if limits else None


def run_jobs(fn: Callable[..., Any], jobs: Sequence[Callable[[float | None], tuple]], *,
             executor: Executor | None, workers: int, deadline: float | None, job_limit: float | None,
             progress: bool, desc: str) -> list[Any]:
    """``[fn(*jobs[i](limit_i)) for i]`` computed on ``executor``, in job order.

    Each ``jobs[i]`` turns the time the job may use (seconds or None) into ``fn``'s
    arguments, when the job is submitted; ``fn`` must be picklable (a module-level function)
    unless the work runs in this process (``workers == 1`` and no executor).
    """
    from tqdm.auto import tqdm

    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}.")
    results: list[Any] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress or len(jobs) < 2, leave=False)
    try:
        if executor is None and workers == 1:
            for i, job in enumerate(jobs):
                results[i] = fn(*job(share(deadline, job_limit, 1, len(jobs) - i)))
                bar.update()
            return results
        own = executor is None
        pool = ProcessPoolExecutor(workers, mp_context=_context()) if own else executor
        pending: dict[Future, int] = {}
        try:
            nxt = 0
            while nxt < len(jobs) or pending:
                while nxt < len(jobs) and len(pending) < workers:
                    args = jobs[nxt](share(deadline, job_limit, workers, len(jobs) - nxt))
                    pending[pool.submit(fn, *args)] = nxt
                    nxt += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        results[pending.pop(fut)] = fut.result()
                    except BrokenProcessPool as e:
                        if not own:
                            raise
                        raise RuntimeError(GUARD.format(method=_context().get_start_method())) from e
                    bar.update()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        finally:
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
        return results
    finally:
        bar.close()

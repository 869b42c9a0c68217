"""Deferred work on the CPU pool (service/cpu_pool): run once, by a pool worker or by whoever wants the result
first, with its exception passed on."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pictor.service import cpu_pool
from pictor.service.cpu_pool import Deferred


def test_deferred_work_runs_once_and_its_result_is_shared():
    calls = []
    deferred = Deferred(lambda: calls.append(1) or len(calls)).start()
    assert deferred.result() == 1 and deferred.result() == 1
    assert calls == [1]


def test_the_caller_runs_deferred_work_that_no_worker_has_begun(monkeypatch):
    busy, release = threading.Event(), threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="busy-pool")
    monkeypatch.setattr(cpu_pool, "_pool", pool)
    pool.submit(lambda: (busy.set(), release.wait(10)))  # the only worker holds another request's work
    assert busy.wait(10)
    ran_on = []
    Deferred(lambda: ran_on.append(threading.current_thread().name)).start().result()  # not queued behind it
    release.set()
    pool.shutdown(wait=True)
    assert ran_on == [threading.current_thread().name]


def test_a_deferred_failure_is_raised_to_whoever_asks_for_the_result():
    def fail() -> None:
        raise ValueError("hash failed")

    deferred = Deferred(fail).start()
    with pytest.raises(ValueError, match="hash failed"):
        deferred.result()

"""How the server shares the machine: CPU threads for the models and concurrent jobs, from the settings."""

from __future__ import annotations

import torch

from pictor.config import Settings
from pictor.engine.placement import apply_cpu_threads, available_cores, cpu_threads


def test_models_get_half_the_cores_unless_told():
    assert cpu_threads(0) == max(1, available_cores() // 2)
    assert cpu_threads(3) == 3
    before = torch.get_num_threads()
    try:
        assert apply_cpu_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_jobs_run_two_at_a_time_unless_requests_are_batched(monkeypatch):
    monkeypatch.delenv("PICTOR_JOB_WORKERS", raising=False)
    assert Settings(batch_invariant=True).resolved_job_workers() == 2
    assert Settings(batch_invariant=False, max_batch=16).resolved_job_workers() == 16
    assert Settings(batch_invariant=False, job_workers=3).resolved_job_workers() == 3

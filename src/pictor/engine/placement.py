"""CPU threads for the models: how many of the machine's cores torch's intra-op parallelism may use.

A server is not only its model: HTTP, encoding, the watermark, C2PA signing, the judge and the database run beside
it. With torch on every core they contend with the model (on 2 cores the embedded model's one-at-a-time latency
was 258 ms p50 through the server with 2 threads, 153 ms with 1; `bench/results/batching-cpu-2core*.md`), so the
default gives the models half the cores. The count changes float reduction order, so it is recorded with each image
(replay says so when it differs).
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_threads(setting: int) -> int:
    """`setting` when positive; 0 = auto: half the cores this process may run on, at least one."""
    return setting if setting > 0 else max(1, available_cores() // 2)


def apply_cpu_threads(setting: int) -> int:
    """Set torch's intra-op threads for this process (see `cpu_threads`) and return the count."""
    threads = cpu_threads(setting)
    torch.set_num_threads(threads)
    return threads


def current_cpu_threads() -> int:
    return torch.get_num_threads()

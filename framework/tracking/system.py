"""System metrics of the logging process (rank 0), sampled when train metrics are logged.

Not MLflow's own system-metrics monitor: that one logs from its own thread straight to the server, which would
bypass the outbox (lost during an outage, a stalled thread when the server hangs). Sampling here puts them on the
same steps as the train metrics, through the same outbox.
"""
from __future__ import annotations

import time


class SystemMetrics:
    def __init__(self, every_s: float):
        import psutil

        self.every_s = every_s
        self.process = psutil.Process()
        self.process.cpu_percent()  # primes the counter: the first reading is the CPU use since this call
        self.last = float("-inf")

    def sample(self) -> dict:
        """{} until `every_s` seconds have passed since the last sample."""
        import psutil

        now = time.monotonic()
        if now - self.last < self.every_s:
            return {}
        self.last = now
        out = {"system/cpu_utilization_percentage": self.process.cpu_percent(),
               "system/process_rss_megabytes": self.process.memory_info().rss / 2**20,
               "system/system_memory_usage_percentage": psutil.virtual_memory().percent}
        out.update(gpu_memory())
        return out


def gpu_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    i = torch.cuda.current_device()
    # the peak since the last sample, which is what decides whether a larger batch fits
    peak = torch.cuda.max_memory_allocated(i) / 2**20
    torch.cuda.reset_peak_memory_stats(i)
    return {f"system/gpu_{i}_memory_allocated_megabytes": torch.cuda.memory_allocated(i) / 2**20,
            f"system/gpu_{i}_peak_memory_allocated_megabytes": peak}

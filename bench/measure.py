"""Small measuring helpers shared by the harness and its child processes."""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from scheduler import stats

__all__ = ["FireLog", "Result", "cpu_seconds", "emit", "peak_rss_mb", "percentile"]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank, as /stats computes it; None for
    no values."""
    return stats.percentile(values, q) if values else None


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    VmHWM, not `ru_maxrss`: Linux carries `ru_maxrss` over from the parent across fork
    and exec, so a child of a harness that seeded 100,000 jobs would report the
    harness's peak. VmHWM belongs to the process's own address space.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class FireLog:
    """Start-of-dispatch lags (seconds after the scheduled instant) and completions."""

    lags: list[float] = field(default_factory=list)
    first_start: float | None = None
    done: int = 0
    last_done: float | None = None

    def started(self, scheduled_epoch: float) -> None:
        now = time.time()
        if self.first_start is None:
            self.first_start = now
        self.lags.append(now - scheduled_epoch)

    def finished(self) -> None:
        self.done += 1
        self.last_done = time.time()


@dataclass
class Result:
    """What a child process reports: one line of the table."""

    system: str
    scenario: str
    n: int
    fires: int = 0
    dropped: int = 0
    seconds: float | None = None
    rate: float | None = None
    lag_p50: float | None = None
    lag_p99: float | None = None
    lag_max: float | None = None
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def from_log(self, log: FireLog, due_epoch: float) -> None:
        """Fill fires, rate and lags: the rate counts from the scheduled instant to the
        last fire recorded, which is what a user waiting for the burst sees."""
        self.fires = log.done
        self.dropped = self.n - log.done
        if log.last_done is not None and log.done:
            self.seconds = log.last_done - due_epoch
            self.rate = log.done / self.seconds if self.seconds > 0 else None
        self.lag_p50 = percentile(log.lags, 50)
        self.lag_p99 = percentile(log.lags, 99)
        self.lag_max = max(log.lags) if log.lags else None


def emit(result: Result) -> None:
    """The last line a child prints is its result, as JSON."""
    result.peak_rss_mb = round(peak_rss_mb(), 1)
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    sys.stdout.flush()

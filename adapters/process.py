"""The process the engine runs in: its host and pid (which tell a dead predecessor from a
live sibling), whether another pid on this host is alive, and the garbage collector's
tuning for the engine's loop. The core is given these; it never asks the OS."""

from __future__ import annotations

import gc
import os
import socket

__all__ = ["host_name", "pid_alive", "process_id", "tune_gc"]


def host_name() -> str:
    return socket.gethostname()


def process_id() -> int:
    return os.getpid()


def pid_alive(pid: int) -> bool:
    """Whether a process with `pid` exists on this host (signal 0 checks, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_gc_tuned = False
#: Collections of the youngest generation wait for this many new container objects.
_GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Once per process, after start-up and before the engine's loop: a burst allocates
    (and soon frees) a few dozen small objects per fire, which at the default threshold
    of 700 ran a collection every few dozen fires, and each older-generation pass walked
    every module, model and cached schedule loaded at start-up (bench/RESULTS.md has the
    share of the loop's time). Freezing what exists after start-up (collected first, so
    no garbage is kept) takes it out of every later pass; the higher young threshold lets
    short-lived objects die by reference count before a pass sees them. Memory held by
    uncollected cycles stays bounded by the threshold."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, _GC_YOUNG_THRESHOLD), middle, old)

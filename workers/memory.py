"""A process's peak resident memory, measured from /proc (what the worker reports per job)."""

from __future__ import annotations


def peak_memory_reset() -> int | None:
    """Start measuring this process's peak resident memory anew (Linux: clear_refs 5 resets
    VmHWM), so that a reused process reports this job's peak, not an earlier task's; returns
    the resident memory now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_bytes("VmRSS:")


def peak_memory() -> int | None:
    """This process's peak resident memory in bytes since :func:`peak_memory_reset` (None
    where /proc does not tell)."""
    return _status_bytes("VmHWM:")


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None

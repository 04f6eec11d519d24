"""What a job's processes leave behind when they are killed, and how the service removes it:
actors that no active job claims (:func:`end_orphans`) and shared-memory buffers, a job's
(:func:`buffer_removals`, :func:`remove_buffers`) or any that no process maps any more
(:func:`sweep_buffers`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ps.protocol import shm

log = logging.getLogger(__name__)
REMOVE_TIMEOUT_S = 60.0


def job_of(actor_name: str) -> str:
    """The job an actor named ``ps:<job_id>:<role>...`` belongs to (an ensemble member's
    ``<job_id>.m<i>`` belongs to ``<job_id>``)."""
    job = actor_name[3:].split(":")[0]
    head, _, member = job.rpartition(".m")
    return head if head and member.isdigit() else job


def buffer_removals(job_id: str) -> list[ray.ObjectRef]:
    """Start removing ``job_id``'s shared-memory buffers on every live node (a killed worker
    leaves its own); each ref resolves to how many buffers that node removed."""
    return _on_every_node(shm.unlink_prefix, shm.prefix(job_id))


def _on_every_node(fn, *args) -> list[ray.ObjectRef]:
    """``fn(*args)`` as a task on every live node (shared memory is per node)."""
    task = ray.remote(num_cpus=0)(fn)
    return [
        task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(*args)
        for n in ray.nodes()
        if n["Alive"]
    ]


def sweep_buffers(timeout: float = REMOVE_TIMEOUT_S) -> list[str]:
    """Remove, on every live node, the buffers that no process maps any more (left by workers
    killed with an earlier run); returns their names."""
    refs = _on_every_node(shm.sweep_orphans)
    removed: list[str] = []
    with contextlib.suppress(Exception):
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for names in ray.get(ready):
            removed.extend(names)
    if removed:
        log.warning("removed %d shared-memory buffer(s) no process maps: %s", len(removed), removed)
    return removed


def remove_buffers(job_ids: Iterable[str], timeout: float = REMOVE_TIMEOUT_S) -> None:
    """Remove the jobs' buffers on every live node, waiting up to ``timeout`` s (a node that
    is going away has nothing left to clean)."""
    refs = [ref for job_id in job_ids for ref in buffer_removals(job_id)]
    if refs:
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=timeout)


def end_orphans(namespace: str, active: set[str]) -> list[str]:
    """End the actors of ``namespace`` that no job in ``active`` claims (an earlier life of
    the service left them: the supervisor of a job recorded as ended, or of a deleted one),
    and their jobs' buffers; returns the actors' names."""
    ended: list[str] = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry["namespace"] != namespace or not name.startswith("ps:"):
            continue
        if job_of(name) in active:
            continue
        log.warning("ending actor %s: no active job claims it (left by an earlier run)", name)
        with contextlib.suppress(Exception):
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        ended.append(name)
    remove_buffers({job_of(name) for name in ended})
    return ended

"""Who watches which job: queues that receive a job's events as the manager relays them."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

from ps.jobs.events import Event


class Subscribers:
    """Per job, the queues of its watchers (``WatchJob`` streams)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[queue.Queue]] = {}

    def subscribe(self, job_id: str) -> queue.Queue:
        """A queue receiving the job's events from now on."""
        q: queue.Queue = queue.Queue()
        with self._lock:
            self._queues.setdefault(job_id, []).append(q)
        return q

    def unsubscribe(self, job_id: str, q: queue.Queue) -> None:
        with self._lock:
            subs = self._queues.get(job_id, [])
            if q in subs:
                subs.remove(q)
            if not subs:
                self._queues.pop(job_id, None)

    def publish(self, job_id: str, event: Event) -> None:
        """Give ``event`` (stamped with the job and the time if it has none) to every watcher."""
        with self._lock:
            subs = list(self._queues.get(job_id, []))
        if not event.time:
            event = dataclasses.replace(event, job_id=job_id, time=time.time())
        for q in subs:
            q.put(event)

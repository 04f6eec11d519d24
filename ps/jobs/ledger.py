"""The data ledger of an async streamed job: which worker reads which work item, per epoch.

Positions run epoch by epoch over the epoch's item order (:func:`workers.data.streams.epoch_order`);
:meth:`Ledger.take` hands the next one to whichever worker asks, so a fast worker reads more.
Every position is given to exactly one worker, and a worker reads its positions in the order it
was given them, a step per minibatch: with the shards' ``(worker, seq)`` dedupe, every training
row is used exactly once per epoch — a replaced worker continues its predecessor's list from its
clock, a restored job from the checkpoint's clocks (positions given after it stay given: the
workers replay them).

The ledger survives the supervisor: each hand-out is appended to ``ledger.jsonl`` in the run
directory and flushed to disk before the worker hears of it, and a resumed job reads it back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LEDGER_FILE = "ledger.jsonl"


class Ledger:
    """Hands out the work items of ``epochs`` epochs.

    Args:
        train_rows: training rows of each work item (items without any are skipped).
        epochs: how many passes.
        workers: how many workers ask.
        path: the run directory's ledger file (None: kept in memory only).
        resume: continue from what ``path`` holds (else it starts empty).
    """

    def __init__(
        self,
        train_rows: tuple[int, ...],
        epochs: int,
        workers: int,
        path: Path | None = None,
        resume: bool = False,
    ) -> None:
        self.train_rows, self.epochs = train_rows, epochs
        self.given: list[list[int]] = [[] for _ in range(workers)]
        self.next = 0
        self.path = path
        if path is not None and resume and path.is_file():
            self._read(path)
        elif path is not None:
            path.write_text("")

    @property
    def end(self) -> int:
        return len(self.train_rows) * self.epochs

    def take(self, worker: int) -> int | None:
        """The next position for ``worker`` (None: every epoch is handed out)."""
        while self.next < self.end and not self.train_rows[self.next % len(self.train_rows)]:
            self.next += 1
        if self.next >= self.end:
            return None
        position = self.next
        self._write(worker, position)  # before anyone reads it
        self.next += 1
        self.given[worker].append(position)
        return position

    def positions(self, worker: int) -> list[int]:
        """What ``worker`` was given so far, in order."""
        return list(self.given[worker])

    def _write(self, worker: int, position: int) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"worker": worker, "position": position}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _read(self, path: Path) -> None:
        kept = []
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: never handed out
                break
            kept.append(line)
            self.given[entry["worker"]].append(entry["position"])
            self.next = max(self.next, entry["position"] + 1)
        path.write_text("".join(line + "\n" for line in kept))  # without the cut line

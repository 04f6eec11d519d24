"""Errors of the job service (ps/api maps each to one gRPC status code)."""

from __future__ import annotations

from ps.errors import PSError


class JobNotFound(PSError):
    """No job with that id."""


class JobExists(PSError):
    """A job with that id was already submitted."""


class JobNotFinished(PSError):
    """The operation needs a terminal (or succeeded) job."""


class QueueFull(PSError):
    """The admission queue is at its configured limit."""


class TerminalState(PSError):
    """An attempt to move a job out of a terminal state."""


class ClusterUnavailable(PSError):
    """Ray cannot be reached."""


class StoreUnavailable(PSError):
    """The job store refuses writes (a full disk, a read-only or failing file system)."""


class ResourceError(PSError):
    """The job asks for more than the Ray cluster has (it can never fit)."""


class JobCancelled(PSError):
    """The job was cancelled while it ran."""


class JobPreempted(PSError):
    """The job was stopped at a checkpoint to be handed back to the queue (the service is
    stopping, or another job needs its resources); it resumes from that checkpoint."""


class ShardLost(PSError):
    """A parameter-server shard died; training continues from the last checkpoint."""


class FailureBudgetSpent(PSError):
    """Failures beyond ``training.max_failures``: the job fails with the last cause."""


class IncompleteTraining(PSError):
    """Training ended short of its step budget with no reason that justifies it."""

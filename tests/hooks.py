"""Ray worker-process hooks for the test session (``worker_process_setup_hook``)."""

from __future__ import annotations


def forbid_spec_parsing() -> None:
    """Make parsing a job spec fail in every Ray worker process: specs travel parsed (the
    supervisor, workers and shards receive ``JobSpec`` objects), so any job that succeeds in the
    test session proves no actor parsed one."""
    from ps.spec import JobSpec

    def refuse(cls, *args, **kwargs):
        raise AssertionError("a job spec was parsed inside a Ray actor; specs travel parsed")

    JobSpec.model_validate = classmethod(refuse)
    JobSpec.model_validate_json = classmethod(refuse)

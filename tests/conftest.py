"""Shared fixtures: one Ray runtime for the whole session (ray.init costs seconds)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_runtime():
    """A local Ray instance shared by every test that needs one."""
    import ray

    if not ray.is_initialized():
        context = ray.init(
            address="local",
            num_cpus=4,
            # The dashboard serves Ray's state API, which the chaos tests use to find pids.
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),
            logging_level="ERROR",
            log_to_driver=False,
            # Test data lives in tmp dirs; actors must see the same files (same machine).
            runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}},
        )
        # State-API calls name this cluster explicitly: other tests start clusters of their own.
        os.environ["PS_TEST_DASHBOARD"] = f"http://{context.dashboard_url}"
    yield ray
    # Left running until the interpreter exits: other session fixtures may still use it.


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)

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
            runtime_env={
                "env_vars": {"PYTHONPATH": os.getcwd()},
                "worker_process_setup_hook": "tests.hooks.forbid_spec_parsing",
            },
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


def pytest_terminal_summary(terminalreporter):
    """Make skipped tests impossible to miss: a green run must not hide an untested part."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason.removeprefix("Skipped: ")] = reasons.get(reason, 0) + 1
    terminalreporter.write_sep("!", f"{len(skipped)} TESTS DID NOT RUN", red=True, bold=True)
    for reason, n in sorted(reasons.items()):
        terminalreporter.write_line(f"  {n} × {reason}", red=True)
    if any("Debian" in reason or "openssl" in reason for reason in reasons):
        terminalreporter.write_line(
            "  (`make test` installs the missing system packages where it can: .ci/system-deps)"
        )


# Tests that start Ray clusters or services of their own in subprocesses form one xdist group:
# `make test` (`-n 2 --dist loadgroup`) sends the group to one worker as a unit, so they never run
# two at once on this 2-core machine, while every other test (sharing one Ray runtime per xdist
# worker) is spread by load over both workers, the group's worker included. Grouping the rest too
# would run them all on one worker, one after another.
ISOLATED = (
    "tests/deploy/test_local_cluster.py",
    "tests/chaos/test_node_loss.py",
    "tests/chaos/test_service_restart.py",
    "tests/chaos/test_service_soak.py",
)
ISOLATED_GROUP = "isolated"


# tryfirst: xdist reads the groups in its own collection hook (it renames each grouped test's
# node id to end in "@<group>"); a marker added after it has no effect.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path.relative_to(config.rootpath)) in ISOLATED:
            item.add_marker(pytest.mark.xdist_group(ISOLATED_GROUP))

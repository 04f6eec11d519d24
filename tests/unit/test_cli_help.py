"""`psctl --help` and every subcommand's help read cleanly at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ps.cli import app

COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_without_type_noise(command):
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    args = [sys.executable, "-m", "ps.cli", *([command] if command else []), "--help"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "<bool>" not in out.stdout and "--no-" not in out.stdout
    assert "…" not in out.stdout  # nothing cut short
    if command == "run":
        assert "default: runs/" in out.stdout


def test_every_command_is_listed_whole():
    out = subprocess.run(
        [sys.executable, "-m", "ps.cli", "--help"],
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    for command in COMMANDS:
        assert f"  {command} " in out.stdout

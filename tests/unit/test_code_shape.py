"""The shape the architecture promises (docs/architecture.md): a supervisor that tells the job's
story in a page, and no function in ps/ or workers/ longer than a screen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 60
MAX_SUPERVISOR_LINES = 250


def _sources():
    for package in ("ps", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "v1" not in path.relative_to(ROOT).parts:  # generated code
                yield path


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def test_the_supervisor_reads_as_the_jobs_story():
    lines = len((ROOT / "ps" / "jobs" / "supervisor.py").read_text().splitlines())
    assert lines <= MAX_SUPERVISOR_LINES


MAX_FILE_LINES = 400


def test_no_file_is_longer_than_its_bound_and_none_is_packed():
    long, packed = [], []
    for path in _sources():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long.append(f"{path.relative_to(ROOT)} ({len(text.splitlines())})")
        if "fmt: skip" in text or "fmt: off" in text:
            packed.append(str(path.relative_to(ROOT)))
    assert not long, long
    assert not packed, f"split the concern instead of squeezing lines: {packed}"

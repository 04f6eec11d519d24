"""The user's own code: how it travels with a job, and how it is checked — never in this process.

A spec names a user module (``model.module``, ``model.loss_fn``) and optionally a directory of
code (``model.code``) that is put on the job's import path:

- ``psctl run``: ``model.code`` is shipped through Ray's ``runtime_env`` (``working_dir``);
  without it, modules import from the current directory (added to the actors' ``PYTHONPATH``).
- the service: ``psctl submit`` packs ``model.code`` into the request (a zip, at most
  :data:`MAX_CODE_BYTES`); the service unpacks it (checked entry by entry) into the job's run
  directory and ships it the same way. The service refuses user code unless started with
  ``--allow-user-code``.

Every check that runs user code (import, build, a dry forward and backward pass) runs in a Ray
task with the job's runtime environment, so it never runs in the service's own process.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from ps.errors import PSError, SpecError, clip
from ps.spec import JobSpec

MAX_CODE_BYTES = 16 << 20
MAX_CODE_FILES = 2000
DRY_RUN_TIMEOUT_S = 300


class UserCodeNotAllowed(PSError):
    """The service runs no user code (``--allow-user-code`` enables it)."""


@dataclass(frozen=True)
class ModelCheck:
    """What the dry run of a user model found."""

    n_params: int
    n_buffers: int
    tables: int = 0


def runtime_env(spec: JobSpec) -> dict[str, Any] | None:
    """The Ray runtime environment the job's actors need for its user code (None: none).

    ``model.code`` becomes the actors' ``working_dir``. Ray takes a local directory there only
    at the job level (``ray.init``), so the directory is packaged and uploaded to the cluster
    with Ray's own packaging first (content-addressed: an unchanged directory is uploaded once)
    and the actors get its ``gcs://`` URI.
    """
    if not spec.model.user_code:
        return None
    if spec.model.code:
        return {"working_dir": _upload(Path(spec.model.code))}
    paths = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


def _upload(directory: Path) -> str:
    from ray._private.runtime_env import packaging

    excludes = ["__pycache__"]
    uri = packaging.get_uri_for_directory(str(directory), False, excludes)
    packaging.upload_package_if_needed(
        uri, tempfile.gettempdir(), str(directory), False, excludes=excludes
    )
    return uri


def pack_code(directory: str | Path, limit: int = MAX_CODE_BYTES) -> bytes:
    """A zip of ``directory`` (``__pycache__`` and hidden files left out).

    Raises:
        SpecError: ``model.code``: not a directory, or larger than ``limit`` bytes.
    """
    root = Path(directory)
    if not root.is_dir():
        raise SpecError("model.code", f"{clip(str(directory))} is not a directory")
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                continue
            if path.is_file():
                total += path.stat().st_size
                if total > limit:
                    raise SpecError(
                        "model.code", f"{directory} holds more than {limit / 2**20:g} MiB of code"
                    )
                archive.write(path, relative.as_posix())
    return buffer.getvalue()


def unpack_code(archive: bytes, destination: Path, limit: int = MAX_CODE_BYTES) -> Path:
    """Extract a code archive into ``destination`` (created), entry by entry.

    Raises:
        SpecError: ``model.code``: not a zip, too large, too many files, or an entry that would
            land outside ``destination`` (absolute paths, ``..``, links).
    """
    if len(archive) > limit:
        raise SpecError("model.code", f"the code archive is larger than {limit / 2**20:g} MiB")
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
        entries = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise SpecError("model.code", f"the code archive is not a zip file: {exc}") from None
    if len(entries) > MAX_CODE_FILES:
        raise SpecError("model.code", f"the code archive holds more than {MAX_CODE_FILES} files")
    if sum(e.file_size for e in entries) > limit:
        raise SpecError("model.code", f"the code unpacks to more than {limit / 2**20:g} MiB")
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    for entry in entries:
        target = (root / entry.filename).resolve()
        is_link = (entry.external_attr >> 16) & 0o170000 == 0o120000
        if not target.is_relative_to(root) or Path(entry.filename).is_absolute() or is_link:
            shutil.rmtree(destination, ignore_errors=True)
            raise SpecError("model.code", f"archive entry {clip(entry.filename)} leaves the code")
        if entry.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(entry) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return destination


def _dry_run(spec: JobSpec, inputs: Any, n_outputs: int | None) -> ModelCheck:
    """In a Ray task: import and build the user's module, one forward and backward pass."""
    import torch

    from workers.evaluation import model_loss
    from workers.flat import state_sizes
    from workers.models import build_model, dry_run

    torch.manual_seed(spec.seed)
    model = build_model(spec.model, inputs, n_outputs or 1)
    loss = model_loss(spec.model)
    if n_outputs is not None:
        dry_run(model, inputs, n_outputs, spec.model.loss, loss)
    n_params, n_buffers = state_sizes(model)
    if n_params > spec.ps.max_params:
        raise SpecError(
            "model.module",
            f"the model has {n_params:,} parameters, more than ps.max_params = "
            f"{spec.ps.max_params:,}",
        )
    from workers.sparse import sparse_modules

    tables = sparse_modules(model)
    _check_table_rows(spec, inputs, tables)
    return ModelCheck(n_params, n_buffers, len(tables))


def _check_table_rows(spec: JobSpec, inputs: Any, tables: list) -> None:
    """Ids from categorical columns are hashed into ``model.embedding.buckets``: a table the
    module looks them up in must hold that many rows (its ids are not hashed again).

    Raises:
        SpecError: at ``model.embedding.buckets``, naming the table.
    """
    buckets = spec.model.table.buckets
    if not getattr(inputs, "fields", 0):
        return
    for name, module in tables:
        if module.num_rows < buckets:
            raise SpecError(
                "model.embedding.buckets",
                f"the data's ids reach {buckets - 1:,} (hashed into {buckets:,} buckets) but the "
                f"module's SparseEmbedding {name!r} holds {module.num_rows:,} rows: set "
                f"model.embedding.buckets to at most {module.num_rows:,}",
            )


def check_user_model(spec: JobSpec, inputs: Any, n_outputs: int | None) -> ModelCheck:
    """Build the user's model and run it once on a batch shaped like the data, in a Ray task
    with the job's runtime environment (never in this process).

    Raises:
        SpecError: the module cannot be imported or built, fails on the batch, makes outputs of
            the wrong shape, or is larger than ``ps.max_params`` (with the cause, the user's
            last frame included).
    """
    task = ray.remote(num_cpus=0, max_retries=0)(_dry_run).options(runtime_env=runtime_env(spec))
    try:
        return ray.get(task.remote(spec, inputs, n_outputs), timeout=DRY_RUN_TIMEOUT_S)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, SpecError):
            raise exc.cause from None
        raise SpecError("model.module", f"checking the model failed: {exc.cause}") from None
    except ray.exceptions.RuntimeEnvSetupError as exc:
        raise SpecError("model.code", f"the code cannot be shipped: {str(exc)[:300]}") from None
    except ray.exceptions.GetTimeoutError:
        raise SpecError(
            "model.module", f"building and running the model took over {DRY_RUN_TIMEOUT_S} s"
        ) from None

"""The paths a spec names, made absolute and confined to the service's data root before
anything reads them: files, directories and globs (``data.source``, the separate validation and
test sources, ``model.init_from``, ``model.code``)."""

from __future__ import annotations

import glob
import itertools
from pathlib import Path

from ps.errors import SpecError, clip
from ps.spec import JobSpec
from ps.spec.sources import find_source, is_glob
from workers.data import existing_path, usable_path


def resolve_path(
    source: str, root: Path | None, field: str = "data.source", directory: bool = False
) -> Path:
    """The data file (or ``directory``) a spec names; inside ``root`` when one is configured
    (no ``..`` escapes).

    Raises:
        SpecError: the path leaves ``root``, does not exist, or is unusable.
    """
    with usable_path(source, field):
        path = Path(source)
        if root is not None:
            root = root.resolve()
            path = (root / path).resolve()
            if not path.is_relative_to(root):
                raise SpecError(field, f"{clip(source)} is outside the data root {root}")
            if not (path.is_dir() if directory else path.is_file()):
                what = "directory" if directory else "file"
                raise SpecError(
                    field,
                    f"{what} not found: {clip(source)} (looked for {path}: paths are taken "
                    f"inside the service's data root {root}, --data-root)",
                )
    return existing_path(source, field, directory, path)


def confine_glob(pattern: str, resolve_dir, root: Path | None, field: str) -> str:
    """A glob with its fixed leading directories resolved by ``resolve_dir`` (confined to
    ``root``); its pattern part may not climb out (``..``), and every file it matches must be
    inside ``root`` (a link may not lead out).

    Raises:
        SpecError: at ``field``.
    """
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda p: not is_glob(p), parts))
    rest = parts[len(fixed) :]
    if ".." in rest:
        raise SpecError(field, f"{clip(pattern)}: the pattern part of a glob may not contain ..")
    confined = str(Path(resolve_dir(str(Path(*fixed)) if fixed else "."), *rest))
    if root is not None:
        inside = root.resolve()
        for match in glob.iglob(confined, recursive=True):
            if not Path(match).resolve().is_relative_to(inside):
                raise SpecError(field, f"{clip(match)} is outside the data root {inside}")
    return confined


def confine_paths(spec: JobSpec, root: Path | None, base: Path | None = None) -> JobSpec:
    """The spec with its file paths absolute: inside ``root`` (the service's data root), or,
    without a root, relative paths taken against ``base`` (``psctl run``: the current directory).
    ``model.code`` is the caller's (``psctl run``) or the service's own unpacked copy.

    Raises:
        SpecError: a path outside the root, missing, or unusable (too long, a NUL byte).
    """
    base = base or Path.cwd()

    def resolve(path: str, field: str, directory: bool = False) -> str:
        if root is None and not Path(path).is_absolute():
            path = str(base / path)
        return str(resolve_path(path, root, field, directory))

    def resolve_source(path: str, field: str, directory: bool) -> str:
        if not is_glob(path):
            return resolve(path, field, directory)
        return confine_glob(path, lambda fixed: resolve(fixed, field, True), root, field)

    data, model = spec.data, spec.model
    if data.is_path:
        directory = data.is_image_directory or (data.is_file_set and not is_glob(data.source))
        update = {"source": resolve_source(data.source, "data.source", directory)}
        for key in ("validation_source", "test_source"):
            path = getattr(data, key)
            if path is not None:
                is_dir = not is_glob(path) and find_source(path).is_directory
                update[key] = resolve_source(path, f"data.{key}", is_dir)
        data = data.model_copy(update=update)
    if model.init_from:
        model = model.model_copy(update={"init_from": resolve(model.init_from, "model.init_from")})
    if model.code and root is None:
        code = (base / model.code).resolve()
        if not code.is_dir():
            raise SpecError("model.code", f"{clip(model.code)} is not a directory")
        model = model.model_copy(update={"code": str(code)})
    return spec.model_copy(update={"data": data, "model": model})

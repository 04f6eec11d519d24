"""Write a click log as parquet files: the ``synthetic-ctr`` data (power-law ids, labels from a
hidden factorization machine), its ids as strings in ``f0 … f7``, a 0/1 ``clicked`` column.

    python examples/make_clicks.py runs/clicks            # 400,000 rows in 8 files
    python examples/make_clicks.py DIR --rows N --files K

``examples/ctr-stream.yaml`` streams them into the embedding tables (nothing is downloaded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workers.categorical import field_names, synthetic_ctr


def write_clicks(
    out: Path, rows: int = 400_000, files: int = 8, fields: int = 8, seed: int = 0
) -> list[Path]:
    """``files`` parquet files of ``rows`` rows together (row groups of 20,000 rows)."""
    out.mkdir(parents=True, exist_ok=True)
    ids, clicked = synthetic_ctr(rows, fields, 300, 0.1, seed)
    paths = []
    for f, part in enumerate(np.array_split(np.arange(rows), files)):
        columns = {
            name: pa.array([f"{name}-{v}" for v in ids[part, j]])
            for j, name in enumerate(field_names(fields))
        }
        path = out / f"clicks-{f:03d}.parquet"
        pq.write_table(pa.table({**columns, "clicked": clicked[part]}), path, row_group_size=20_000)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args()
    paths = write_clicks(args.out, args.rows, args.files)
    print(f"wrote {args.rows:,} rows in {len(paths)} files to {args.out}")


if __name__ == "__main__":
    main()

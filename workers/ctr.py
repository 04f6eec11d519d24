"""Built-in models over categorical features: ``model.type: logistic | fm | deepfm``.

All three share one sparse table (:class:`workers.sparse.SparseEmbedding`) over the hashed ids
of every field. A row holds the id's linear weight (column 0, starting at zero) and, for the
factorization machine, its ``dim`` factors:

- **logistic**: ``b + Σ_f w[id_f] + a·x`` (x: the numeric features, if any);
- **fm** (Rendle, 2010): logistic plus every pairwise interaction ``Σ_{f<g} ⟨v[id_f], v[id_g]⟩``
  in O(fields · dim): ``½ Σ_k ((Σ_f v_fk)² − Σ_f v_fk²)``;
- **deepfm** (Guo et al., 2017): fm plus a deep tower (``model.layers``, ending in one unit) on
  the concatenated factors and the numeric features.

The output is one logit per sample (``bce``) or one value (``mse``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ps.errors import SpecError
from ps.spec import ModelSpec
from workers.layers import Input, build_layers
from workers.sparse import SparseEmbedding


class CTRModel(nn.Module):
    """See the module docstring. Called as ``model(ids, numeric)``: ids ``(batch, fields)``
    int64, numeric ``(batch, features)`` float32 (possibly no features)."""

    def __init__(self, spec: ModelSpec, inputs: Input) -> None:
        super().__init__()
        self.kind = spec.type
        emb = spec.table
        self.fields, self.dim = inputs.fields, emb.dim
        numeric = inputs.shape[0] if inputs.shape else 0
        width = 1 if self.kind == "logistic" else 1 + emb.dim
        self.embedding = SparseEmbedding(
            emb.buckets,
            width,
            emb.scale,
            emb.init,
            zero_columns=1,
            admit_after=emb.admit_after,
            max_rows=emb.max_rows,
            evict=emb.evict,
            expire_after_steps=emb.expire_after_steps,
        )
        self.bias = nn.Parameter(torch.zeros(1))
        self.numeric = nn.Linear(numeric, 1, bias=False) if numeric else None
        self.deep = None
        if self.kind == "deepfm":
            tower, _ = build_layers(spec.layers, Input((self.fields * emb.dim + numeric,)))
            self.deep = nn.Sequential(*tower)

    def forward(self, ids: Tensor, x: Tensor) -> Tensor:
        rows = self.embedding(ids)  # (batch, fields, width)
        logit = self.bias + rows[..., 0].sum(dim=1)
        if self.numeric is not None:
            logit = logit + self.numeric(x).squeeze(-1)
        if self.kind != "logistic":
            factors = rows[..., 1:]
            total = factors.sum(dim=1)
            logit = logit + 0.5 * (total * total - (factors * factors).sum(dim=1)).sum(dim=-1)
        if self.deep is not None:
            logit = logit + self.deep(torch.cat([factors.flatten(1), x], dim=1)).squeeze(-1)
        return logit.unsqueeze(-1)

    def row_ids(self, ids: Tensor) -> list[tuple[int, Tensor]]:
        """The ids each table will look up for a batch (their rows travel with the pull)."""
        return [(self.embedding.table, ids)]


def build_ctr_model(
    spec: ModelSpec, inputs: Input, n_outputs: int, device: str | None = None
) -> CTRModel:
    """The built-in model of ``spec.type`` for ``inputs`` (categorical fields and numeric
    features).

    Raises:
        SpecError: no categorical fields, or more than one output.
    """
    if not inputs.fields:
        raise SpecError("model.type", f"{spec.type!r} needs categorical features")
    if n_outputs != 1:
        raise SpecError(
            "model.loss", f"model.type {spec.type!r} makes one output, the data has {n_outputs}"
        )
    with torch.device(device or "cpu"):
        return CTRModel(spec, inputs)

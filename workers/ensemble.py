"""A bagging ensemble's network: its members' networks, combined.

The combined output is what the single model's would be, so loss, accuracy and ``predict`` read
it alike: for ``cross_entropy`` log-probabilities (``mean``: of the members' averaged softmax;
``vote``: of the fraction of members voting for each class, ties broken by the averaged
probabilities), for ``bce`` a logit (of the averaged probability, or of the fraction voting 1),
for ``mse`` the members' mean.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-6  # keeps log(0) finite for classes no member votes for
TIE_BREAK = 1e-3  # the averaged probability's weight next to a vote (less than one vote)


class EnsembleNet(nn.Module):
    """``members`` networks of one architecture, combined by ``combine`` (vote | mean)."""

    def __init__(self, members: list[nn.Module], combine: str, loss: str) -> None:
        super().__init__()
        if combine == "vote" and loss == "mse":
            raise ValueError("vote needs classes; use mean with loss mse")
        self.members = nn.ModuleList(members)
        self.combine, self.loss = combine, loss

    def forward(self, *inputs: Tensor) -> Tensor:
        outs = torch.stack([m(*inputs) for m in self.members])  # (members, batch, outputs)
        if self.loss == "mse":
            return outs.mean(0)
        if self.loss == "bce":
            p = torch.sigmoid(outs).mean(0)
            if self.combine == "vote":
                p = (outs > 0).float().mean(0) * (1 - TIE_BREAK) + TIE_BREAK * p
            return torch.logit(p.clamp(EPS, 1 - EPS))
        p = torch.softmax(outs, dim=-1).mean(0)
        if self.combine == "vote":
            votes = nn.functional.one_hot(outs.argmax(-1), outs.shape[-1]).float().mean(0)
            p = votes * (1 - TIE_BREAK) + TIE_BREAK * p
        return torch.log(p.clamp_min(EPS))

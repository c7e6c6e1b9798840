"""Save a purged model so that plain torch loads it: ``torch.export`` (a ``.pt2`` archive).

Why torch.export: the archive holds the graph (ATen ops) and the weights, so ``torch.export.load(path).module()``
runs it with torch alone; neither ctrlsparse nor any Python class of ours is needed, and the batch dimension is
kept dynamic. A ``state_dict`` plus an architecture description would need a rebuilder (ours) to run, and
TorchScript (``torch.jit``) is deprecated in torch 2.14. The exported graph is the eval-mode function
(BatchNorm uses its running statistics).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def save_purged(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Export ``model`` (eval mode) with a dynamic batch dimension into ``path`` (written atomically)."""
    path = Path(path)
    batch = torch.cat([example[:1], example[:1]])  # a batch of 2, so that the batch size is not specialised
    with torch.no_grad():
        program = torch.export.export(model.eval(), (batch,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    torch.export.save(program, temporary)
    temporary.replace(path)
    return path


def load_purged(path: str | Path) -> nn.Module:
    """The saved model as a callable module (plain torch only)."""
    return torch.export.load(path).module()

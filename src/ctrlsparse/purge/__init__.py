"""Purge a gated model into a smaller dense one (paper.md §4), count its parameters and MACs, save it.

``purge(model, example)`` traces the model (torch.fx), decides per tensor which channels to keep
(:mod:`~ctrlsparse.purge.plan`) and emits a ``torch.fx.GraphModule`` of plain ``nn.Conv2d`` / ``nn.Linear`` /
``nn.BatchNorm2d`` / ``nn.LayerNorm`` modules, channel-wise torch ops and a few ``index_select``\\ s (:mod:`~ctrlsparse.purge.build`).
No architecture needs purge code of its own: residual adds, conv -> linear flattening and the masked BatchNorm
are handled by the graph walk. ``deploy_form(model, example)`` (:mod:`~ctrlsparse.purge.deploy`) is the
inference form the purge job saves and times: BatchNorms folded into their convs, fractional eval gates into the
layers that read them, the purge's re-indexing where a shape read or a Linear makes it unneeded,
channels-last memory.
"""

from ctrlsparse.purge.core import purge, purge_dense
from ctrlsparse.purge.count import Counts, count, size_report
from ctrlsparse.purge.deploy import DeployForm, deploy_form, deployed
from ctrlsparse.purge.export import OnnxError, export_program, load_purged, save_onnx, save_purged

__all__ = [
    "Counts",
    "DeployForm",
    "OnnxError",
    "count",
    "deploy_form",
    "deployed",
    "export_program",
    "load_purged",
    "purge",
    "purge_dense",
    "save_onnx",
    "save_purged",
    "size_report",
]

"""Save a purged model so that plain torch loads it (``torch.export``, a ``.pt2`` archive) and as ONNX, checked.

Why torch.export: the archive holds the graph (ATen ops) and the weights, so ``torch.export.load(path).module()``
runs it with torch alone; neither ctrlsparse nor any Python class of ours is needed, and the batch dimension is
kept dynamic. A ``state_dict`` plus an architecture description would need a rebuilder (ours) to run, and
TorchScript (``torch.jit``) is deprecated in torch 2.14. The exported graph is the eval-mode function
(BatchNorm uses its running statistics).

ONNX (:func:`save_onnx`): the same exported program through torch's ONNX exporter (``dynamo=True``, the
maintained one; the TorchScript-based exporter is deprecated), batch dimension dynamic, then run by onnxruntime on
the CPU on a batch of 3 random inputs and compared with the PyTorch model's output: an export that fails or
differs by more than ``tolerance`` raises :class:`OnnxError`, whose message is one line saying what failed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

ONNX_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| over the check batch's outputs


class OnnxError(RuntimeError):
    """The purged model did not export to ONNX, or onnxruntime's output is not the PyTorch model's."""


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``model`` (eval mode) through torch.export with a dynamic batch dimension."""
    batch = torch.cat([example[:1], example[:1]])  # a batch of 2, so that the batch size is not specialised
    with torch.no_grad():
        return torch.export.export(model.eval(), (batch,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))


def _replace(path: Path, write) -> Path:
    """Write through a temporary file beside ``path`` (``write(temporary)``), then rename it: atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(temporary)
    temporary.replace(path)
    return path


def save_purged(
    model: nn.Module, example: torch.Tensor, path: str | Path, program: torch.export.ExportedProgram | None = None
) -> Path:
    """Export ``model`` (eval mode) with a dynamic batch dimension into ``path`` (written atomically);
    ``program``: its :func:`export_program`, when already made."""
    program = program if program is not None else export_program(model, example)

    def write(temporary: Path) -> None:
        with warnings.catch_warnings():  # said of every channels-last weight (its storage is not in NCHW order);
            # the archive reads back the same strides and values (tests/test_deploy_form.py)
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            torch.export.save(program, temporary)

    return _replace(Path(path), write)


def load_purged(path: str | Path) -> nn.Module:
    """The saved model as a callable module (plain torch only)."""
    return torch.export.load(path).module()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def save_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    program: torch.export.ExportedProgram | None = None,
    tolerance: float = ONNX_TOLERANCE,
) -> float:
    """Write ``model`` as ONNX into ``path`` (atomically) and check it with onnxruntime on the CPU; returns the
    max abs difference from the PyTorch output. :class:`OnnxError` (nothing written) when either fails."""
    import numpy as np

    path = Path(path)
    program = program if program is not None else export_program(model, example)
    try:
        onnx_program = torch.onnx.export(program, dynamo=True, verbose=False)
        proto = onnx_program.model_proto.SerializeToString()
    except Exception as error:  # the exporter raises many kinds; the message says which
        raise OnnxError(f"the ONNX export failed ({_first_line(error)})") from error
    generator = torch.Generator().manual_seed(0)
    check = torch.randn(3, *example.shape[1:], generator=generator).to(example.device, example.dtype)
    with torch.no_grad():
        reference = model.eval()(check).detach().cpu().numpy()
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(proto, providers=["CPUExecutionProvider"])
        output = session.run(None, {session.get_inputs()[0].name: check.cpu().numpy()})[0]
    except Exception as error:
        raise OnnxError(f"onnxruntime could not run the exported model ({_first_line(error)})") from error
    if output.shape != reference.shape:
        raise OnnxError(f"onnxruntime's output has shape {output.shape}, PyTorch's {reference.shape}")
    difference = float(np.abs(output - reference).max())
    if not difference <= tolerance:  # NaN fails too
        raise OnnxError(f"onnxruntime's output differs from PyTorch's by {difference:.3g} (more than {tolerance:g})")
    _replace(path, lambda temporary: temporary.write_bytes(proto))
    return difference

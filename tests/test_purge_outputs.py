"""What the purge writes beside the purged model: its latency against the dense model (keys, not speed: no timed
test), the ONNX model checked with onnxruntime, and the one line of a model that does not export."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_purge import BIG, build, gated_torchvision, set_gates

from ctrlsparse.latency import median_latencies, median_share
from ctrlsparse.layers import gated_layers
from ctrlsparse.plumbing import paths
from ctrlsparse.purge import OnnxError, purge, purge_dense, save_onnx
from ctrlsparse.registry import ARCHS
from ctrlsparse.training import purge_cli

LATENCY_KEYS = {
    f"{kind}_{suffix}"
    for suffix in ("b1", "batch")
    for kind in ("latency_ms", "dense_latency_ms", "latency_share", "least_latency_share")
} | {"latency_batch", "latency_threads"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from ctrlsparse.hparams import HParams
    from ctrlsparse.training.loop import train

    run = tmp_path_factory.mktemp("purge") / "run"
    train(HParams.resolve(arch="cnn", target=(0.5,), epochs=2, batch_size=32, device="cpu"), run, None)
    return run


def fresh_copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_the_purge_writes_its_latency_and_a_checked_onnx_model(finished_run, tmp_path):
    run = fresh_copy(finished_run, tmp_path)
    assert purge_cli.main([str(run), "--threads", "1"]) == 0
    written, summary = (json.loads(p.read_text()) for p in (paths.purge_sizes_path(run), paths.summary_path(run)))
    assert LATENCY_KEYS <= set(written) and LATENCY_KEYS <= set(summary)
    assert written["latency_batch"] == 32 and written["latency_threads"] == 1  # the training batch, --threads
    for suffix in ("b1", "batch"):
        purged, dense = written[f"latency_ms_{suffix}"], written[f"dense_latency_ms_{suffix}"]
        assert purged > 0 and dense > 0 and written[f"latency_share_{suffix}"] > 0
    assert 0 <= written["onnx_max_abs_diff"] <= 1e-4 and "onnx_error" not in written
    assert paths.purged_onnx_path(run).stat().st_size > 0
    loaded = torch.export.load(paths.purged_model_path(run)).module()  # saved in the form that was timed
    weights = [v for v in loaded.state_dict().values() if v.dim() == 4]  # the conv weights (BatchNorms folded)
    last = sum(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert written["deploy_convs"] == len(weights) == 2 and written["deploy_channels_last_convs"] == last
    if written["deploy_memory_format"] != "mixed":
        fmt = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
        assert all(w.is_contiguous(memory_format=fmt[written["deploy_memory_format"]]) for w in weights)
    assert written["deploy_folded_batchnorms"] == 2  # the CNN's two BatchNorms
    assert purge_cli.main([str(run), "--latency-batch", "5"]) == 0
    assert json.loads(paths.summary_path(run).read_text())["latency_batch"] == 5


def test_a_model_that_does_not_export_says_so_in_one_line_and_keeps_the_rest(
    finished_run, tmp_path, monkeypatch, capsys
):
    run = fresh_copy(finished_run, tmp_path)
    paths.purged_onnx_path(run).write_bytes(b"an older purge's model")

    def refuse(*args, **kwargs):
        raise NotImplementedError("no ONNX rule for aten::frobnicate\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(SystemExit) as stopped:
        purge_cli.main([str(run)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"ctrlsparse purge: error: {run}: no purged.onnx: the ONNX export failed")
    assert "NotImplementedError: no ONNX rule for aten::frobnicate" in error and "more detail" not in error
    written = json.loads(paths.purge_sizes_path(run).read_text())
    assert "NotImplementedError" in written["onnx_error"] and LATENCY_KEYS <= set(written)
    assert {"macs_pct", "latency_share_b1"} <= set(json.loads(paths.summary_path(run).read_text()))
    assert paths.purged_model_path(run).exists() and not paths.purged_onnx_path(run).exists()


def test_an_onnx_model_whose_output_differs_is_refused(tmp_path):
    model, x = build("cnn")
    purged = purge(model, x)
    with pytest.raises(OnnxError, match="differs from PyTorch's by"):
        save_onnx(purged, x, tmp_path / "m.onnx", tolerance=-1.0)
    assert not (tmp_path / "m.onnx").exists()


def onnx_matches(model, x, tmp_path) -> None:
    import numpy as np
    import onnxruntime

    purged = purge(model, x)
    assert save_onnx(purged, x, tmp_path / "m.onnx") <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (x[:1], x):  # the batch dimension is dynamic
        output = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
        with torch.no_grad():
            assert float(np.abs(output - model(batch).numpy()).max()) <= 1e-4


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in BIG else a for a in ARCHS])
def test_every_registered_arch_exports_to_onnx_with_the_gated_models_output(arch, tmp_path):
    model, x = build(arch)
    set_gates(model, "random", 0)
    onnx_matches(model, x, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_b0"])
def test_gated_torchvision_models_export_to_onnx(name, tmp_path):
    _, gated, x = gated_torchvision(name)
    set_gates(gated, "random", 1)
    onnx_matches(gated, x, tmp_path)


def test_the_dense_baseline_is_the_model_with_every_gate_open():
    model, x = build("cnn")
    set_gates(model, "nearly_closed", 0)
    dense = purge_dense(model, x)
    with torch.no_grad():
        for _, layer in gated_layers(model):
            layer.log_alpha.fill_(10.0)
        assert torch.allclose(dense(x), model(x), atol=1e-5)


def test_latencies_are_measured_in_interleaved_rounds():
    calls: list[str] = []
    models = {name: (lambda x, name=name: calls.append(name)) for name in ("dense", "purged")}
    measured = median_latencies(models, torch.zeros(1), seconds=0.0, min_rounds=4, warmup=1)
    assert set(measured) == {"dense", "purged"} and all(value >= 0 for value in measured.values())
    assert calls == ["dense", "purged"] + ["dense", "purged"] * 4  # warm-up of each, then a, b, a, b, ...
    assert median_share({"a": [1.0, 2.0, 9.0], "b": [2.0, 4.0, 3.0]}, "a", "b") == 0.5  # per round, then median

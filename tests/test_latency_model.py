"""The latency table (measured once, cached by device and architecture) and the expected latency built on it.

No assertion here is on a time: the times are whatever this machine measures; what is checked is how the
table is keyed, cached and read, and what the expected latency does with it (all-open = the dense model, its
gradient reaches every gate, closing gates never adds time)."""

import dataclasses

import pytest
import torch

from ctrlsparse.cost.latency import ExpectedLatency, latency_table
from ctrlsparse.cost.latency_table import LatencyTable, cache_dir, table_key
from ctrlsparse.layers import gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.registry import ARCHS

CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTRLSPARSE_CACHE", str(tmp_path))
    return tmp_path


def model_and_input(arch: str = "cnn", shape=(1, 8, 8)):
    torch.manual_seed(0)
    return ARCHS[arch](shape, 10, LayerFactory()).eval(), torch.randn(1, *shape)


def test_the_table_is_measured_once_and_then_read_from_the_cache(cache):
    model, x = model_and_input()
    first = latency_table(model, x, 4, CPU)
    files = list(cache_dir().glob("*.json"))
    assert len(files) == 1 and files[0].is_relative_to(cache)
    marked = dataclasses.replace(first, dense_ms=123.0)  # a value no measurement gives: proves the file is read
    files[0].write_text(marked.to_json())
    assert latency_table(model, x, 4, CPU) == marked
    assert [t.name for t in first.layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert first.layers[0].rows == [2, 4, 8, 12, 16] and first.layers[0].columns == [1]  # the image is not gated


def test_the_key_names_the_batch_the_input_and_the_layers():
    model, x = model_and_input()
    key = table_key(model, x, 4, CPU)
    assert table_key(model, x, 4, CPU) == key
    assert table_key(model, x, 8, CPU) != key
    other, y = model_and_input(shape=(1, 12, 12))
    assert table_key(other, y, 4, CPU) != key
    mlp, z = model_and_input("mlp")
    assert table_key(mlp, z, 4, CPU) != key


@pytest.mark.parametrize("arch", ["cnn", "mlp", "lenet5"])
def test_expected_latency_is_the_dense_latency_at_all_open_and_falls_as_gates_close(cache, arch):
    shape = (1, 28, 28) if arch == "lenet5" else (1, 8, 8)
    model, x = model_and_input(arch, shape)
    table = latency_table(model, x, 4, CPU)
    expected = ExpectedLatency(model, x, table)
    n = sum(layer.n_gates for _, layer in gated_layers(model))
    ones = torch.ones(n, dtype=torch.float64)
    assert expected.share(ones).item() == pytest.approx(1.0, abs=1e-9)
    assert expected.milliseconds(ones).item() >= table.dense_ms - 1e-9  # the rest is never negative
    p = torch.full((n,), 0.5, dtype=torch.float64, requires_grad=True)
    share = expected.share(p)
    share.backward()
    assert torch.isfinite(p.grad).all() and (p.grad != 0).any()
    assert (p.grad >= 0).all()  # no gate makes the model faster by opening (the table is monotone or flat)
    draw = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shares = [expected.share((draw < keep).double()).item() for keep in (1.0, 0.8, 0.5, 0.2)]  # nested patterns
    assert shares == sorted(shares, reverse=True) and shares[-1] > 0


def test_a_table_of_another_model_is_refused(cache):
    model, x = model_and_input()
    mlp, z = model_and_input("mlp")
    table = latency_table(mlp, z, 4, CPU)
    with pytest.raises(ValueError, match="latency table has"):
        ExpectedLatency(model, x, table)


def test_the_table_round_trips_through_json():
    model, x = model_and_input()
    table = LatencyTable("cpu:test", 4, 2.0, 1.0, [])
    assert LatencyTable.from_json(table.to_json()) == table


def test_measuring_latency_leaves_the_runs_random_stream_alone(cache):
    """A latency budget's table is measured (cache miss) or read (hit), and the run measures its purged model now
    and then: neither may draw from torch's global generator, or a run's gate noise would depend on the cache's
    state and on when it was calibrated."""
    from ctrlsparse.cost.latency_calibration import measured_share

    model, x = model_and_input()
    torch.manual_seed(1)
    before = torch.get_rng_state()
    latency_table(model, x, 4, CPU)  # a miss: measured
    latency_table(model, x, 4, CPU)  # a hit: read
    measured_share(model, x, 4)
    assert torch.equal(torch.get_rng_state(), before)


def test_the_gradient_at_all_open_is_what_closing_one_gate_saves(cache):
    """At all-open every layer's kept count is the top of its grid: the gradient there is the slope toward fewer
    channels (closing one gate saves exactly it in the table's top cell), and at the bottom of the grid it is 0
    (nothing is saved below it). ``clamp`` gave 0 at either end, so an all-open model's gradient had only the
    rest's part, and a greedy step by it never chose a layer still at full width."""
    model, x = model_and_input()
    measured = latency_table(model, x, 4, CPU)
    layers = [  # a known, strictly increasing table in place of this machine's times
        dataclasses.replace(t, ms=[[float(c * r + c) for r in (t.rows or [1])] for c in t.columns])
        for t in measured.layers
    ]
    expected = ExpectedLatency(model, x, dataclasses.replace(measured, layers=layers, rest_ms=0.0, rest_fixed_ms=0.0))
    n = sum(layer.n_gates for _, layer in gated_layers(model))
    ones = torch.ones(n, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(expected.milliseconds(ones), ones)
    full = float(expected.milliseconds(ones.detach()))
    saved = torch.tensor(
        [full - float(expected.milliseconds(ones.detach().index_fill(0, torch.tensor([g]), 0.0))) for g in range(n)]
    )
    assert (gradient > 0).all()
    assert gradient.float() == pytest.approx(saved.float(), rel=1e-6)
    least = torch.cat([torch.arange(u.n_gates) < max(1, round(u.n_gates / 8)) for _, u in gated_layers(model)])
    bottom = least.double().requires_grad_(True)  # every set at its grid's first count (1/8 of its gates)
    (gradient,) = torch.autograd.grad(expected.milliseconds(bottom), bottom)
    assert (gradient == 0).all()  # every count at its grid's first: closing more saves nothing by the table


def test_the_rests_two_parts_are_the_line_through_the_dense_rest_that_fits_the_partly_open_models():
    from ctrlsparse.cost.latency import rest_parts

    # on one line, fixed 2 + 10 x activations kept: found exactly, from one partly open model or two
    assert rest_parts(12.0, [(0.5, 7.0), (0.3, 5.0)]) == pytest.approx((10.0, 2.0))
    assert rest_parts(12.0, [(0.5, 7.0)]) == pytest.approx((10.0, 2.0))
    # one model off the line (a timing under load) moves the fit by less than it alone would
    alone = rest_parts(12.0, [(0.5, 11.0)])
    fitted = rest_parts(12.0, [(0.5, 11.0), (0.3, 5.0)])
    assert alone[1] == pytest.approx(10.0) and 2.0 < fitted[1] < 10.0
    # never a negative part: a rest that grows as activations go is all fixed, one that falls below 0 all scaling
    assert rest_parts(12.0, [(0.5, 14.0)]) == (0.0, 12.0)
    assert rest_parts(12.0, [(0.5, -3.0)]) == (12.0, 0.0)
    assert rest_parts(12.0, [(1.0, 12.0)]) == (0.0, 12.0)  # no spread in activations: all fixed

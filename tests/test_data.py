"""The embedded digits data: a fixed stratified split, normalised, read without importing scikit-learn."""

import sys

import torch

from ctrlsparse.data.digits import TEST_SIZE, load_digits


def test_digits_split_is_fixed_stratified_and_normalised():
    data = load_digits()
    assert data.train_x.shape == (1797 - TEST_SIZE, 1, 8, 8) and data.test_x.shape == (TEST_SIZE, 1, 8, 8)
    assert data.num_classes == 10 and data.input_shape == (1, 8, 8)
    counts = torch.bincount(data.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # proportional per class
    assert abs(data.train_x.mean().item()) < 1e-5 and abs(data.train_x.std().item() - 1) < 1e-4
    again = load_digits()
    assert torch.equal(again.test_x, data.test_x) and torch.equal(again.train_y, data.train_y)


def test_train_batches_depend_only_on_the_generator():
    data = load_digits()
    first = [y for _, y in data.train_batches(256, torch.Generator().manual_seed(3))]
    second = [y for _, y in data.train_batches(256, torch.Generator().manual_seed(3))]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert sum(len(y) for y in first) == data.num_train


def test_loading_digits_does_not_import_sklearn():
    import subprocess

    code = "import sys; from ctrlsparse.data.digits import load_digits; load_digits(); print('sklearn' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )

"""The imagefolder data set (train/<class>/*, val/<class>/* of real PNG/JPEG files written here), and constrained
runs of torchvision models on it that move the density toward the target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctrlsparse import gates as hc
from ctrlsparse.data.imagefolder import load_imagefolder
from ctrlsparse.data.layouts import DataError
from ctrlsparse.hparams import HParams
from ctrlsparse.plumbing import paths

CLASSES = ("circle", "square")


def write_folder(root: Path, per_class: int = 8, size: tuple[int, int] = (20, 24)) -> Path:
    """A tiny image set: class 0 bright in the centre, class 1 bright at the border; PNG and JPEG files."""
    rng = np.random.default_rng(0)
    height, width = size
    for split in ("train", "val"):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for index in range(per_class if split == "train" else per_class // 2):
                pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
                centre = np.zeros((height, width), dtype=bool)
                centre[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True
                pixels[centre if label == 0 else ~centre] += 180
                suffix = "png" if index % 2 else "jpg"
                Image.fromarray(pixels).save(root / split / name / f"{index}.{suffix}")
    return root


def test_images_are_read_resized_cropped_and_normalised(tmp_path):
    root = write_folder(tmp_path / "shapes")
    data = load_imagefolder(root, image_size=16, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25))
    assert (data.num_train, data.num_classes, data.input_shape) == (16, 2, (3, 16, 16))
    images, labels = next(data.test_batches(100))
    assert images.shape == (8, 3, 16, 16) and labels.tolist() == [0] * 4 + [1] * 4  # sorted class names
    with Image.open(root / "val" / "circle" / "1.png") as image:  # PNG: lossless, so the values are exact
        resized = image.convert("RGB").resize((19, 16), Image.BILINEAR)  # (width, height): short side 20 -> 16
    left = round((19 - 16) / 2)  # torchvision's CenterCrop offset
    expected = torch.from_numpy(np.array(resized)[:, left : left + 16]).permute(2, 0, 1).float() / 255
    assert torch.allclose(images[1], (expected - 0.5) / 0.25, atol=2 / 255 / 0.25)  # resize rounding
    train = list(data.train_batches(5, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in train] == [5, 5, 5, 1]


def test_bad_folders_get_one_line_naming_the_path(tmp_path):
    with pytest.raises(DataError, match=r"missing\b.*train/<class>/\* and val/<class>/\*"):
        load_imagefolder(tmp_path / "nothing")
    root = write_folder(tmp_path / "shapes")
    (root / "val" / "triangle").mkdir()
    (root / "val" / "triangle" / "0.png").write_bytes((root / "val" / "circle" / "1.png").read_bytes())
    with pytest.raises(DataError, match="val has classes") as caught:
        load_imagefolder(root)
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match="cannot be downloaded"):
        load_imagefolder(root, download=True)


def initial_density(droprate: float) -> float:
    """Every gate starts at log alpha = log((1 - d) / d) (+- 0.01 noise), so every layer at this density."""
    return float(hc.prob_active(torch.tensor(hc.initial_log_alpha(droprate))))


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",  # 30 s on a shared core; the others 50-120 s
        pytest.param("mobilenet_v2", marks=pytest.mark.slow),
        pytest.param("resnet50", marks=pytest.mark.slow),
        pytest.param("vgg11_bn", marks=pytest.mark.slow),
        pytest.param("efficientnet_b0", marks=pytest.mark.slow),
    ],
)
def test_constrained_run_on_an_image_folder_moves_the_density_toward_the_target(tmp_path, name):
    from ctrlsparse.training.loop import train

    root = write_folder(tmp_path / "shapes")
    hparams = HParams.resolve(
        dataset="imagefolder",
        data_root=str(root),
        arch=f"torchvision:{name}",
        target=(0.3,),
        epochs=3,
        batch_size=8,
        gates_lr=0.3,  # 6 steps: Adam moves each log alpha by about gates_lr a step
        dual_lr=0.5,
        device="cpu",
        data_workers=0,
    )
    summary = train(hparams, tmp_path / "run", None)
    start = initial_density(hparams.droprate_init)
    assert abs(summary["expected_density"] - 0.3) < abs(start - 0.3) - 0.02, (start, summary["expected_density"])
    assert paths.summary_path(tmp_path / "run").exists()

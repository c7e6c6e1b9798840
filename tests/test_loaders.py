"""Each data set's loader reads tiny files written here in the real on-disk format; bad or missing data sets
stop with one line naming the path and the expected layout (also through the CLI)."""

import gzip
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctrlsparse.data.cifar import load_cifar10, load_cifar100
from ctrlsparse.data.imagenet import load_imagenet
from ctrlsparse.data.images import Augmentation, ImageTensors
from ctrlsparse.data.layouts import ENV, DataError, data_root
from ctrlsparse.data.mnist import load_mnist
from ctrlsparse.data.tinyimagenet import load_tinyimagenet

RNG = np.random.default_rng(0)


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    magic = 0x800 + array.ndim  # unsigned byte data, then the number of dimensions
    raw = struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_mnist(root: Path) -> dict[str, np.ndarray]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 3, 4, 9]),
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([7, 8, 9]),
    }
    for index, (name, array) in enumerate(arrays.items()):
        write_idx(raw / name, array, gz=index % 2 == 0)  # torchvision keeps both; either must do
    return arrays


def write_pickle(path: Path, data: np.ndarray, labels: list[int], label_key: bytes) -> None:
    batch = {b"batch_label": b"x", label_key: labels, b"data": data, b"filenames": [b"a.png"] * len(labels)}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def test_mnist_idx_files_plain_or_gzipped(tmp_path):
    arrays = write_mnist(tmp_path)
    data = load_mnist(tmp_path)
    assert data.input_shape == (1, 28, 28) and data.num_train == 6 and data.num_classes == 10
    assert data.train_y.tolist() == [0, 1, 2, 3, 4, 9] and data.test_y.tolist() == [7, 8, 9]
    images, labels = next(data.test_batches(2))
    assert images.shape == (2, 1, 28, 28) and images.dtype == torch.float32 and labels.tolist() == [7, 8]
    pixels = torch.from_numpy(arrays["t10k-images-idx3-ubyte"][:2]).float().unsqueeze(1) / 255
    assert torch.allclose(images * 0.3081 + 0.1307, pixels, atol=1e-5)  # normalised with the paper's constants
    train = torch.cat([x for x, _ in data.train_batches(4, torch.Generator().manual_seed(0))])
    assert train.shape == (6, 1, 28, 28)  # no augmentation: a permutation of the training images


def test_mnist_with_a_bad_magic_number_names_the_file(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + path.read_bytes()[4:])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is not an idx file with magic number 2049"):
        load_mnist(tmp_path)


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images = RNG.integers(0, 256, (5 * 4 + 3, 3072), dtype=np.uint8)
    for i in range(5):
        write_pickle(folder / f"data_batch_{i + 1}", images[4 * i : 4 * i + 4], [i, i, i, 9], b"labels")
    write_pickle(folder / "test_batch", images[20:], [5, 6, 7], b"labels")
    data = load_cifar10(tmp_path)
    assert data.input_shape == (3, 32, 32) and data.num_train == 20 and data.num_classes == 10
    assert data.train_y.tolist()[:8] == [0, 0, 0, 9, 1, 1, 1, 9]
    assert torch.equal(data.test_x, torch.from_numpy(images[20:]).view(3, 3, 32, 32))  # rows are CHW
    x, y = next(data.train_batches(8, torch.Generator().manual_seed(0)))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (8,)
    assert data.crop_padding == 4 and data.flip


def test_cifar100_pickles_use_the_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    write_pickle(folder / "train", RNG.integers(0, 256, (4, 3072), dtype=np.uint8), [0, 50, 99, 3], b"fine_labels")
    write_pickle(folder / "test", RNG.integers(0, 256, (2, 3072), dtype=np.uint8), [98, 1], b"fine_labels")
    data = load_cifar100(tmp_path)
    assert data.num_classes == 100 and data.train_y.tolist() == [0, 50, 99, 3] and data.test_y.tolist() == [98, 1]


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({b"data": print}))  # a global other than numpy's arrays
    (folder / "test").write_bytes(b"")
    with pytest.raises(DataError, match=r"train is not a CIFAR pickle .*refusing to load builtins.print"):
        load_cifar100(tmp_path)


def write_jpeg(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, "JPEG")


def test_tinyimagenet_folders_and_val_annotations(tmp_path):
    folder = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # labels follow the sorted order: n01 -> 0, n02 -> 1, n03 -> 2
    folder.mkdir()
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for i in range(2):
            write_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", (64, 64), "L" if i else "RGB")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i, wnid in enumerate(["n03", "n01", "n02", "n03"]):
        write_jpeg(folder / "val" / "images" / f"val_{i}.JPEG", (64, 64))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    data = load_tinyimagenet(tmp_path)
    assert data.num_classes == 3 and data.num_train == 6 and data.input_shape == (3, 64, 64)
    assert data.train_y.tolist() == [0, 0, 1, 1, 2, 2] and data.test_y.tolist() == [2, 0, 1, 2]
    x, y = next(data.train_batches(4, torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 64, 64) and x.abs().max() <= 1 + 1e-6  # normalised to [-1, 1]
    write_jpeg(folder / "val" / "images" / "val_2.JPEG", (32, 32))
    with pytest.raises(DataError, match=r"val_2.JPEG is not a readable 64x64 image"):
        load_tinyimagenet(tmp_path)


def test_imagenet_class_folders_stream_224_crops(tmp_path):
    folder = tmp_path / "imagenet"
    for split, count in (("train", 3), ("val", 1)):
        for wnid in ("n01440764", "n01443537"):
            for i in range(count):
                write_jpeg(folder / split / wnid / f"{wnid}_{i}.JPEG", (300 + 20 * i, 250))
    data = load_imagenet(tmp_path)
    assert data.num_classes == 2 and data.num_train == 6 and data.input_shape == (3, 224, 224)
    batches = list(data.train_batches(4, torch.Generator().manual_seed(0)))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 224, 224), (2, 3, 224, 224)]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0, 0, 0, 1, 1, 1]
    x, y = next(data.test_batches(8))
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [0, 1]
    (folder / "val" / "n01443537").rename(folder / "val" / "n99")
    with pytest.raises(DataError, match="imagenet/val has 2 class folders, train/ has 2"):
        load_imagenet(tmp_path)


def test_ddp_shards_split_every_global_batch_and_augmentation_stays_in_step():
    data = ImageTensors(
        torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 4, 4).contiguous(),
        torch.arange(10),
        torch.zeros(1, 1, 4, 4, dtype=torch.uint8),
        torch.zeros(1, dtype=torch.long),
        10,
        mean=(0.0,),
        std=(1 / 255,),
        crop_padding=1,
        flip=True,
    )
    whole = list(data.train_batches(4, torch.Generator().manual_seed(1)))
    shards = []
    for rank in range(2):
        data.shard = (rank, 2)
        shards.append(list(data.train_batches(4, torch.Generator().manual_seed(1))))
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards, strict=True):
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)


def test_crop_offsets_and_flips():
    image = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    centre = Augmentation(1, torch.tensor([[1, 1]]), torch.tensor([False]))
    assert torch.equal(centre.apply(image), image)
    corner = Augmentation(1, torch.tensor([[0, 0]]), torch.tensor([True]))
    expected = torch.nn.functional.pad(image, (1, 1, 1, 1))[..., :4, :4].flip(3)
    assert torch.equal(corner.apply(image), expected)


def test_data_root_comes_from_the_hparam_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path))
    assert data_root("") == tmp_path and data_root("/x") == Path("/x")
    monkeypatch.delenv(ENV)
    assert data_root("") == Path("data")


def test_missing_data_root_gives_one_line_through_the_cli(tmp_path):
    missing = tmp_path / "nowhere"
    flags = ["--dataset", "cifar10", "--arch", "wrn16_4", "--data-root", str(missing), "--out", str(tmp_path / "r")]
    result = subprocess.run(
        [sys.executable, "-m", "ctrlsparse", "train", *flags], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"--data-root: dataset 'cifar10': {missing}/cifar-10-batches-py is missing" in lines[0]
    assert "data_batch_1..5 and test_batch" in lines[0] and "--download fetches it" in lines[0]
    assert not (tmp_path / "r").exists()  # stopped before anything was written

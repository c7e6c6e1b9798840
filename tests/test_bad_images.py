"""Image folders as they really are (issue 27): the files that do not decode are named in one line before any
training step, or left out with --skip-bad-images; other modes are converted; hidden and non-image files are
ignored; a file that changes on disk mid-run stops the run in one line with its checkpoint kept. Every bad file
is written here by PIL (or by hand), every outcome checked through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctrlsparse.data.imagecheck import BadImages, check_folder
from ctrlsparse.data.imagefiles import class_folders, list_images, read_rgb
from ctrlsparse.data.imagenet import load_imagenet
from ctrlsparse.hparams import EXECUTION, HParams
from ctrlsparse.identity import run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import read_checkpoint

RNG = np.random.default_rng(0)


def write_image(path: Path, size: tuple[int, int] = (10, 12), mode: str = "RGB", fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path, fmt)
    return path


def cut_short(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


def write_folder(root: Path, classes: int = 10, per_class: int = 2) -> Path:
    """train/c<k>/<i>.png and val/c<k>/<i>.png: ``per_class`` and one image per class."""
    for split, count in (("train", per_class), ("val", 1)):
        for label in range(classes):
            for index in range(count):
                write_image(root / split / f"c{label}" / f"{index}.png")
    return root


def train(out: Path, root: Path, *flags: str, arch: str = "mlp", epochs: int = 1) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ctrlsparse", "train", "--out", str(out), "--dataset", "imagefolder"]
    command += ["--data-root", str(root), "--arch", arch, "--epochs", str(epochs), "--threads", "1"]
    command += ["--device", "cpu", "--quiet", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def listed(out: Path) -> dict[str, str]:
    """The run's bad_images.txt as {path: reason}."""
    lines = paths.bad_images_path(out).read_text().splitlines()
    return dict(line.split("\t") for line in lines)


def test_the_issues_folder_stops_in_one_line_before_training_and_trains_on_the_rest_with_skip(tmp_path):
    root = write_folder(tmp_path / "photos")
    broken = cut_short(write_image(root / "train" / "c3" / "broken.png", (64, 64)))
    (root / "train" / "c4" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    flags = ("--image-size", "32", "--target", "0.5")
    stopped = train(tmp_path / "run", root, *flags, arch="torchvision:resnet18", epochs=2)
    assert stopped.returncode == 2
    assert len(stopped.stderr.strip().splitlines()) == 1, stopped.stderr
    assert "1 of 31 image files" in stopped.stderr and "train/c3/broken.png (truncated)" in stopped.stderr
    assert "--skip-bad-images" in stopped.stderr and str(paths.bad_images_path(tmp_path / "run")) in stopped.stderr
    assert ".DS_Store" not in stopped.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["bad_images.txt", "train.lock"]  # no step
    assert listed(tmp_path / "run") == {str(broken): "truncated"}

    skipped = train(tmp_path / "run", root, *flags, "--skip-bad-images", arch="torchvision:resnet18", epochs=2)
    assert skipped.returncode == 0, skipped.stderr
    assert "1 unreadable image file skipped" in skipped.stderr and ".DS_Store" not in skipped.stderr
    summary = json.loads(paths.summary_path(tmp_path / "run").read_text())
    dataset = json.loads(paths.dataset_path(tmp_path / "run").read_text())
    assert summary["skipped_images"] == 1 and summary["epochs"] == 2
    assert (dataset["skipped_images"], dataset["train_size"], dataset["test_size"]) == (1, 20, 10)
    assert listed(tmp_path / "run") == {str(broken): "truncated"}


def write_odd_files(root: Path) -> dict[str, str]:
    """Every kind of file a real photo folder holds beside its images; returns {bad file: reason}."""
    train = root / "train"
    bad = {
        cut_short(write_image(train / "c1" / "cut.png", (48, 48))): "truncated",
        cut_short(write_image(train / "c1" / "cut.jpg", (64, 64), fmt="JPEG")): "truncated",
        (train / "c2" / "empty.jpg"): "empty file",
        (train / "c2" / "notes.jpg"): "not an image",
    }
    (train / "c2" / "empty.jpg").write_bytes(b"")
    (train / "c2" / "notes.jpg").write_text("a text file named .jpg\n")
    write_image(train / "c0" / "cmyk.jpg", mode="CMYK", fmt="JPEG")
    deep = (np.arange(120).reshape(10, 12) * 500).astype(np.uint16)  # 16-bit grayscale
    Image.fromarray(deep).save(train / "c0" / "deep.png")
    write_image(train / "c0" / "alpha.png", mode="RGBA")
    write_image(train / "c0" / "palette.png", mode="P")
    write_image(train / "c0" / "gray.jpg", mode="L", fmt="JPEG")
    # ignored, as the folder convention says: hidden files and folders, other extensions
    (train / "c0" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (train / "c0" / "._alpha.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (train / "c0" / "readme.txt").write_text("not an image\n")
    cut_short(write_image(train / "c0" / ".thumbnails" / "0.png", (48, 48)))
    write_image(train / ".ipynb_checkpoints" / "0.png")  # a hidden folder is no class
    return {str(path): why for path, why in bad.items()}


def test_each_kind_of_file_gets_its_outcome_through_the_cli(tmp_path):
    root = write_folder(tmp_path / "photos", classes=3)
    bad = write_odd_files(root)
    flags = ("--image-size", "8", "--data-workers", "1")
    stopped = train(tmp_path / "run", root, *flags)
    assert stopped.returncode == 2 and len(stopped.stderr.strip().splitlines()) == 1, stopped.stderr
    line = stopped.stderr
    assert "4 of 18 image files" in line
    for name in ("c1/cut.png (truncated)", "c1/cut.jpg (truncated)", "c2/empty.jpg (empty file)"):
        assert f"train/{name}" in line
    assert "train/c2/notes.jpg (not an image)" in line
    for ignored in ("cmyk", "deep", "alpha", "palette", "gray", ".DS_Store", "readme", ".thumbnails", ".ipynb"):
        assert ignored not in line
    assert listed(tmp_path / "run") == bad
    assert not paths.checkpoint_path(tmp_path / "run").exists()

    trained = train(tmp_path / "run", root, *flags, "--skip-bad-images")
    assert trained.returncode == 0, trained.stderr
    assert "4 unreadable image files skipped" in trained.stderr
    dataset = json.loads(paths.dataset_path(tmp_path / "run").read_text())
    assert (dataset["skipped_images"], dataset["train_size"], dataset["num_classes"]) == (4, 11, 3)
    assert json.loads(paths.summary_path(tmp_path / "run").read_text())["skipped_images"] == 4
    assert listed(tmp_path / "run") == bad


def test_other_modes_become_rgb_as_the_readme_says(tmp_path):
    deep = np.array([[0, 128, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    rgb = np.asarray(read_rgb(tmp_path / "deep.png"))
    assert rgb.shape == (1, 4, 3) and rgb[0, :, 0].tolist() == [0, 0, 128, 255]  # v / 257, not clipped to white
    source = write_image(tmp_path / "alpha.png", (6, 5), "RGBA")
    assert np.array_equal(np.asarray(read_rgb(source)), np.asarray(Image.open(source).convert("RGB")))  # dropped
    palette = Image.fromarray(RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)).convert("P")
    palette.save(tmp_path / "clear.png", transparency=bytes([0, 128] + [255] * 254))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns for each such file it converts straight to RGB
        assert read_rgb(tmp_path / "clear.png").mode == "RGB"
    for mode in ("CMYK", "L"):
        assert read_rgb(write_image(tmp_path / f"{mode}.jpg", (6, 5), mode, "JPEG")).mode == "RGB"
    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(tmp_path / "float.tif")
    files = [tmp_path / "deep.png", tmp_path / "float.tif"]
    verdict = check_folder(tmp_path, files)
    assert [(path.name, why[:18]) for path, why in verdict.bad] == [("float.tif", "unsupported mode F")]


def test_the_verdict_is_cached_by_file_list_size_and_time(tmp_path):
    root = write_folder(tmp_path / "photos", classes=2)
    broken = cut_short(write_image(root / "train" / "c1" / "broken.png", (48, 48)))
    files = [path for split in ("train", "val") for path, _ in list_images(root / split, class_folders(root / split))]
    first = check_folder(root, files)
    again = check_folder(root, files)
    assert (first.cached, again.cached) == (False, True)
    assert first.bad == again.bad == ((broken, "truncated"),) and again.files == first.files == 7
    stat = broken.stat()
    os.utime(broken, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: decoded again
    assert not check_folder(root, files).cached
    assert not check_folder(root, files[1:]).cached  # another file list
    assert check_folder(root, files).cached


def test_imagenet_is_checked_the_same_way(tmp_path):
    folder = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            write_image(folder / split / wnid / f"{wnid}_0.JPEG", (40, 30), fmt="JPEG")
    write_image(folder / "train" / "n01440764" / "n01440764_1.JPEG", (40, 30), fmt="JPEG")
    cut_short(write_image(folder / "train" / "n01443537" / "n01443537_1.JPEG", (300, 250), fmt="JPEG"))
    with pytest.raises(BadImages, match=r"1 of 6 image files .* train/n01443537/n01443537_1.JPEG \(truncated\)"):
        load_imagenet(tmp_path)
    data = load_imagenet(tmp_path, skip_bad_images=True)
    assert data.num_train == 3 and [path.name for path, _ in data.skipped] == ["n01443537_1.JPEG"]
    assert sorted(label for _, label, _ in data.train) == [0, 0, 1]


def test_a_file_that_changes_on_disk_mid_run_stops_it_in_one_line_and_keeps_the_checkpoint(tmp_path):
    root = write_folder(tmp_path / "photos", classes=2, per_class=4)
    command = [sys.executable, "-m", "ctrlsparse", "train", "--out", str(tmp_path / "run"), "--quiet"]
    command += ["--dataset", "imagefolder", "--data-root", str(root), "--arch", "mlp", "--image-size", "8"]
    command += ["--epochs", "100000", "--checkpoint-seconds", "0", "--threads", "1", "--device", "cpu"]
    command += ["--data-workers", "1"]  # the file is read in a DataLoader worker, as in a real run
    running = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not paths.checkpoint_path(tmp_path / "run").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    running.send_signal(signal.SIGTERM)  # ends the epoch, saves the checkpoint, exits 143: a resumable run
    assert running.wait(timeout=120) == 143, running.stderr.read()
    epoch = read_checkpoint(paths.checkpoint_path(tmp_path / "run"))["epoch"]
    changed = root / "train" / "c1" / "2.png"
    stat = changed.stat()  # same size and time: the cached verdict still holds, so the run starts
    changed.write_bytes(b"x" * stat.st_size)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 2
    errors = [line for line in resumed.stderr.splitlines() if "error" in line]
    assert errors == [resumed.stderr.strip().splitlines()[-1]], resumed.stderr
    assert f"{changed}: not an image; it passed the check before training" in errors[0]
    assert "Traceback" not in resumed.stderr
    assert read_checkpoint(paths.checkpoint_path(tmp_path / "run"))["epoch"] == epoch
    assert not paths.summary_path(tmp_path / "run").exists()


def test_skip_bad_images_is_no_part_of_the_run_key():
    """A clean folder trains the same with it or without; a folder with bad files trains only with it."""
    plain = HParams.resolve(dataset="imagefolder", arch="torchvision:resnet18")
    skipping = HParams.resolve(dataset="imagefolder", arch="torchvision:resnet18", skip_bad_images=True)
    assert run_key(skipping) == run_key(plain) and "skip_bad_images" in EXECUTION

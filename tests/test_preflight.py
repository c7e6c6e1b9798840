"""Bad input stops the workflow before any job starts, with one line naming the config key and the fix.

Every case runs the real `snakemake` CLI on its own temporary working directory: dry runs for the config checks
(the schema and registries in workflow/grid.py, the archs' gated layers and the results directory in
workflow/preflight.py), a real run for the data check (which Snakemake's onstart does only when jobs will run,
so a dry run still works without data). The CLI cases run side by side (about 20 s in all); the checks'
passing paths are tested on workflow/preflight.py directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
sys.path.insert(0, str(ROOT / "workflow"))
import grid  # noqa: E402
import preflight  # noqa: E402

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")  # root writes anywhere: test as nobody


@dataclass(frozen=True)
class Case:
    config: dict  # merged over config.yaml, as with --configfile
    line: str  # the "Invalid config:" line; {workdir} is the case's working directory
    dry: bool = True
    env: dict = field(default_factory=dict)


ONE_MLP_RUN = {"archs": ["mlp"], "seeds": [0], "penalized": {"penalties": []}, "dense": False}
CASES = {
    "misspelled key": Case(
        {"result": "out"},
        "config key (top level): Additional properties are not allowed ('result' was unexpected); "
        "see config.schema.yaml for the valid keys",
    ),
    "misspelled grid key": Case(
        {"grid": {"arch": ["mlp"]}},
        "config key grid: Additional properties are not allowed ('arch' was unexpected); "
        "see config.schema.yaml for the valid keys",
    ),
    "misspelled hyperparameter": Case(
        {"hparams": {"epoch": 5}},
        "config key hparams.epoch: unknown hyperparameter; valid ones: alpha_min, amp, arch, ",
    ),
    "unknown dataset": Case(
        {"grid": {"datasets": ["svhn"]}},
        "config key grid.datasets: unknown dataset 'svhn'; choose one of: digits, mnist, mnist5k, cifar10, cifar100, "
        "tinyimagenet, imagenet",
    ),
    "unknown arch in a sweep": Case(
        {"sweeps": [{"archs": ["vgg"], "constrained": {"targets": [0.5]}}]},
        "config key sweeps[0] (arch): unknown arch 'vgg'; choose one of: mlp, cnn, lenet5, vit, wrn28_10, wrn16_4, "
        "resnet18, resnet50",
    ),
    "unknown method": Case(
        {"grid": {"pruned": {"targets": [0.5]}}},
        "config key grid: Additional properties are not allowed ('pruned' was unexpected); "
        "see config.schema.yaml for the valid keys",
    ),
    "target above 1": Case(
        {"grid": {"constrained": {"targets": [0.5, 1.5]}}},
        "config key grid.constrained.targets[1]: 1.5 is greater than the maximum of 1",
    ),
    "zero target in a sweep's layer list": Case(
        {"sweeps": [{"constrained": {"scopes": ["layer"], "targets": [[0.5, 0]]}}]},
        "config key sweeps[0].constrained.targets[0][1]: 0 is less than or equal to the minimum of 0",
    ),
    "negative epochs": Case({"hparams": {"epochs": -5}}, "config key hparams.epochs: -5 must be a positive integer"),
    "layer-wise list of the wrong length": Case(
        {"grid": {"archs": ["mlp", "cnn"], "constrained": {"scopes": ["layer"], "targets": [[0.5, 0.3, 0.2]]}}},
        "config key grid.constrained.targets[0]: 3 layer-wise targets [0.5, 0.3, 0.2], but arch 'cnn' has 4 gated "
        "layers (conv1, conv2, fc1, fc2); give one target or 4",
    ),
    "results under a file": Case(
        {"results": "notes.txt/results"},
        "config key results: {workdir}/notes.txt is a file, so {workdir}/notes.txt/results cannot be created; "
        "choose another directory",
    ),
    "missing data root": Case(
        {
            "grid": {"datasets": ["mnist"], **ONE_MLP_RUN, "magnitude": {"targets": []}},
            "hparams": {"data_root": "nowhere"},
        },
        "config key hparams.data_root: dataset 'mnist': {workdir}/nowhere/MNIST/raw is missing; expected "
        "<data root>/MNIST/raw/ with the 4 idx files (train-images-idx3-ubyte, ..., t10k-labels-idx1-ubyte, "
        "optionally .gz), as torchvision.datasets.MNIST writes them; set hparams.data_root (or $CTRLSPARSE_DATA) "
        "to the folder that holds MNIST/, or hparams.download: true to fetch it",
        dry=False,
    ),
}


def snakemake(workdir: Path, config: dict, *args: str, env: dict | None = None, user: tuple = ()) -> tuple:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "notes.txt").write_text("a regular file\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CTRLSPARSE_"))}
    environment.update(PATH=f"{SNAKEMAKE.parent}{os.pathsep}{environment.get('PATH', '')}", **(env or {}))
    command = [*user, str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(workdir / "config.yaml"), "--cores", "1", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=environment)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """(exit code, output, workdir) of every case, run 4 at a time (each is mostly Python start-up)."""

    def run(name: str) -> tuple:
        case, workdir = CASES[name], tmp_path_factory.mktemp("case")
        code, output = snakemake(workdir, case.config, *(["-n"] if case.dry else []), env=case.env)
        return code, output, workdir

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CASES, pool.map(run, CASES), strict=True))


@pytest.mark.parametrize("name", CASES)
def test_bad_config_value_stops_before_any_job_with_one_line(outcomes, name):
    code, output, workdir = outcomes[name]
    assert code != 0, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("Invalid config: ")]
    expected = "Invalid config: " + CASES[name].line.format(workdir=workdir)
    assert len(lines) == 1 and lines[0].startswith(expected), output[-3000:]
    assert not (workdir / "results").exists() and "rule train" not in output  # no job started


def test_a_dry_run_needs_no_data(tmp_path):
    case = CASES["missing data root"]
    code, output = snakemake(tmp_path, case.config, "-n")
    assert code == 0, output[-3000:]
    assert "train" in output


@pytest.fixture
def locked_dir():
    """A directory that the test's user (nobody, when the tests run as root) may read but not write."""
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o777)
    (folder / "locked").mkdir(mode=0o555)
    (folder / "locked").chmod(0o555)  # mkdir's mode is cut by the umask
    user = NOBODY if os.geteuid() == 0 else ()
    if user and (not shutil.which("setpriv") or subprocess.run([*user, str(SNAKEMAKE), "--version"]).returncode):
        pytest.skip("running as root, and user nobody cannot run snakemake here")
    yield folder, user
    shutil.rmtree(folder)


def test_unwritable_results_dir_stops_before_any_job(locked_dir):
    workdir, user = locked_dir
    code, output = snakemake(workdir, {"results": "locked/results"}, "-n", env={"HOME": str(workdir)}, user=user)
    assert code != 0
    line = f"Invalid config: config key results: {workdir}/locked/results cannot be written ({workdir}/locked is "
    assert [text for text in output.splitlines() if text.startswith("Invalid config")] == [
        line + "not writable); choose a directory you can write"
    ], output[-3000:]


# --- the checks' passing paths, on workflow/preflight.py directly ---


def merged(base: dict, update: dict) -> dict:
    """``update`` merged into ``base`` the way Snakemake merges --configfile (nested dicts key by key)."""
    for key, value in update.items():
        base[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


def runs_of(update: dict, tmp_path: Path) -> tuple[dict, list]:
    """The config (config.yaml + ``update``, results under tmp_path) and its runs, as the Snakefile checks them."""
    from snakemake.utils import validate

    config = merged(
        yaml.safe_load((ROOT / "config.yaml").read_text()), {**update, "results": str(tmp_path / "results")}
    )
    validate(config, schema=str(grid.SCHEMA))
    return config, grid.check_config(config)


def test_layer_target_lists_of_the_right_length_pass_and_each_list_is_checked(tmp_path):
    grid_update = {"archs": ["mlp"], "constrained": {"scopes": ["layer"], "targets": [[0.5], [0.5, 0.3, 0.2]]}}
    sweep = {"archs": ["lenet5"], "constrained": {"scopes": ["layer"], "targets": [[0.5, 0.3, 0.7, 0.1]]}}
    config, _ = runs_of({"grid": {**grid_update, "magnitude": {"targets": [0.5, [0.4, 0.4, 0.4]]}}}, tmp_path)
    config["sweeps"] = [sweep]
    preflight.check_config(config)
    config["grid"]["magnitude"]["targets"] = [0.5, [0.4, 0.4]]
    with pytest.raises(grid.ConfigError, match=r"^config key grid.magnitude.targets\[1\]: 2 layer-wise targets"):
        preflight.check_config(config)
    config["grid"]["magnitude"]["targets"] = []
    config["sweeps"][0]["constrained"]["targets"] = [[0.5, 0.3, 0.7]]
    with pytest.raises(grid.ConfigError, match=r"^config key sweeps\[0\].constrained.targets\[0\]: .* 'lenet5' has 4"):
        preflight.check_config(config)
    config["sweeps"] = [{"archs": ["vit"], "constrained": {"scopes": ["layer"], "targets": [[0.8, 0.5, 0.3]]}}]
    preflight.check_config(config)  # the ViT's 7 gate groups: one target per kind (stream, heads, MLP)


def test_gated_layers_counted_on_the_meta_device_are_the_models():
    import torch

    from ctrlsparse.layers import gated_layers
    from ctrlsparse.models.factory import LayerFactory
    from ctrlsparse.registry import ARCHS

    for arch in ("mlp", "lenet5", "wrn16_4", "torchvision:mobilenet_v3_small"):  # gate groups listed on meta too
        names = preflight.gated_layer_names(arch)
        model = ARCHS[arch](*preflight.PROBE_INPUT, LayerFactory())
        assert names == tuple(name for name, _ in gated_layers(model))
        assert next(model.parameters()).device == torch.device("cpu")  # the meta device stayed inside the check


def write_mnist(root: Path) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / f"{name}.gz").write_bytes(b"")
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"")


def test_data_check_passes_with_the_layout_and_skips_what_needs_no_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CTRLSPARSE_DATA", raising=False)
    mnist = {"datasets": ["digits", "mnist"], **ONE_MLP_RUN, "magnitude": {"targets": []}}
    config, runs = runs_of({"grid": mnist, "hparams": {"data_root": str(tmp_path / "data")}}, tmp_path)
    with pytest.raises(grid.ConfigError, match=r"^config key hparams.data_root: dataset 'mnist': .*MNIST/raw is"):
        preflight.check_data(runs, config)
    write_mnist(tmp_path / "data")
    preflight.check_data(runs, config)  # digits needs none, mnist is complete
    (tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(grid.ConfigError, match="t10k-labels-idx1-ubyte is missing"):
        preflight.check_data(runs, config)
    for run in runs:  # finished runs need no data
        (tmp_path / "results" / "runs" / run.key).mkdir(parents=True)
        (tmp_path / "results" / "runs" / run.key / "summary.json").write_text("{}")
    preflight.check_data(runs, config)


def test_data_check_names_where_the_data_root_came_from(tmp_path, monkeypatch):
    mnist = {"datasets": ["mnist"], **ONE_MLP_RUN, "magnitude": {"targets": []}}
    monkeypatch.setenv("CTRLSPARSE_DATA", str(tmp_path / "env"))
    with pytest.raises(grid.ConfigError, match=rf"^config key hparams.data_root \(\$CTRLSPARSE_DATA={tmp_path}/env\)"):
        preflight.check_data(*reversed(runs_of({"grid": mnist}, tmp_path)))
    monkeypatch.delenv("CTRLSPARSE_DATA")
    with pytest.raises(grid.ConfigError, match=r"^config key hparams.data_root \(neither it nor \$CTRLSPARSE_DATA is"):
        preflight.check_data(*reversed(runs_of({"grid": mnist}, tmp_path)))
    preflight.check_data(*reversed(runs_of({"grid": mnist, "hparams": {"download": True}}, tmp_path)))  # jobs fetch it


def test_paper_rows_name_registered_data_and_archs_and_a_setting_of_the_presets():
    from snakemake.utils import validate

    from ctrlsparse.registry import ARCHS, DATASETS
    from ctrlsparse.report import paper

    rows = paper.load_paper(ROOT / "report" / "paper_results.csv")
    for row in rows:
        DATASETS.check(row["dataset"])
        ARCHS.check(row["arch"])
    ours = set()
    for preset in (ROOT / "workflow" / "presets").glob("*.yaml"):
        config = merged(yaml.safe_load((ROOT / "config.yaml").read_text()), yaml.safe_load(preset.read_text()))
        validate(config, schema=str(grid.SCHEMA))
        ours |= {
            (r.hparams.dataset, r.hparams.arch, r.hparams.variant, r.hparams.level) for r in grid.check_config(config)
        }
    assert [paper.paper_key(row) for row in rows if paper.paper_key(row) not in ours] == []
    tagged = {paper.paper_key(row) for row in rows if row["gates_lr"] == "0.1"}
    assert ("cifar10", "wrn28_10", "constrained-layer+gates_lr=0.1", "1") in tagged

"""The MLflow mirror on a temporary SQLite store: tags, params, metrics, artifacts, idempotence, failures."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from synthetic import write_synthetic_run

from ctrlsparse import tracking
from ctrlsparse.plumbing import paths
from ctrlsparse.report.run_plot import plot_run_dynamics
from ctrlsparse.tracking import store as store_module

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """A SQLite file with MLflow's schema; creating the schema takes seconds, copying it does not."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    tracking.init_store(f"sqlite:///{path}", "template")
    return path


@pytest.fixture
def store(tmp_path, empty_db):
    (tmp_path / "mlflow").mkdir()
    shutil.copy(empty_db, tmp_path / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    tracking.init_store(uri, "test")
    return uri


def active_runs(uri: str, experiment: str = "test") -> list:
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


def all_runs(uri: str, experiment: str = "test") -> list:
    from mlflow.entities import ViewType

    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000)


def test_init_store_is_idempotent_and_puts_artifacts_next_to_the_db(tmp_path, store):
    assert tracking.init_store(store, "test") == tracking.init_store(store, "test")
    experiment = mlflow.tracking.MlflowClient(store).get_experiment_by_name("test")
    assert experiment.artifact_location == (tmp_path / "mlflow" / "artifacts" / "test").as_uri()


def test_mirror_logs_tags_params_metrics_and_artifacts(tmp_path, store):
    run_dir = write_synthetic_run(
        tmp_path / "runs", epochs=4, dataset="digits", arch="mlp", method="constrained", target=(0.35,), seed=1
    )
    plot_run_dynamics(run_dir, paths.dynamics_plot_path(run_dir))  # what the train job draws before it mirrors
    run_id = tracking.mirror_run(run_dir, tracking_uri=store, experiment="test", tags={"campaign": "unit"})
    assert run_id is not None
    client = mlflow.tracking.MlflowClient(store)
    run = client.get_run(run_id)
    tags = run.data.tags
    run_key = json.loads(paths.summary_path(run_dir).read_text())["run_key"]
    assert tags["mlflow.runName"] == run_key and run_key == str(run_dir.relative_to(tmp_path / "runs"))
    for key, value in {
        "dataset": "digits",
        "arch": "mlp",
        "method": "constrained",
        "variant": "constrained-model",
        "target_scope": "model",
        "level": "0.35",
        "target": "0.35",
        "seed": "1",
        "run_key": run_key,
        "campaign": "unit",
    }.items():
        assert tags[key] == value, key
    assert "git_commit" in tags and "hparams_hash" in tags
    hparams = json.loads(paths.hparams_path(run_dir).read_text())
    assert run.data.params["lr"] == str(hparams["lr"])
    assert run.data.params["target"] == "0.35"
    assert set(hparams) <= set(run.data.params)
    history = client.get_metric_history(run_id, "expected_density")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert len(client.get_metric_history(run_id, "multiplier/model")) == 4
    assert run.data.metrics["wall_seconds"] == pytest.approx(0.2)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"summary.json", "metrics.csv", "hparams.json", "dynamics.png"}
    record = json.loads(paths.mlflow_run_path(run_dir).read_text())
    assert record["run_id"] == run_id and record["experiment"] == "test"


def test_mirroring_again_replaces_the_run_instead_of_duplicating_it(tmp_path, store):
    first = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense", seed=0)
    second = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="cnn", method="dense", seed=0)
    ids = [tracking.mirror_run(run, tracking_uri=store, experiment="test") for run in (first, second, first, first)]
    assert ids[0] != ids[2] != ids[3]
    runs = all_runs(store)  # deleted runs included: the old ones are purged, not just hidden
    assert sorted(r.data.tags["run_key"] for r in runs) == [
        str(run.relative_to(tmp_path / "runs")) for run in (second, first)
    ]
    assert {r.info.run_id for r in runs} == {ids[1], ids[3]}
    artifact_dirs = list((Path(store.removeprefix("sqlite:///")).parent / "artifacts" / "test").iterdir())
    assert sorted(d.name for d in artifact_dirs) == sorted([ids[1], ids[3]])


def test_a_broken_tracking_server_only_warns_and_keeps_the_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run_dir = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert tracking.mirror_run(run_dir, tracking_uri="http://127.0.0.1:9", experiment="test") is None
    assert "warning: could not mirror" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != paths.DYNAMICS_PLOT}
    assert after == before
    assert not paths.mlflow_run_path(run_dir).exists()


def test_database_is_locked_is_retried(monkeypatch):
    monkeypatch.setattr(store_module.time, "sleep", lambda seconds: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking.with_retries(flaky, what="test") == "ok"
    assert len(calls) == 3
    with pytest.raises(ValueError):
        tracking.with_retries(lambda: (_ for _ in ()).throw(ValueError("other")), what="test")


def test_init_cli_writes_the_env_file_and_tolerates_mlflow_off(tmp_path, store):
    env = tmp_path / "tracking.env"
    uri = store
    assert tracking.main_init(["--tracking-uri", uri, "--experiment", "my exp", "--shell-env", str(env)]) == 0
    assert f"MLFLOW_URI={uri}" in env.read_text()
    assert "MLFLOW_EXPERIMENT='my exp'" in env.read_text()
    assert tracking.main_init(["--tracking-uri", "", "--shell-env", str(env)]) == 0
    assert "MLFLOW_URI=''" in env.read_text()


def test_track_cli_backfills_every_run_below_a_root(tmp_path, store):
    for seed in (0, 1):
        write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense", seed=seed)
    assert tracking.main_track([str(tmp_path / "runs"), "--tracking-uri", store, "--experiment", "test"]) == 0
    assert len(active_runs(store)) == 2


def test_track_missing_copies_only_absent_runs_into_another_experiment_and_leaves_their_directories(
    tmp_path, store, capsys
):
    trained = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense", seed=0)
    tracking.mirror_run(trained, tracking_uri=store, experiment="test")  # the grid that trained it
    files = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(trained.iterdir())}
    backfill = [str(tmp_path / "runs"), "--missing", "--tracking-uri", store, "--experiment", "other"]
    assert tracking.main_track(backfill) == 0
    assert [r.data.tags["run_key"] for r in active_runs(store, "other")] == [
        json.loads(paths.summary_path(trained).read_text())["run_key"]
    ]
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(trained.iterdir())} == files
    assert tracking.read_record(trained)["experiment"] == "test"  # still names the experiment that trained it
    assert tracking.main_track(backfill) == 0  # present now: not copied again
    assert "mirrored 0 of 0 missing runs" in capsys.readouterr().out and len(all_runs(store, "other")) == 1
    assert tracking.main_track([str(tmp_path / "runs"), "--missing", "--tracking-uri=", "--experiment", "x"]) == 0
    assert "MLflow is off" in capsys.readouterr().out


def test_init_cli_with_an_unreachable_server_warns_and_still_writes_the_env_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    env = tmp_path / "tracking.env"
    assert tracking.main_init(["--tracking-uri", "http://127.0.0.1:9", "--shell-env", str(env)]) == 0
    assert "MLFLOW_URI=http://127.0.0.1:9" in env.read_text()
    assert "not ready" in capsys.readouterr().err


def test_experiments_are_created_or_tagged_as_model_development_so_the_ui_opens_the_runs(tmp_path, store):
    client = mlflow.tracking.MlflowClient(store)
    assert tracking.main_init(["--tracking-uri", store, "--experiment", "fresh"]) == 0
    assert client.get_experiment_by_name("fresh").tags["mlflow.experimentKind"] == "custom_model_development"
    # e.g. by an older ctrlsparse: no kind (artifacts under tmp_path: MLflow's default is ./mlruns in the cwd)
    old = client.create_experiment("created elsewhere", artifact_location=(tmp_path / "elsewhere").as_uri())
    assert "mlflow.experimentKind" not in client.get_experiment(old).tags
    run_dir = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense")
    assert tracking.mirror_run(run_dir, tracking_uri=store, experiment="created elsewhere") is not None
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(old, "mlflow.experimentKind", "genai_development")  # a kind someone chose stays
    tracking.init_store(store, "created elsewhere")
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "genai_development"


def test_a_mirrored_run_spans_the_training_not_the_mirror(tmp_path, store):
    run_dir = write_synthetic_run(tmp_path / "runs", epochs=4, dataset="digits", arch="mlp", method="dense")
    summary = json.loads(paths.summary_path(run_dir).read_text())
    paths.summary_path(run_dir).write_text(json.dumps({**summary, "wall_seconds": 754.25}))
    trained = 1_700_000_000.5  # the last epoch's checkpoint wrote metrics.csv then
    os.utime(paths.metrics_path(run_dir), (trained, trained))
    info = (
        mlflow.tracking.MlflowClient(store)
        .get_run(tracking.mirror_run(run_dir, tracking_uri=store, experiment="test"))
        .info
    )
    assert (info.start_time, info.end_time) == (1_700_000_000_500 - 754_250, 1_700_000_000_500)


def test_the_data_set_is_the_runs_input_once_however_often_it_is_mirrored(tmp_path, store):
    run_dir = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense")
    written = json.loads(paths.dataset_path(run_dir).read_text())
    paths.summary_path(run_dir).rename(tmp_path / "summary.json")  # still training: the run is opened ...
    run_id = tracking.open_run(run_dir, tracking_uri=store, experiment="test")
    (tmp_path / "summary.json").rename(paths.summary_path(run_dir))
    assert tracking.mirror_run(run_dir, tracking_uri=store, experiment="test") == run_id  # ... and ended
    (entry,) = mlflow.tracking.MlflowClient(store).get_run(run_id).inputs.dataset_inputs
    dataset = entry.dataset
    assert (dataset.name, dataset.digest, dataset.source_type) == ("digits", written["digest"], "local")
    assert json.loads(dataset.source) == {"uri": "synthetic"}
    assert json.loads(dataset.profile) == {"train_size": 1437, "test_size": 360, "num_classes": 10}
    features = json.loads(json.loads(dataset.schema)["mlflow_tensorspec"]["features"])
    assert features == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1, 8, 8]}, "name": "inputs"}
    ]
    assert [(tag.key, tag.value) for tag in entry.tags] == [("mlflow.data.context", "train")]


def test_an_image_folder_runs_skipped_files_reach_mlflow(tmp_path, store):
    """--skip-bad-images: the count is a metric (from summary.json) and part of the data set's profile."""
    run_dir = write_synthetic_run(tmp_path / "runs", dataset="imagefolder", arch="mlp", method="dense")
    for path in (paths.dataset_path(run_dir), paths.summary_path(run_dir)):  # what a skipping run writes
        path.write_text(json.dumps({**json.loads(path.read_text()), "skipped_images": 3}))
    run = mlflow.tracking.MlflowClient(store).get_run(tracking.mirror_run(run_dir, tracking_uri=store, experiment="t"))
    assert run.data.metrics["skipped_images"] == 3
    assert json.loads(run.inputs.dataset_inputs[0].dataset.profile)["skipped_images"] == 3


def test_ui_links_open_each_experiments_runs_table(tmp_path, store, capsys):
    from ctrlsparse.tracking import ui

    run_dir = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense")
    tracking.mirror_run(run_dir, tracking_uri=store, experiment="test")
    experiment_id = mlflow.tracking.MlflowClient(store).get_experiment_by_name("test").experiment_id
    assert ui.main(["--tracking-uri", store, "--url", "http://127.0.0.1:5000/"]) == 0
    link = f"http://127.0.0.1:5000/#/experiments/{experiment_id}?workflowType=machine_learning"
    assert capsys.readouterr().out == f"runs of test: {link}\n"  # experiments without runs get no link
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    assert ui.main(["--tracking-uri", missing, "--url", "http://127.0.0.1:5000"]) == 0
    assert "no MLflow store at" in capsys.readouterr().out and not (tmp_path / "nowhere.db").exists()


@pytest.mark.parametrize(
    ("flags", "env_lines", "expected"),
    [
        ([], None, ("", "ctrlsparse")),  # train/purge: not tracked unless told
        ([], "MLFLOW_URI=sqlite:///env.db\nMLFLOW_EXPERIMENT=from-env\n", ("sqlite:///env.db", "from-env")),
        (["--tracking-uri", "sqlite:///flag.db"], "MLFLOW_URI=sqlite:///env.db\n", ("sqlite:///flag.db", "ctrlsparse")),
        (["--experiment", "flag"], "MLFLOW_URI=''\nMLFLOW_EXPERIMENT=from-env\n", ("", "flag")),  # env: off
        (["--mlflow-uri", "sqlite:///alias.db", "--mlflow-experiment", "alias"], None, ("sqlite:///alias.db", "alias")),
    ],
)
def test_every_cli_resolves_its_tracking_target_one_way(tmp_path, flags, env_lines, expected):
    import argparse

    from ctrlsparse.tracking.target import add_tracking_flags, off, tracking_target

    parser = argparse.ArgumentParser()
    add_tracking_flags(parser, default="off")
    if env_lines is not None:
        (tmp_path / "tracking.env").write_text(env_lines)
        flags = [*flags, "--tracking-env", str(tmp_path / "tracking.env")]
    target = tracking_target(parser.parse_args(flags), off)
    assert (target.uri, target.experiment) == expected
    assert "--mlflow-uri" not in parser.format_help()  # the old names are hidden aliases

"""Safety: a checkpoint whose pickle would run code is refused (torch.load(weights_only=True)), the train CLI
says so in one line, nothing in src/ or workflow/ unpickles, evals or sources files, and `make ui` binds to
127.0.0.1 unless told otherwise."""

from __future__ import annotations

import re
import subprocess

import torch
from reliability import ROOT

from ctrlsparse.plumbing import paths
from ctrlsparse.training import cli


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling would create the marker file


def test_a_checkpoint_that_would_run_code_is_refused_with_one_line(tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    torch.save({"epoch": 1, "model": RunsCode(marker)}, paths.checkpoint_path(out))
    assert cli.main(["--epochs", "2", "--threads", "1", "--quiet", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"ctrlsparse train: error: {paths.checkpoint_path(out)} is not a weights-only checkpoint")
    assert line.endswith("delete it if you want the run to start afresh")
    assert not marker.exists() and not paths.summary_path(out).exists()


UNSAFE = re.compile(
    r"pickle\.loads?\(|yaml\.load\(|yaml\.unsafe_load|(?<![.\w])eval\(|(?<![.\w])exec\("
    r"|weights_only\s*=\s*False|[\"']source |source \{"
)


def test_no_code_loads_pickles_evals_or_sources_files():
    files = [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("workflow").rglob("*.py")]
    files += [*ROOT.joinpath("workflow").rglob("*.smk"), ROOT / "Snakefile"]
    hits = [f"{f.relative_to(ROOT)}: {line.strip()}" for f in files for line in f.read_text().splitlines()]
    assert [hit for hit in hits if UNSAFE.search(hit.split(": ", 1)[1])] == []
    loads = [hit for hit in hits if "torch.load(" in hit]
    assert loads and all("weights_only=True" in hit for hit in loads), loads


def make_ui(*overrides: str) -> str:
    result = subprocess.run(["make", "-n", "ui", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mlflow_ui_binds_to_localhost_unless_told_otherwise():
    assert "--host 127.0.0.1 " in make_ui()
    assert "--host 0.0.0.0 " in make_ui("UI_HOST=0.0.0.0")

"""The demo end to end: wall time of the default grid's workflow and how much of it is training.

    .venv/bin/python benchmarks/demo_time.py                      # the default grid into /tmp/demo_time, all cores
    .venv/bin/python benchmarks/demo_time.py --config job_server=False   # the same without the warm job server

Runs ``snakemake --profile profiles/local`` (every rule: training, MLflow, purge, tables, plots, PDF report) into
a fresh results directory, then ``snakemake --report``, timing both; then reads what each train job spent:
training (the run's own ``wall_seconds``: epochs and evaluations) against the job's wall time (Snakemake's
``benchmark:`` file: start-up, data, model, MLflow, checkpoint). Issue 8's goals: the whole demo <= 10 minutes
after install, and Snakemake + process start-up <= 25% of it. Printed: the wall times, the training share of the
wall time x cores (what the cores spent training), and each train job's share outside training.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as handle:
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=handle)
    return time.perf_counter() - start


def rule_seconds(log: Path) -> dict[str, float]:
    """Seconds the jobs of each rule held a core, from Snakemake's log (job start to 'Finished jobid', 1 s steps)."""
    parts = re.split(r"\n\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]\n", log.read_text())
    started: dict[str, tuple[str, datetime.datetime]] = {}
    seconds: dict[str, float] = {}
    for stamp, body in zip(parts[1::2], parts[2::2], strict=True):
        when = datetime.datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y")
        rule = re.match(r"localrule (\w+):", body)
        if rule:
            started[re.search(r"jobid: (\d+)", body).group(1)] = (rule.group(1), when)
        for job in re.findall(r"Finished jobid: (\d+)", body):
            if job in started:
                name, begun = started.pop(job)
                seconds[name] = seconds.get(name, 0.0) + (when - begun).total_seconds()
    return seconds


def job_seconds(results: Path) -> dict[str, float]:
    """Wall seconds of each train job, from Snakemake's benchmark files (run key -> seconds)."""
    seconds = {}
    for path in (results / "benchmarks" / "train").rglob("*.tsv"):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        seconds[str(path.relative_to(results / "benchmarks" / "train"))[: -len(".tsv")]] = float(row["s"])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("/tmp/demo_time"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--config", nargs="*", default=[], help="extra KEY=VALUE for snakemake --config")
    args = parser.parse_args()
    shutil.rmtree(args.results, ignore_errors=True)
    snakemake = str(Path(sys.executable).parent / "snakemake")
    config = ["--config", f"results={args.results}", *args.config]
    log = args.results.parent / f"{args.results.name}.snakemake.log"
    workflow = timed([snakemake, "--profile", "profiles/local", "--cores", str(args.cores), *config], log)
    report = timed([snakemake, "--report", str(args.results / "report.html"), *config], log.with_suffix(".report.log"))
    jobs = job_seconds(args.results)
    training = {}
    for key in jobs:
        summary = json.loads((args.results / "runs" / key / "summary.json").read_text())
        training[key] = summary["wall_seconds"]
    wall = workflow + report
    busy = sum(training.values())
    outside = sum(jobs.values()) - busy
    print(f"demo wall time: {wall:.0f} s = workflow {workflow:.0f} s + HTML report {report:.0f} s  (goal <= 600 s)")
    print(
        f"{len(jobs)} train jobs on {args.cores} cores: training {busy:.0f} s, the jobs' time outside training "
        f"{outside:.0f} s ({outside / len(jobs):.1f} s a job)"
    )
    print(
        f"training / (wall x cores) = {busy / (wall * args.cores):.2f}; everything else (Snakemake, start-up, MLflow, "
        f"idle cores, other rules) = {1 - busy / (wall * args.cores):.2f}  (goal: Snakemake + start-up <= 0.25)"
    )
    print(f"train jobs: training {busy / sum(jobs.values()):.2f} of their wall time")
    rules = rule_seconds(log)
    idle = workflow * args.cores - sum(rules.values())
    shares = ", ".join(f"{name} {value / (workflow * args.cores):.3f}" for name, value in sorted(rules.items()))
    print(
        f"core time by rule (share of workflow wall x cores): {shares}; no job running (Snakemake between jobs, "
        f"dependencies, the tail): {idle / (workflow * args.cores):.3f}"
    )


if __name__ == "__main__":
    main()

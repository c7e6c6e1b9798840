"""``ctrlsparse train``: flags are derived from :class:`~ctrlsparse.hparams.HParams`, never written twice."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, NoReturn

from ctrlsparse.hparams import DATASET_DEFAULTS, HParamError, HParams


def _number_list(cast: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(cast(item) for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {cast.__name__}s, got {text!r}") from None

    return parse


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class OneLineParser(argparse.ArgumentParser):
    """Bad input gets one line that names the flag and says where to look, not a screen of usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ctrlsparse train",
        description="Train one run with L0 gates under a density constraint (or a baseline) into --out.",
        epilog=f"Unset flags take the dataset's defaults ({', '.join(DATASET_DEFAULTS)}), then the field defaults.",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run directory (created; resumed if it has a checkpoint)"
    )
    parser.add_argument("--mlflow-uri", help="mirror the finished run to this MLflow tracking URI")
    parser.add_argument("--mlflow-experiment", default="ctrlsparse", help="MLflow experiment name")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    group = parser.add_argument_group("hyperparameters")
    for spec in fields(HParams):
        default = spec.default if spec.default is not MISSING else None
        text = f"{spec.metadata['help']} (default: {default})"
        if spec.type == "bool":
            group.add_argument(flag(spec.name), action=argparse.BooleanOptionalAction, default=None, help=text)
        elif spec.type.startswith("tuple"):
            cast = float if "float" in spec.type else int
            group.add_argument(flag(spec.name), type=_number_list(cast), default=None, metavar="X[,X...]", help=text)
        else:
            group.add_argument(flag(spec.name), type={"int": int, "float": float}.get(spec.type, str), help=text)
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {spec.name: getattr(args, spec.name) for spec in fields(HParams)}
    try:
        hparams = HParams.resolve(**given)
    except HParamError as error:
        parser.error(f"{flag(error.key)}: {error.message}")
    from ctrlsparse.training.loop import DivergenceError, print_progress, train  # torch only for valid flags

    try:
        summary = train(hparams, args.out, on_epoch=None if args.quiet else print_progress)
    except HParamError as error:
        parser.error(f"{flag(error.key)}: {error.message}")
    except DivergenceError as error:
        print(f"ctrlsparse train: error: {error}", file=sys.stderr)
        return 3
    if args.mlflow_uri:
        _mirror(args.out, args.mlflow_uri, args.mlflow_experiment)
    print(
        f"{summary['run_key']}: test accuracy {100 * summary['test_accuracy']:.2f}%, expected density "
        f"{summary['expected_density']:.4f}, eval density {summary['eval_density']:.4f}, {summary['wall_seconds']:.1f}s",
        file=sys.stderr,
    )
    return 0


def _mirror(out: Path, uri: str, experiment: str) -> None:
    """Files first, MLflow second: a tracking failure is a warning, never a lost result."""
    try:
        from ctrlsparse.tracking import mirror_run

        mirror_run(out, tracking_uri=uri, experiment=experiment)
    except Exception as error:  # noqa: BLE001 - any tracking failure must leave the run's files standing
        warnings.warn(f"MLflow mirror of {out} to {uri} failed ({error}); the run's files are kept", stacklevel=1)

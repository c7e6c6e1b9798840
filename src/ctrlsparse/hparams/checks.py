"""The checks every :class:`~ctrlsparse.hparams.HParams` passes when it is made: names against their
registries, choices, ranges, the budget's form; each failure is one :class:`~ctrlsparse.errors.HParamError`
that names the field and says what to give instead."""

from __future__ import annotations

from typing import Any

from ctrlsparse.constraint_kinds import BUDGET_KINDS, DENSITY_KINDS
from ctrlsparse.errors import HParamError, UnknownNameError
from ctrlsparse.hparams.text import format_number
from ctrlsparse.registry import ARCHS, DATASETS, METHODS

TAG_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,=+-")
SCOPES = (*DENSITY_KINDS, "none")  # a density constraint of the kind of that name, or none (budgets alone)
OPTIMIZERS = ("adam", "sgd")
DUAL_OPTIMIZERS = ("sgd", "nupi")
CONSTRAINTS = ("le", "eq")
FORMULATIONS = ("lagrangian", "augmented_lagrangian")  # cooper's Lagrangian and AugmentedLagrangian
VIOLATIONS = ("absolute", "relative")
GATINGS = ("structured", "unstructured")


def check(hparams: Any) -> dict[str, float]:
    """Raise :class:`HParamError` for the first bad value of ``hparams`` (an HParams being made); return its
    budget parsed (:func:`parse_budget`), which ``HParams`` keeps."""
    for key, registry in (("dataset", DATASETS), ("arch", ARCHS), ("method", METHODS)):
        try:
            registry.check(getattr(hparams, key))
        except UnknownNameError as error:
            raise HParamError(key, str(error)) from None
    _choice(hparams, "target_scope", SCOPES)
    _choice(hparams, "optimizer", OPTIMIZERS)
    _choice(hparams, "dual_optimizer", DUAL_OPTIMIZERS)
    _choice(hparams, "constraint", CONSTRAINTS)
    _choice(hparams, "formulation", FORMULATIONS)
    _choice(hparams, "violation", VIOLATIONS)
    _choice(hparams, "gating", GATINGS)
    budgets = _check_budget(hparams)
    if not hparams.target:
        raise HParamError("target", "no value given; give a density fraction such as 0.5")
    for value in hparams.target:
        if not 0.0 < value <= 1.0:
            raise HParamError("target", f"{value:g} is outside (0, 1]; give a density fraction such as 0.5")
    if len(hparams.target) > 1 and hparams.target_scope != "layer":
        raise HParamError("target", "a list of targets needs target_scope 'layer' (one target per gated layer)")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(hparams, key) < 1:
            raise HParamError(key, f"{getattr(hparams, key)} must be a positive integer")
    for key in ("lr", "gates_lr", "dual_lr", "penalty_coefficient"):
        if not getattr(hparams, key) > 0:
            raise HParamError(key, f"{getattr(hparams, key)} must be > 0")
    for key in (
        "penalty",
        "weight_decay",
        "momentum",
        "threads",
        "checkpoint_seconds",
        "reference_steps",
        "feasibility_tolerance",
        "gates_polarization",
    ):
        if getattr(hparams, key) < 0:
            raise HParamError(key, f"{getattr(hparams, key)} must be >= 0")
    if hparams.data_workers < -1:
        raise HParamError("data_workers", f"{hparams.data_workers} must be >= -1 (-1: choose from the threads)")
    if not set(hparams.tag) <= TAG_CHARACTERS:
        raise HParamError("tag", f"{hparams.tag!r} may hold only letters, digits and _ . , = + -")
    if not 0.0 < hparams.alpha_min < 1.0:
        raise HParamError("alpha_min", f"{hparams.alpha_min} must lie in (0, 1), e.g. 0.01 (the paper)")
    if not 0.0 <= hparams.gates_beta2 < 1.0:
        raise HParamError("gates_beta2", f"{hparams.gates_beta2} must lie in [0, 1), e.g. 0.999 (torch's Adam)")
    if not 0.0 < hparams.droprate_init < 1.0:
        raise HParamError("droprate_init", f"{hparams.droprate_init} must lie in (0, 1)")
    if hparams.recalibrate_norms < 0:
        raise HParamError("recalibrate_norms", f"{hparams.recalibrate_norms} must be 0 (off) or a number of batches")
    if hparams.round_channels < 1:
        raise HParamError("round_channels", f"{hparams.round_channels} must be a positive integer (1: no rounding)")
    if hparams.round_channels > 1 and hparams.gating != "structured":
        raise HParamError("round_channels", "rounds channel counts: it needs --gating structured")
    if not 0.0 <= hparams.fix_gates < 1.0:
        raise HParamError("fix_gates", f"{hparams.fix_gates} must lie in [0, 1) (a fraction of the epochs)")
    if hparams.target_anneal + hparams.fix_gates > 1.0:
        raise HParamError("fix_gates", "target_anneal + fix_gates must be <= 1: the gates are fixed after the anneal")
    if not 0.0 <= hparams.target_anneal <= 1.0:
        raise HParamError("target_anneal", f"{hparams.target_anneal} must lie in [0, 1] (a fraction of the epochs)")
    if not 0.0 <= hparams.distill <= 1.0 or hparams.distill_temperature <= 0:
        key = "distill" if not 0.0 <= hparams.distill <= 1.0 else "distill_temperature"
        raise HParamError(key, f"{getattr(hparams, key)} must lie in [0, 1] (distill) / be > 0 (temperature)")
    if hparams.distill and not hparams.pretrained:
        raise HParamError("distill", "distillation needs the dense run to learn from: give --pretrained RUN_DIR")
    if hparams.pretrained and not METHODS.spec(hparams.method).gates:
        raise HParamError(
            "pretrained", f"a {hparams.method} run trains from scratch; give it to a constrained/penalized run"
        )
    _check_search(hparams)
    _check_external(hparams)
    return budgets


def _check_search(hparams: Any) -> None:
    """The search's interval and steps (method search only); a search aims one density (the model's)."""
    low, high = (list(hparams.search_range) + [0.0, 0.0])[:2]
    if len(hparams.search_range) != 2 or not low < high:
        raise HParamError("search_range", f"{hparams.search_range} must be two log10 lambdas, low < high, e.g. -3,0")
    if hparams.search_iterations < 0:
        raise HParamError("search_iterations", f"{hparams.search_iterations} must be >= 0")
    if METHODS.spec(hparams.method).runs_of:
        if len(hparams.target) > 1:
            raise HParamError("target", "a search aims the model's density with one lambda: give one target")
        return
    for key in ("search_range", "search_iterations"):  # a run of another method would carry them in its key
        if getattr(hparams, key) != type(hparams).__dataclass_fields__[key].default:
            searches = " or ".join(METHODS.select(lambda spec: spec.runs_of))
            raise HParamError(key, f"applies to method {searches} only, not {hparams.method!r}; leave it unset")


def _check_external(hparams: Any) -> None:
    """The fields of external archs (torchvision:, module:) and of the imagefolder data set."""
    external = hparams.arch.startswith(("torchvision:", "module:"))
    for key, unset in (("arch_weights", ""), ("arch_input_size", 0)):
        if getattr(hparams, key) != unset and not external:
            raise HParamError(key, f"applies to torchvision:/module: archs only, not {hparams.arch!r}; leave it unset")
    if hparams.arch_input_size < 0 or hparams.image_size < 1:
        key = "arch_input_size" if hparams.arch_input_size < 0 else "image_size"
        raise HParamError(key, f"{getattr(hparams, key)} must be a positive number of pixels")
    for key in ("image_mean", "image_std"):
        if len(getattr(hparams, key)) != 3:
            raise HParamError(key, f"{getattr(hparams, key)} must hold 3 numbers (R,G,B)")
    if min(hparams.image_std) <= 0:
        raise HParamError("image_std", f"{hparams.image_std} must be > 0")


def parse_budget(text: str) -> dict[str, float]:
    """A budget ``kind=fraction[,kind=fraction]`` as ``{kind: fraction}``, kinds in :data:`BUDGET_KINDS` order
    (the one parser of budgets: :class:`HParams` keeps what it returns, the report reads run tables with it);
    :class:`HParamError` naming the bad part."""
    values: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        kind, sign, text = part.partition("=")
        try:
            value = float(text) if sign else None
        except ValueError:
            value = None
        if kind not in BUDGET_KINDS or value is None or kind in values:
            raise HParamError(
                "budget",
                f"{part!r} is not kind=fraction with one of: {', '.join(BUDGET_KINDS)} (once each), e.g. macs=0.3",
            )
        if not 0.0 < value <= 1.0:
            raise HParamError("budget", f"{part!r}: the fraction must lie in (0, 1], e.g. macs=0.3")
        values[kind] = value
    return {kind: values[kind] for kind in BUDGET_KINDS if kind in values}


def budget_text(budgets: dict[str, float]) -> str:
    """A parsed budget written one way (``macs=0.3,params=0.25``: kinds in order, shortest numbers)."""
    return ",".join(f"{kind}={format_number(value)}" for kind, value in budgets.items())


def _check_budget(hparams: Any) -> dict[str, float]:
    """The budget parsed, and allowed for the run's method, gating and scope."""
    values = parse_budget(hparams.budget)
    if values and not METHODS.spec(hparams.method).constraints:
        constrained = " or ".join(METHODS.select(lambda spec: spec.constraints))
        raise HParamError("budget", f"budgets are constraints: give method {constrained}, not {hparams.method!r}")
    if values and hparams.gating != "structured":
        raise HParamError("budget", "MAC/parameter/latency budgets need structured gates (--gating structured)")
    if hparams.latency_batch < 0:
        raise HParamError("latency_batch", f"{hparams.latency_batch} must be a batch size, or 0 (the training batch)")
    if hparams.latency_batch and "latency" not in values:
        raise HParamError(
            "latency_batch", f"{hparams.latency_batch}: the batch of a latency budget, and there is none; add "
            "--budget latency=B or leave it 0",
        )  # fmt: skip
    if hparams.target_scope == "none" and not values:
        raise HParamError("target_scope", "'none' leaves no constraint: give a --budget such as macs=0.3")
    return values


def _choice(hparams: Any, key: str, choices: tuple[str, ...]) -> None:
    if getattr(hparams, key) not in choices:
        raise HParamError(key, f"unknown value {getattr(hparams, key)!r}; choose one of: {', '.join(choices)}")

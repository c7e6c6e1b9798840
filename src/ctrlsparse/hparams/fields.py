"""The :class:`HParams` type: every hyperparameter of one run, with its default and help, how presets and given
values resolve into one, and the variant and level that name its setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from ctrlsparse.errors import HParamError
from ctrlsparse.hparams.checks import budget_text, check
from ctrlsparse.hparams.defaults import case_defaults
from ctrlsparse.hparams.naming import SettingName
from ctrlsparse.hparams.text import coerce


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


# Fields that change how a run executes, never what it computes (a run may resume under other values); every
# other field is part of the run's identity (:mod:`ctrlsparse.identity`). skip_bad_images: which files of an image
# folder it trains on is the folder's state, like data_root: a clean folder trains the same with it or without, and
# a folder with bad files trains only with it (dataset.json counts the skipped).
EXECUTION = (
    "device", "threads", "checkpoint_seconds", "data_root", "download", "data_workers", "pretrained", "channels_last",
    "compile", "feasibility_tolerance", "require_feasible", "skip_bad_images",
)  # fmt: skip


@dataclass(frozen=True)
class HParams(SettingName):
    """Every hyperparameter of one run, typed, with a default and a help string (``ctrlsparse train`` derives its
    flags from them); checked when made (:mod:`ctrlsparse.hparams.checks`), immutable after.

    Build one with :meth:`resolve` (presets under the values given) or :meth:`from_dict` (a saved
    ``hparams.json``). The fields in :data:`EXECUTION` change how a run executes; every other field is part of
    the run's identity (:func:`ctrlsparse.identity.run_key`).
    """

    # --- what is trained (the grid axes) ---
    dataset: str = _help("data set name (registry: ctrlsparse.registry.DATASETS)", default="digits")
    arch: str = _help(
        "architecture name (registry: ctrlsparse.registry.ARCHS), or torchvision:<builder> (e.g. "
        "torchvision:resnet18), or module:<package.module>:<function> (your builder taking num_classes)",
        default="mlp",
    )
    arch_weights: str = _help(
        "torchvision:/module: archs: a local state dict file to start from (empty: random weights); part of the "
        "run's identity. A classifier of another number of classes is trained from scratch",
        default="",
    )
    arch_input_size: int = _help(
        "torchvision:/module: archs: resize input images to this side inside the model (bilinear; 0: as they come)",
        default=0,
    )
    method: str = _help(
        "constrained | penalized | dense | magnitude | search (penalized runs bisected over log10 lambda)",
        default="constrained",
    )
    target: tuple[float, ...] = _help(
        "density target(s) in (0, 1]: one number, or one per gated layer with --target-scope layer",
        default=(0.5,),
    )
    target_scope: str = _help(
        "model: one constraint on the whole model; layer: one per gated layer; none: no density constraint, only "
        "the --budget ones",
        default="model",
    )
    budget: str = _help(
        "expected MAC, parameter and/or latency budgets as fractions of the dense model's, e.g. macs=0.3 or "
        "macs=0.3,latency=0.5 (constrained runs, structured gates): one more constraint each, beside the density "
        "target (or alone with --target-scope none), with its own multiplier and the same restarts and eq/le",
        default="",
    )
    latency_batch: int = _help(
        "the batch size a latency budget is stated at: its latency table, the run's calibrations and the purge's "
        "verdict time the model at it (1: deployed one input at a time); 0: --batch-size",
        default=0,
    )
    constraint: str = _help(
        "eq (the default): expected density == target, multipliers of either sign (a restart resets one whose sign "
        "opposes its violation); le: expected density <= target (the paper; a layer may end sparser than its target "
        "when the loss alone closes it further, and gates pushed past the target never reopen)",
        default="eq",
    )
    violation: str = _help(
        "what the multipliers integrate: relative (the default), (g - target) / target, so that multipliers grow "
        "as fast toward a low target as toward a high one (an excess of 0.09 counts 0.9 at a 0.1 target, 0.1 at 0.9); "
        "absolute: g - target (the paper)",
        default="relative",
    )
    penalty: float = _help("lambda of the penalized method (loss + lambda * density)", default=1e-3)
    search_range: tuple[float, ...] = _help(
        "search: the log10 lambda interval bisected (the paper's)", default=(-3.0, 0.0)
    )
    search_iterations: int = _help(
        "search: bisection steps after the two ends (the paper's 6); each step is a penalized run", default=6
    )
    seed: int = _help("seed for weights, data order and gate noise", default=0)
    pretrained: str = _help(
        "directory of a finished dense run: magnitude prunes it; a constrained or penalized run starts from its "
        "weights (a warm start)",
        default="",
    )
    tag: str = _help(
        "label appended to the variant in the run key (variant+tag), telling apart runs of one grid point with "
        "other hyperparameters; the workflow computes it from a sweep's hparams, e.g. gates_lr=0.1",
        default="",
    )
    # --- gates ---
    gating: str = _help(
        "structured (one gate per neuron/channel) | unstructured (one per weight)", default="structured"
    )
    droprate_init: float = _help("initial drop rate d of the gates: log alpha ~ N(log((1-d)/d), 0.01^2)", default=0.5)
    alpha_min: float = _help(
        "lower clamp of alpha = exp(log alpha) after every step (1e-4: a closed gate counts P(active) = 0.0005 of "
        "its group's density; the paper's 0.01: 0.047, which keeps small layers above low targets)",
        default=1e-4,
    )
    l2_detach_gates: bool = _help("detach P(gate=0) in the expected-L2 weight decay term", default=True)
    keep_a_gate_open: bool = _help(
        "every gate set (layer, gate group) keeps its largest gate at log alpha >= 0 (open at eval), so a target or "
        "budget is never met by cutting a layer away (default in budget runs and warm starts)",
        default=False,
    )
    target_anneal: float = _help(
        "fraction of the epochs over which the targets and budgets move from 1 (the dense model) to their values "
        "(cubic, as gradual pruning; default 0.3 in warm starts); 0: held from the first step (the paper)",
        default=0.0,
    )
    fix_gates: float = _help(
        "fraction of the epochs at the end that train the weights of the eval model alone: every gate fixed at "
        "its eval value (what the purge keeps), log alpha frozen (default 0.3 in warm starts); 0: never fixed",
        default=0.0,
    )
    gate_after_norm: bool = _help(
        "a gated conv followed by a BatchNorm: the gate scales the normalised channel (z x BN(conv x), the filter "
        "only masked) instead of the filter (BN(conv(z x W) x)), whose scale the BatchNorm divides away; the gates "
        "then act on the function (default in warm starts)",
        default=False,
    )
    round_channels: int = _help("eval model, purge: every gate set keeps a multiple of N channels; 1: off", default=1)
    recalibrate_norms: int = _help(
        "before every evaluation, the BatchNorm statistics re-estimated over N training batches with the eval gates "
        "(what the eval and the purge use; training saw random gate scales); the weights and gates untouched; 0: off",
        default=0,
    )
    distill: float = _help(
        "warm starts: weight w of distilling the dense run (--pretrained) into the gated model: loss = (1 - w) CE + "
        "w T^2 KL(teacher || student) at temperature T (--distill-temperature); 0: off",
        default=0.0,
    )
    distill_temperature: float = _help("temperature T of the distillation (--distill)", default=4.0)
    # --- primal optimisation ---
    epochs: int = _help("training epochs", default=100)
    batch_size: int = _help("training minibatch size", default=128)
    optimizer: str = _help("primal optimizer: adam | sgd (momentum, not Nesterov)", default="adam")
    lr: float = _help("learning rate of weights, biases and BatchNorm", default=1e-3)
    momentum: float = _help("SGD momentum", default=0.9)
    weight_decay: float = _help(
        "expected-L2 weight decay coefficient (added to the loss, not the optimizer)", default=0.0
    )
    lr_milestones: tuple[int, ...] = _help("epochs at which the weights' lr is multiplied by lr_gamma", default=())
    lr_gamma: float = _help("multiplicative lr decay at each milestone (weights only)", default=0.1)
    gates_lr: float = _help(
        "learning rate of the gates (log alpha) at a run of reference_steps steps; never decayed. With Adam a gate "
        "moves ~gates_lr per step, so how far it can travel in a run is gates_lr x steps",
        default=0.1,
    )
    gates_beta2: float = _help(
        "Adam beta2 of the gates (optimizer adam only); weights keep torch's 0.999. The second-moment memory is "
        "1 / (1 - beta2) steps (default 0.95: 20): a gate whose gradient scale drops (its input died) then follows "
        "the multiplier again instead of freezing half open",
        default=0.95,
    )
    gates_polarization: float = _help(
        "constrained runs add this x mean P(active)(1 - P(active)) to the loss: gates the loss is indifferent to "
        "end closed or open rather than half open (whose eval gate counts them fully); 0: the paper",
        default=0.02,
    )
    # --- dual optimisation ---
    dual_optimizer: str = _help("sgd (the paper) | nupi (cooper's nuPI controller)", default="sgd")
    formulation: str = _help(
        "lagrangian (the paper) | augmented_lagrangian (cooper's AugmentedLagrangian: the Lagrangian plus a "
        "quadratic penalty of the violation, weighted by --penalty-coefficient)",
        default="lagrangian",
    )
    penalty_coefficient: float = _help("augmented_lagrangian: the penalty coefficient c", default=1.0)
    dual_lr: float = _help("learning rate of the Lagrange multipliers at a run of reference_steps steps", default=0.1)
    reference_steps: int = _help(
        "the step budget that gates_lr and dual_lr are given for: a run of S steps multiplies both by "
        "reference_steps / S, so that gates and multipliers travel as far in any budget and the target is met at "
        "the same share of the run (default 1800: digits' 150 epochs; the paper presets: the paper's budget; "
        "0: use both rates as given)",
        default=1800,
    )
    nupi_kp: float = _help("nuPI proportional gain (kp=0, ki=1 is plain SGD)", default=1.0)
    nupi_ki: float = _help("nuPI integral gain", default=1.0)
    dual_restarts: bool = _help(
        "reset a multiplier to 0 whenever its constraint is strictly satisfied (eq: once it crossed the target)",
        default=True,
    )
    amp: bool = _help("bf16 autocast of the forward pass on CUDA (no effect on the CPU)", default=False)
    channels_last: bool = _help(
        "channels-last memory format for the model and its input batches on CUDA (conv nets; no effect on the CPU)",
        default=False,
    )
    compile: bool = _help(
        "torch.compile the training forward pass (the first steps pay the compilation; pays on CUDA)", default=False
    )
    # --- data and execution ---
    data_root: str = _help(
        "directory holding the data sets (empty: $CTRLSPARSE_DATA, else ./data); see ctrlsparse.data.layouts",
        default="",
    )
    download: bool = _help(
        "download the data set into data_root if it is missing (mnist, cifar, tinyimagenet)", default=False
    )
    data_workers: int = _help(
        "DataLoader worker processes per training process (-1: the job's threads per process, minus one)", default=-1
    )
    eval_batch_size: int = _help("evaluation minibatch size", default=1024)
    image_size: int = _help("imagefolder: side of the square images (resize the short side, centre crop)", default=32)
    image_mean: tuple[float, ...] = _help(
        "imagefolder: per-channel (R,G,B) mean of the normalisation, on the [0, 1] scale", default=(0.485, 0.456, 0.406)
    )
    image_std: tuple[float, ...] = _help(
        "imagefolder: per-channel (R,G,B) standard deviation of the normalisation", default=(0.229, 0.224, 0.225)
    )
    skip_bad_images: bool = _help(
        "imagefolder/imagenet: train on the image files that decode, leaving out those that do not (listed in the "
        "run's bad_images.txt, counted in dataset.json and the summary); without it they stop the run before training",
        default=False,
    )
    device: str = _help("auto | cpu | cuda | cuda:N", default="auto")
    threads: int = _help("torch intra-op threads (0: torch's default)", default=0)
    checkpoint_seconds: float = _help(
        "save the checkpoint (and metrics.csv) at the end of the first epoch this many seconds after the last "
        "save (0: every epoch), and always after the last epoch",
        default=30.0,
    )
    feasibility_tolerance: float = _help(
        "a constrained run is feasible when its final expected density is at most this above each target (eq: "
        "within this of it); recorded in summary.json and MLflow, it changes no trained number",
        default=0.01,
    )
    require_feasible: bool = _help(
        "exit 4 when the run ends infeasible (target missed); its files are written and kept either way",
        default=False,
    )

    def __post_init__(self) -> None:
        """Every value checked (:func:`ctrlsparse.hparams.checks.check`); the budget parsed once, kept beside
        its text (written one way)."""
        budgets = check(self)
        object.__setattr__(self, "_budgets", budgets)  # not a field: no part of equality, the dict or the key
        object.__setattr__(self, "budget", budget_text(budgets))

    @property
    def budgets(self) -> dict[str, float]:
        """The budget as ``{kind: fraction of the dense model}``, e.g. ``{"macs": 0.3}`` (parsed when made)."""
        return dict(self._budgets)

    @property
    def latency_budget_batch(self) -> int:
        """The batch a latency budget is stated, modelled and judged at: ``latency_batch``, else ``batch_size``."""
        return self.latency_batch or self.batch_size

    # --- construction ---
    @classmethod
    def resolve(cls, **given: Any) -> HParams:
        """Field defaults < the case's presets (:func:`~ctrlsparse.hparams.defaults.case_defaults`) < ``given``;
        ``None`` values in ``given`` count as not given."""
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise HParamError(
                unknown[0], f"unknown hyperparameter; valid ones: {', '.join(f.name for f in fields(cls))}"
            )
        given = {key: value for key, value in given.items() if value is not None}
        case = {name: given.get(name, getattr(cls, name)) for name in ("dataset", "arch", "method", "target_scope")}
        merged = (
            case_defaults(**case, budget=given.get("budget", cls.budget), pretrained=given.get("pretrained", ""))
            | given
        )
        return cls(**{key: coerce(cls, key, value) for key, value in merged.items()})

    def computation(self) -> dict[str, Any]:
        """Every field that affects the numbers a run produces (all but the execution fields)."""
        return {key: value for key, value in self.to_dict().items() if key not in EXECUTION}

    def to_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HParams:
        return cls(**{key: coerce(cls, key, value) for key, value in values.items()})

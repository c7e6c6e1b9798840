"""The presets a run's hyperparameters start from: per data set, per architecture, for layer-wise runs, budget
runs, gate groups and warm starts (resolved by :meth:`HParams.resolve`, with the method's own defaults from its
spec in :data:`ctrlsparse.registry.METHODS`).

Each table lists only what it changes over the field defaults of :class:`ctrlsparse.hparams.HParams`.
"""

from __future__ import annotations

from typing import Any

from ctrlsparse.registry import method_spec

# Defaults per dataset: the budget and the weights' optimiser. The control knobs (gates_lr, dual_lr,
# gates_beta2, constraint, alpha_min) are the field defaults for every data set but the paper's, which keep the
# paper's exact settings (PAPER_CONTROL and their rates, paper.md §2) at the paper's budget (reference_steps) and
# scale the rates to any other budget (ctrlsparse.training.budget). Why the field defaults, measured by
# benchmarks/control_matrix.py (digits and mnist5k, 600 to 6,400 steps, targets 0.1-0.9) and control_sweep.py:
# - gates_lr 0.1 and dual_lr 0.1 at 1,800 steps (reference_steps), scaled by 1,800 / steps: with Adam a gate
#   moves ~gates_lr a step, so gates and multipliers travel as far in any budget (the paper's MNIST 7e-4 travels
#   4.5 units of log alpha in 6,400 steps: 0.785 at a 0.33 target). Fixed rates of 0.1 met the targets too, but
#   left mnist5k's MLP at 93.8% where the scaled 0.028 gives 95.4% (0.33 model-wise, 6,400 steps), and missed
#   low targets in short runs. 0.2-0.3 dual lr oscillated layer-wise 0.2 runs on digits; 0.03 stopped short.
# - violation "relative": the multiplier integrates (g - target) / target. With the paper's g - target, a
#   0.1 target left the digits MLP at 0.13 after 2,000 steps (the input layer's last pixels need a multiplier
#   of ~50, which grows by dual_lr x 0.03 a step); relative: 0.102.
# - constraint "eq": with the paper's <=, the MLP's input layer ends below high targets because the loss alone
#   closes uninformative pixels (unconstrained, fc1 falls to 0.75-0.76 on digits), and gates that momentum
#   pushed past a target never reopen (the multiplier is 0 once satisfied): 0.73 at a layer-wise 0.8;
#   "eq" (with sign-symmetric dual restarts) holds every layer at its target.
# - alpha_min 1e-4: at the paper's 1e-2 a closed gate still counts P(active) = 0.047, so a 64-gate layer
#   moves to a 0.2 target only by closing one more informative gate at a time (0.225 after 150 epochs); at
#   1e-3 (0.005 a closed gate) the digits MLP's fc1 held 7 of 64 pixels at a layer-wise 0.1 target and
#   counted 0.113 (6,400 steps); at 1e-4: 0.104.
# - gates_polarization 0.02: the expected density cannot tell many half-open gates from fewer open ones; the
#   digits MLP met a layer-wise 0.9 with 20 border-pixel gates at P(active) 0.5-0.85, all open at eval (eval
#   0.940, CNN model-wise 0.936, 6,400 steps); with 0.02: 0.904 and 0.902 (0.05: 0.906/0.905, expected 0.904;
#   0.5 pushes expected density 0.03 above the target).
# - gates_beta2 0.95: Adam's 0.999 remembers ~1,000 steps. When a conv channel closes, the fc1 gates it fed
#   lose their loss gradient but their second moment keeps the old gradient scale, so they freeze wherever they
#   were (P(active) 0.6-0.95, open at eval): digits CNN eval density 0.02-0.03 above 0.65/0.8 targets; at 0.95
#   they follow the multiplier and every gate polarises (0.99 halved the gap).
PAPER_CONTROL: dict[str, Any] = {
    "constraint": "le",
    "violation": "absolute",
    "alpha_min": 1e-2,
    "gates_beta2": 0.999,
    "gates_polarization": 0.0,
}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # 12 minibatches an epoch: 150 epochs are 1,800 steps. The weights' lr is large so that they learn before
    # the constraint closes the gates (at 1e-3 the CNN was closed while still at chance).
    "digits": {"epochs": 150, "batch_size": 128, "optimizer": "adam", "lr": 5e-3, "droprate_init": 0.5},
    # The paper's MNIST recipe (paper.md §5: Adam, batch 128, 200 epochs) on 4,000 training images: 6,400 steps.
    "mnist5k": {"epochs": 200, "batch_size": 128, "optimizer": "adam", "lr": 7e-4, "droprate_init": 0.5},
    # paper.md §2 and §5. Schedules act on the weights' lr only; the gates' lr is never decayed.
    # reference_steps: the paper's budget, epochs x minibatches (60,000 / 128 -> 469 a pass).
    "mnist": {
        **PAPER_CONTROL,
        "epochs": 200,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 7e-4,
        "gates_lr": 7e-4,
        "dual_lr": 1e-4,
        "reference_steps": 200 * 469,
        "droprate_init": 0.5,
        "weight_decay": 0.0,
    },
    "cifar10": {
        **PAPER_CONTROL,
        "epochs": 200,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "lr_milestones": (60, 120, 160),
        "lr_gamma": 0.2,
        "gates_lr": 6.0,
        "dual_lr": 7e-4,
        "reference_steps": 200 * 391,  # 50,000 / 128
        "weight_decay": 5e-4,
    },
    "tinyimagenet": {
        **PAPER_CONTROL,
        "epochs": 120,
        "batch_size": 100,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "lr_milestones": (30, 60, 90),
        "lr_gamma": 0.1,
        "gates_lr": 1.0,
        "dual_lr": 8e-4,
        "reference_steps": 120 * 1000,  # 100,000 / 100
        "weight_decay": 5e-4,
    },
    "imagenet": {
        **PAPER_CONTROL,
        "epochs": 90,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "lr_milestones": (30, 60),
        "lr_gamma": 0.1,
        "gates_lr": 1.0,
        "dual_lr": 3e-4,
        "reference_steps": 90 * 5005,  # 1,281,167 / 256
        "weight_decay": 1e-4,
        "eval_batch_size": 500,
    },
}
DATASET_DEFAULTS["cifar100"] = dict(DATASET_DEFAULTS["cifar10"])

# Defaults per architecture, over the dataset's (paper.md §2: droprate_init per architecture).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet5": {"droprate_init": 0.5},
    "wrn28_10": {"droprate_init": 0.3},
    "wrn16_4": {"droprate_init": 0.3},
    "resnet18": {"droprate_init": 0.3},
    "resnet50": {"droprate_init": 0.05},
}

# Defaults of layer-wise runs per dataset, over the dataset's and the arch's (paper.md §2: dual lr per setting).
LAYERWISE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tinyimagenet": {"dual_lr": 1e-4},
    "imagenet": {"dual_lr": 3e-5},
}

# Defaults of runs with a MAC / parameter budget (``--budget``), over the layer-wise ones. The tie-breaker
# (gates_polarization) weighs each gate by its cost there (ConstraintSet.tie_weights), and a budget's
# gates are coarse: a digits-CNN conv1 channel is 2.6% of the MACs, so one gate the constraint leaves half open
# (counted 0.58 in expectation, kept whole by the purge) moves the purged share by a point. Measured on the
# digits CNN, budgets macs 0.2/0.35/0.5 and params 0.2/0.5, 1,800 steps: kappa 0.02 -> purged 36.46% for macs
# 0.35 (conv1 9 of 16 channels, one at P 0.58); 0.05 -> largest miss 0.88 points; 0.1 -> 0.97 points.
# keep_a_gate_open: a budget priced by the cost model pays most for closing the most expensive layer whole (the
# digits CNN's conv2 is 55% of its MACs); closed, a layer passes no gradient and never reopens (issue 29).
BUDGET_DEFAULTS: dict[str, Any] = {"gates_polarization": 0.05, "keep_a_gate_open": True}

# Defaults of models gated by ctrlsparse.gate (torchvision:, module:), over the budget ones. They have thousands
# of gates (MobileNetV2: 9,128 in 25 groups), each a small share of the tie-breaker's weights (which sum to 1),
# and many that the loss on small images is indifferent to: at kappa 0.02 / 0.05 a third of MobileNetV2's gates
# still sat at P(active) 0.05-0.95 after 2,000 digits steps. Measured on torchvision:mobilenet_v2, digits,
# 2,004 steps (benchmarks/README.md): budget macs 0.5, kappa 0.05 -> purged 53.21% (+3.21 points), 0.5 -> +0.91,
# 2.0 -> +0.39 (95.3% accuracy); macs 0.3, 0.05 -> +0.92 at 59.2% accuracy, 2.0 -> +0.27 at 94.7%; density 0.5,
# 0.02 -> eval density 0.5078 at 89.2%, 2.0 -> 0.5030 at 96.1%.
GATE_GROUP_DEFAULTS: dict[str, Any] = {"gates_polarization": 2.0}
GATE_GROUP_PREFIXES = ("torchvision:", "module:")
GATE_GROUP_ARCHS = ("vit",)  # registered archs gated by ctrlsparse.gate too (the small ViT, models/vit.py)


# Defaults of a warm start (a constrained or penalized run from a dense run's weights, ``pretrained``): gates that
# start open at eval (log alpha 2.94: every eval gate 1), so that the trained function is where training starts.
WARM_START_DEFAULTS: dict[str, Any] = {
    "droprate_init": 0.05,
    "keep_a_gate_open": True,
    "target_anneal": 0.3,
    "fix_gates": 0.3,
    "gate_after_norm": True,
}


def case_defaults(
    dataset: str, arch: str, method: str, target_scope: str, budget: str, pretrained: str = ""
) -> dict[str, Any]:
    """The presets of one case, later ones winning: the dataset's, the arch's, the layer-wise ones (for
    ``target_scope`` layer), the budget ones (with a ``budget``), the gate groups' (archs gated by
    ``ctrlsparse.gate``), the warm start's (``pretrained`` given), then the method's own defaults (its spec's:
    magnitude pruning's fine-tuning recipe)."""
    spec = method_spec(method)
    return {
        **DATASET_DEFAULTS.get(dataset, {}),
        **ARCH_DEFAULTS.get(arch, {}),
        **(LAYERWISE_DEFAULTS.get(dataset, {}) if target_scope == "layer" else {}),
        **(BUDGET_DEFAULTS if budget else {}),
        **(GATE_GROUP_DEFAULTS if arch.startswith(GATE_GROUP_PREFIXES) or arch in GATE_GROUP_ARCHS else {}),
        **(WARM_START_DEFAULTS if pretrained and not (spec and spec.starts_from) else {}),
        **(spec.recipe(dataset) if spec else {}),
    }

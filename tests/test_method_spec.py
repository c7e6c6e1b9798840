"""One place per method: its spec in the registry. No module outside ``registry.py`` and ``problems/`` compares a
method's name with a string literal, and a method added by a registry entry and a problem class trains through
the CLI with its own level in the run key."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.registry import METHODS, MethodSpec, register_method

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ctrlsparse"
ALLOWED = (PACKAGE / "registry.py", PACKAGE / "problems")
STRING_TESTS = {"startswith", "endswith", "isin"}  # calls that compare their arguments with a value


def _names(node: ast.AST, methods: set[str]) -> list[str]:
    """The method names written as string literals in ``node`` (a literal, or a tuple / list / set of them)."""
    if isinstance(node, ast.Constant) and node.value in methods:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [name for item in node.elts for name in _names(item, methods)]
    return []


def method_comparisons(source: str, filename: str, methods: set[str]) -> list[str]:
    """``file:line: name`` of each comparison of a value with a method's name written as a literal: ``==``,
    ``!=``, ``in``, ``match`` cases, and ``.startswith`` / ``.endswith`` / ``.isin`` calls."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare):
            names = [name for operand in (node.left, *node.comparators) for name in _names(operand, methods)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in STRING_TESTS:
            names = [name for arg in node.args for name in _names(arg, methods)]
        elif isinstance(node, ast.MatchValue):
            names = _names(node.value, methods)
        else:
            continue
        found += [f"{filename}:{node.lineno}: {name!r}" for name in names]
    return found


def test_the_check_finds_every_form_of_comparison():
    source = 'a == "dense"\nb in ("x", "penalized")\nc.isin(["search"])\nd.startswith("magnitude")\n"x" == e\n'
    found = method_comparisons(source, "f.py", set(METHODS))
    assert found == ["f.py:1: 'dense'", "f.py:2: 'penalized'", "f.py:3: 'search'", "f.py:4: 'magnitude'"]


def test_no_module_outside_the_registry_and_problems_compares_a_method_name_with_a_literal():
    methods = set(METHODS)
    found = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "workflow").rglob("*.py")]):
        if any(path == allowed or allowed in path.parents for allowed in ALLOWED):
            continue
        found += method_comparisons(path.read_text(), str(path.relative_to(ROOT)), methods)
    assert not found, "read the method's spec (ctrlsparse.registry.METHODS.spec) instead:\n" + "\n".join(found)


def test_the_workflow_rules_compare_no_method_name_either():
    quoted = "|".join(re.escape(name) for name in METHODS)
    comparison = re.compile(rf"""(==|!=|\bin)\s*[(\[]?\s*["']({quoted})["']|["']({quoted})["']\s*(==|!=)""")
    rules = [ROOT / "workflow" / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in rules
        if path.exists()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if comparison.search(line)
    ]
    assert not found


def test_every_method_has_a_spec_whose_class_resolves():
    for name in METHODS:
        spec = METHODS.spec(name)
        assert isinstance(spec, MethodSpec)
        assert METHODS[name] is not None
        assert not spec.starts_from or spec.starts_from in METHODS
        assert not spec.runs_of or spec.runs_of in METHODS


# --- a method added from outside: a registry entry and its problem class, nothing else ---


@pytest.fixture
def toy_method():
    """``toy``: the loss plus ``penalty`` x the model's expected density squared; its level is the penalty."""
    import cooper

    from ctrlsparse.problems.base import L0Problem

    class ToyProblem(L0Problem):
        def compute_cmp_state(self, inputs, labels):
            objective, logits = self.objective(inputs, labels)
            loss = objective + self.hparams.penalty * self.density.model_expected() ** 2
            return cooper.CMPState(loss=loss, misc={"objective": objective.detach(), "logits": logits.detach()})

    register_method("toy", MethodSpec(ToyProblem, level="penalty", defaults={"*": {"batch_size": 256}}))
    yield ToyProblem
    METHODS.unregister("toy")
    assert "toy" not in METHODS


def test_a_method_added_by_an_entry_and_a_class_trains_through_the_cli(toy_method, tmp_path):
    from ctrlsparse.cli import main

    out = tmp_path / "toy"
    argv = ["train", "--method", "toy", "--penalty", "0.02", "--epochs", "1", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(paths.summary_path(out).read_text())
    hparams = HParams.resolve(method="toy", penalty=0.02, epochs=1)
    assert hparams.batch_size == 256  # the spec's defaults
    assert summary["run_key"] == run_key(hparams)
    assert summary["run_key"].startswith("digits/mlp/toy-model~0.02/")  # its own variant and level
    assert 0.0 < summary["expected_density"] < 1.0 and summary["epochs"] == 1
    assert json.loads(paths.hparams_path(out).read_text())["method"] == "toy"


def test_a_method_added_by_an_entry_shows_its_own_flags(toy_method):
    from ctrlsparse.training.cli import train_argv

    argv = train_argv(HParams.resolve(method="toy", penalty=0.5, seed=2))
    assert argv == ["--dataset", "digits", "--arch", "mlp", "--method", "toy", "--seed", "2"] + [
        *("--target-scope", "model", "--penalty", "0.5")
    ]

"""``--procedure=NAME --help`` lists that procedure's flags, and the registry says which they are.

The registry (``zskd_tf/procedures/registry.py``) is checked against the code: a walk of each
procedure's source (``ast``, nothing imported) collects the flags it reads through its config,
following the calls that hand the config to another function; each must be in the procedure's
help.
"""
from __future__ import annotations

import ast
import functools
import os
import re

import pytest

from helpers import REPO, run_cli
from zskd_tf import cli_flags
from zskd_tf.procedures import registry

FLAG_LINE = re.compile(r"^  --(?:\[no\])?(\w+):")


def _listed(help_text: str) -> set[str]:
    return {m.group(1) for m in map(FLAG_LINE.match, help_text.splitlines()) if m}


@pytest.mark.parametrize("name", registry.NAMES)
def test_help_lists_exactly_the_procedures_flags(name):
    proc = run_cli(f"--procedure={name}", "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"--procedure={name}:" in proc.stdout
    assert _listed(proc.stdout) == {*registry.get(name).flags, "flagfile"}, proc.stdout


def test_train_help_leaves_out_zskt_and_zero_shot_help_leaves_out_zskd():
    train = _listed(run_cli("--procedure=train", "--help", timeout=120).stdout)
    zero_shot = _listed(run_cli("--help", "--procedure", "zero_shot", timeout=120).stdout)
    assert {"model", "epochs", "learning_rate", "run_dir", "seed"} <= train
    assert not {"iterations", "student_lr", "generator_lr", "betas", "objective"} & train
    assert {"teacher", "student", "iterations", "student_lr", "z_dim"} <= zero_shot
    assert not {"betas", "synthesis_steps", "objective", "learning_rate"} & zero_shot


def test_help_finds_the_procedure_in_a_flagfile(tmp_path):
    flagfile = tmp_path / "run.cfg"
    flagfile.write_text("--procedure=compute_stats\n--teacher=somewhere\n")
    proc = run_cli(f"--flagfile={flagfile}", "--help", timeout=120)
    assert _listed(proc.stdout) == {*registry.get("compute_stats").flags, "flagfile"}


def test_help_without_a_procedure_lists_the_procedures_and_helpfull_every_flag():
    short = run_cli("--help", timeout=120).stdout
    assert all(f"  {name} " in short for name in registry.NAMES), short
    assert _listed(short) == {*registry.COMMON, "flagfile"}
    full_help = run_cli("--procedure=train", "--helpfull", timeout=120)
    assert full_help.returncode == 0, full_help.stderr
    full = _listed(full_help.stdout)
    assert set(cli_flags.our_flag_names()) <= full


def test_registry_names_real_flags_and_modules():
    known = set(cli_flags.our_flag_names())
    for procedure in registry.PROCEDURES:
        assert set(procedure.flags) <= known, set(procedure.flags) - known
        assert os.path.exists(_path(procedure.module)), procedure.module


# --- which flags the code reads -------------------------------------------------------------

def _path(module: str) -> str:
    return os.path.join(REPO, *module.split(".")) + ".py"


@functools.cache
def _tree(module: str) -> ast.Module | None:
    path = _path(module)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def _bindings(module: str) -> dict:
    """Local name -> (module, function or None) for what the module defines and imports."""
    names = {}
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = (module, node.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zskd_tf"):
            for alias in node.names:
                as_module = f"{node.module}.{alias.name}"
                names[alias.asname or alias.name] = ((as_module, None) if _tree(as_module)
                                                     else (node.module, alias.name))
    return names


def _function(module: str, name: str):
    tree = _tree(module)
    return next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                 and n.name == name), None) if tree else None


def _callee(call: ast.Call, module: str):
    """(module, function) a call goes to, when it is one of the package's functions."""
    bound = _bindings(module)
    func = call.func
    if isinstance(func, ast.Name) and func.id in bound:
        return bound[func.id]
    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and bound.get(func.value.id, (None, ""))[1] is None and func.value.id in bound):
        return bound[func.value.id][0], func.attr
    return None


def _is_name(node: ast.AST, names: set[str]) -> bool:
    return isinstance(node, ast.Name) and node.id in names


def _reads(node: ast.AST, module: str, names: set[str], seen: set) -> set[str]:
    """Flag-like names read from the config, known in ``node`` by ``names``."""
    found = set()
    for sub in ast.walk(node):  # x = cfg, or a copy: x = SimpleNamespace(**vars(cfg), ...)
        if isinstance(sub, ast.Assign) and (_is_name(sub.value, names) or any(
                isinstance(n, ast.Call) and _is_name(n.func, {"vars"})
                and any(_is_name(a, names) for a in n.args) for n in ast.walk(sub.value))):
            names |= {t.id for t in sub.targets if isinstance(t, ast.Name)}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) \
                and sub.value.id in names:
            found.add(sub.attr)
        elif isinstance(sub, ast.Attribute) and sub.attr == "cfg":
            names.add("cfg")
        elif isinstance(sub, ast.Compare) and isinstance(sub.left, ast.Constant) and any(
                isinstance(c, ast.Attribute) and c.attr == "present" and _is_name(c.value, names)
                for c in sub.comparators):
            found.add(sub.left.value)  # "dataset" in cfg.present
        elif isinstance(sub, (ast.For, ast.comprehension)) and isinstance(sub.iter, ast.Tuple):
            found |= {e.value for e in sub.iter.elts if isinstance(e, ast.Constant)}
        elif isinstance(sub, ast.Call):
            found |= _call_reads(sub, module, names, seen)
    return found


def _call_reads(call: ast.Call, module: str, names: set[str], seen: set) -> set[str]:
    """getattr(cfg, "x"), with_defaults(cfg, x=...), and what a callee given cfg reads."""
    args = [a.id if isinstance(a, ast.Name) else None for a in call.args]
    if not set(args) & names:
        return set()
    if isinstance(call.func, ast.Name) and call.func.id == "getattr":
        return {call.args[1].value} if isinstance(call.args[1], ast.Constant) else set()
    found = set()
    if isinstance(call.func, ast.Name) and call.func.id == "with_defaults":
        found |= {k.arg for k in call.keywords if k.arg}
    if isinstance(call.func, ast.Attribute) and call.func.attr == "from_flags":
        config = _callee(ast.Call(call.func.value, [], []), module)  # a typed config class
        fields = _function(*config) if config and config[1] else None
        if isinstance(fields, ast.ClassDef):
            found |= {n.target.id for n in fields.body if isinstance(n, ast.AnnAssign)}
    target = _callee(call, module)
    function = _function(*target) if target else None
    if isinstance(function, ast.FunctionDef) and target not in seen:
        seen.add(target)
        params = [a.arg for a in function.args.args]
        given = {params[i] for i, a in enumerate(args) if a in names and i < len(params)}
        found |= _reads(function, target[0], given, seen)
    return found


# Reads the walk finds that never see a user's value, and why.
NOT_READ = {"quantize": {
    "shard": "cli_flags.validate refuses --shard outside the sharded procedures, and "
             "quantize hands its flags on to data_impressions.run",
    "model_path": "export's helpers read --model_path only when given no path; quantize "
                  "gives them --teacher"}}


def test_every_flag_a_procedure_reads_is_in_its_help():
    known = set(cli_flags.our_flag_names())
    missing = {}
    for procedure in registry.PROCEDURES:
        read = _reads(_tree(procedure.module), procedure.module, {"cfg"}, set()) & known
        read -= set(NOT_READ.get(procedure.name, ()))
        if read - set(procedure.flags):
            missing[procedure.name] = sorted(read - set(procedure.flags))
    assert not missing, f"flags read but not in the registry: {missing}"


def test_the_reader_walk_finds_reads_through_calls():
    """The walk itself, on zero_shot: a direct read, one through a helper of another module
    (``teacher_task.description_of``), and the fields of a typed config's ``from_flags``."""
    read = _reads(_tree("zskd_tf.procedures.zero_shot"), "zskd_tf.procedures.zero_shot",
                  {"cfg"}, set())
    assert {"init_from", "input_range", "student_lr", "generator_width"} <= read
    assert "betas" not in read

"""Imports run one way (docs/architecture.md): checked on the source with ``ast``, no import.

Every module under ``zskd_tf/`` belongs to one layer of ``LAYERS``; it may import modules of
its own layer and of the layers below, never above; only the command-line layers import absl's
``flags`` or ``app``; and no chain of imports (at module level or inside a function) comes back
to where it started. The last two tests check what the layering buys: defining every flag
loads no TensorFlow, so ``--help`` is quick and lists the flags.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from helpers import REPO, cli_env, run_cli

PACKAGE = "zskd_tf"

# Lowest first. A name stands for that module or package and everything below it.
LAYERS = (
    ("foundation", ("zskd_tf.errors", "zskd_tf.constants", "zskd_tf.typed_config",
                    "zskd_tf.runtime")),
    ("building blocks", ("zskd_tf.data", "zskd_tf.models", "zskd_tf.losses",
                         "zskd_tf.evaluation", "zskd_tf.tflite_runtime")),
    ("model files", ("zskd_tf.model_io", "zskd_tf.export", "zskd_tf.calibration",
                     "zskd_tf.quantize", "zskd_tf.teacher_task")),
    ("methods", ("zskd_tf.trainers", "zskd_tf.zskd", "zskd_tf.lopes", "zskd_tf.zskt",
                 "zskd_tf.keras_distillation")),
    ("procedures", ("zskd_tf.procedures", "zskd_tf.pipeline")),
    ("command-line flags", ("zskd_tf.cli_flags", "zskd_tf.method_flags", "zskd_tf.cli_runner",
                            "zskd_tf.cli_help")),
    ("entry points", ("zskd_tf.main", "zskd_tf.api", PACKAGE)),
)
FIRST_CLI_LAYER = "command-line flags"
CLI_ONLY = ("absl.flags", "absl.app")  # the command line's machinery
# The package root runs before any of its modules anyway; taking its version is no dependency.
ROOT_NAMES_FREE_TO_ALL = frozenset({"__version__"})


def _module_files() -> dict[str, str]:
    """Dotted module name -> path, for every ``.py`` file under the package."""
    modules = {}
    for root, dirs, files in os.walk(os.path.join(REPO, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts.pop()
                modules[".".join(parts)] = path
    return modules


def _imports(module: str, path: str, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, wherever it stands.

    ``from X import name`` counts as an import of ``X.name`` when that is a module of the
    package, else of ``X``; relative imports are resolved; the package root's free names
    (``from zskd_tf import __version__``) are left out."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for name in sorted({alias.name for alias in node.names}):
                if base == PACKAGE and name in ROOT_NAMES_FREE_TO_ALL:
                    continue
                full = f"{base}.{name}"
                found.append((full if full in known or full in CLI_ONLY else base, node.lineno))
    return found


def _layer_of(module: str) -> int:
    best, best_length = None, -1
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            inside = module == member or (member != PACKAGE and module.startswith(member + "."))
            if inside and len(member) > best_length:
                best, best_length = index, len(member)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in "
                             f"{os.path.relpath(__file__, REPO)} and to docs/architecture.md")
    return best


def import_graph():
    """{module: [(imported module, line), ...]} over the package (external imports too)."""
    files = _module_files()
    return {module: _imports(module, path, set(files)) for module, path in files.items()}


def layer_violations(graph) -> list[str]:
    """One line per import that runs upward or takes the CLI's machinery below the CLI."""
    first_cli = [name for name, _ in LAYERS].index(FIRST_CLI_LAYER)
    found = []
    for module, imports in sorted(graph.items()):
        mine = _layer_of(module)
        for target, line in imports:
            ours = target.startswith(PACKAGE + ".")  # a namespace package has no file
            if ours and _layer_of(target) > mine:
                found.append(f"{module}:{line} imports {target}: layer "
                             f"'{LAYERS[mine][0]}' must not import the higher layer "
                             f"'{LAYERS[_layer_of(target)][0]}'")
            elif target in CLI_ONLY and mine < first_cli:
                found.append(f"{module}:{line} imports {target}: only the command-line "
                             f"layers may (layer '{LAYERS[mine][0]}' takes plain values)")
    return found


def import_cycles(graph) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import)."""
    edges = {m: sorted({t for t, _ in imports if t in graph})
             for m, imports in graph.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm; the package has a few hundred edges at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges[node]:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_every_module_belongs_to_a_layer():
    for module in _module_files():
        _layer_of(module)


def test_no_module_imports_a_higher_layer_or_the_command_line():
    violations = layer_violations(import_graph())
    assert not violations, "imports that run upward:\n" + "\n".join(violations)


def test_no_import_cycles():
    graph = import_graph()
    cycles = import_cycles(graph)
    lines = []
    for component in cycles:
        ties = [f"{m} -> {t} (line {line})" for m in component for t, line in graph[m]
                if t in component]
        lines.append(", ".join(component) + ": " + "; ".join(ties))
    assert not cycles, "import cycles:\n" + "\n".join(lines)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    """The checker itself: a fabricated graph with one bad edge of each kind."""
    graph = {"zskd_tf.runtime.run_dir": [("zskd_tf.cli_flags", 3), ("absl.flags", 4)],
             "zskd_tf.cli_flags": [("absl.flags", 1)],
             "zskd_tf.model_io": [("zskd_tf.export", 7)],
             "zskd_tf.export": [("zskd_tf.model_io", 9)]}
    violations = layer_violations(graph)
    assert any("run_dir:3 imports zskd_tf.cli_flags" in v for v in violations), violations
    assert any("run_dir:4 imports absl.flags" in v for v in violations), violations
    assert not any(v.startswith("zskd_tf.cli_flags") for v in violations), violations
    assert import_cycles(graph) == [["zskd_tf.export", "zskd_tf.model_io"]]


def test_defining_the_flags_loads_no_tensorflow():
    code = ("import sys; import zskd_tf.main; "
            "print(','.join(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(),
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "", f"importing zskd_tf.main loaded {out.strip()}"


ZSKT_FLAGS = ("--procedure", "--run_dir", "--teacher", "--iterations", "--student_lr")
OTHER_METHODS_FLAGS = ("--betas", "--synthesis_steps", "--objective")


@pytest.mark.parametrize("flag", ["--help", "--helpfull"])
def test_help_lists_the_flags(flag):
    """--help lists the procedure's flags (tests/test_cli_help.py), --helpfull every flag."""
    proc = run_cli("--procedure=zero_shot", flag, timeout=120)
    for name in ZSKT_FLAGS:
        assert name in proc.stdout, (name, proc.stdout[-2000:])
    for name in OTHER_METHODS_FLAGS:
        assert (name in proc.stdout) == (flag == "--helpfull"), (name, proc.stdout[-2000:])

"""Fault injection (tests/test_fault_injection*.py): every kind of file a run directory holds
is corrupted, truncated or deleted,
and the same command must heal (or refuse in one ``error:`` line), never crash or reuse it.

Each procedure runs once on tiny settings with ``--deterministic`` (the reference). Then, for
every case, a copy of the finished reference has one file damaged — bytes overwritten at a
seeded random place (``FAULT_SEED``, default 0), cut to a seeded random length, or deleted —
and, for working files (checkpoints, batches), the ``result.json`` files above it are removed
too, as after a kill.
The same command runs again and must either

* finish, with a warning when it had to throw something away, every product whole and equal
  to the reference's (weights and arrays bit for bit); or
* stop with a UserError naming the damaged file (``flags.cfg``: what the run was is unknown),
  after which the same command with ``--overwrite`` finishes with the reference's products.

Any other exception (what the CLI would show as a traceback) fails the test. The procedures run
in this process (the CLI's own error handling is tested in test_bad_input.py) to keep the
test's time to a few minutes; the number of cases per procedure is printed. The procedures are
split over two test files so that two workers share them.
"""
import glob
import os
import random
import shutil
import zipfile

import keras
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from helpers import read_json
from zskd_tf import cli_flags, procedures
from zskd_tf.errors import UserError

RNG = random.Random(int(os.environ.get("FAULT_SEED", "0")))
FAULTS = ("corrupt", "truncate", "delete")
TINY_TRAIN = ["--epochs=2", "--batch_size=50", "--max_train_examples=200",
              "--max_test_examples=100"]
# procedure -> (flags, products compared with the reference, files damaged: (glob, working?[,
# faults: all when not given])). A working file (checkpoint, batch) is only read by an
# unfinished run: result.json goes too. compute_stats recomputes everything, so it gets fewer.
PROCEDURES = {
    "train": (["--procedure=train", "--model=lenet5", *TINY_TRAIN],
              ["model.keras"],
              [("model.keras", False), ("model_info.json", False), ("result.json", False),
               ("flags.cfg", False), ("saved_model/saved_model.pb", False),
               ("checkpoints/checkpoint", True), ("checkpoints/ckpt-*.index", True),
               ("checkpoints/ckpt-*.data-*", True)]),
    "distill": (["--procedure=distill", "--student=lenet5_half", *TINY_TRAIN,
                 "--teacher={teacher}"],
                ["model.keras"],
                [("model.keras", False), ("model_info.json", False), ("result.json", False),
                 ("checkpoints/ckpt-*.data-*", True)]),
    "data_impressions": (["--procedure=data_impressions", "--teacher={teacher}",
                          "--num_samples=40", "--synthesis_batch_size=20",
                          "--synthesis_steps=5"],
                         ["impressions.npz"],
                         [("impressions.npz", False), ("concentration.npy", False),
                          ("result.json", False), ("flags.cfg", False),
                          ("batches/batch_000001.npz", True)]),
    "compute_stats": (["--procedure=compute_stats", "--teacher={teacher}",
                       "--max_train_examples=300"],
                      ["stats.npz"],
                      [("stats.npz", False), ("result.json", False, ("truncate",))]),
    "optimize_dataset": (["--procedure=optimize_dataset", "--teacher={teacher}", "--stats={stats}",
                          "--objective=top_layer", "--num_samples=20",
                          "--synthesis_batch_size=10", "--synthesis_steps=5"],
                         ["top_layer.npz"],
                         [("top_layer.npz", False), ("result.json", False),
                          ("batches/batch_000000.npz", True)]),
    "zero_shot": (["--procedure=zero_shot", "--teacher={teacher}", "--student=lenet5_half",
                   "--beta=0", "--iterations=3", "--batch_size=16", "--seeds=0",
                   "--max_test_examples=100"],
                  ["seed_0/model.keras", "seed_0/generator.keras"],
                  [("seed_0/model.keras", False), ("seed_0/generator.keras", False),
                   ("seed_0/result.json", False), ("result.json", False),
                   ("seed_0/checkpoints/ckpt-*.index", True),
                   ("seed_0/checkpoints/ckpt-*.data-*", True)]),
    "transition_curves": (["--procedure=transition_curves", "--teacher={teacher}",
                           "--student_run={zero_shot}/seed_0", "--dataset=fashion_mnist",
                           "--num_images=4", "--adversarial_steps=3"],
                          ["curves.npz"],
                          [("curves.npz", False), ("result.json", False), ("flags.cfg", False)]),
    "evaluate": (["--procedure=evaluate", "--model_path={teacher}", "--max_test_examples=100"],
                 [],
                 [("result.json", False), ("flags.cfg", False)]),
    "export": (["--procedure=export", "--model_path={teacher}", "--tflite"],
               ["model.tflite"],
               [("model.tflite", False), ("saved_model/saved_model.pb", False),
                ("result.json", False, ("truncate",))]),
    "quantize": (["--procedure=quantize", "--teacher={teacher}", "--calibration_samples=20",
                  "--synthesis_batch_size=10", "--synthesis_steps=3"],
                 ["model_int8.tflite", "impressions/impressions.npz"],
                 [("model_int8.tflite", False), ("result.json", False),
                  ("impressions/batches/batch_000001.npz", True, ("corrupt",))]),
}


def _parsed(args):
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["zskd_tf", *args])
        return cli_flags.config_from_flags()


def _run(args) -> str | None:
    """Runs the procedure in this process; the UserError message, or None on success. Any
    other exception propagates and fails the test."""
    try:
        procedures.run(_parsed(args))
    except UserError as e:
        return str(e)
    return None


def _damage(path: str, fault: str) -> None:
    size = os.path.getsize(path)
    if fault == "delete":
        os.remove(path)
    elif fault == "truncate":
        with open(path, "r+b") as f:
            f.truncate(RNG.randrange(0, max(1, size)))
    else:  # overwrite up to 64 bytes somewhere in the middle half with their complement
        start = RNG.randrange(size // 4, max(size // 4 + 1, 3 * size // 4))
        with open(path, "r+b") as f:
            f.seek(start)
            chunk = f.read(64)
            f.seek(start)
            f.write(bytes(b ^ 0xFF for b in chunk) or b"\xff")


def _newest(pattern: str, root: str) -> str:
    """The file matching ``pattern`` under ``root`` (the highest checkpoint number)."""
    found = sorted(glob.glob(os.path.join(root, pattern)),
                   key=lambda p: int(p.split("ckpt-")[1].split(".")[0]) if "ckpt-" in p else 0)
    assert found, (pattern, os.listdir(root))
    return found[-1]


def _whole(path: str) -> None:
    """Raises unless the product at ``path`` reads back completely."""
    if path.endswith(".npz"):
        with np.load(path) as data:
            for key in data.files:
                data[key]  # noqa: B018  (reads the member, checking its CRC)
    elif path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None, path


def _same_product(reference: str, other: str) -> None:
    _whole(other)
    if reference.endswith(".keras"):
        import zskd_tf.models.layers  # noqa: F401  (registers the generator's layers)
        a = keras.saving.load_model(reference, compile=False).get_weights()
        b = keras.saving.load_model(other, compile=False).get_weights()
        for wa, wb in zip(a, b, strict=True):
            np.testing.assert_array_equal(wa, wb)
    elif not reference.endswith(".npz"):  # e.g. .tflite: the converter is deterministic
        with open(reference, "rb") as first, open(other, "rb") as second:
            assert first.read() == second.read(), other
    else:
        with np.load(reference) as first, np.load(other) as second:
            assert sorted(first.files) == sorted(second.files)
            for key in first.files:
                if key != "meta":  # meta holds the creation time
                    np.testing.assert_array_equal(first[key], second[key])


def build_references(names, teacher: str, root) -> dict:
    """procedure -> (its flags without --run_dir, the finished reference run directory), for
    ``names`` (in the table's order; a procedure's inputs are built by an earlier one)."""
    done = {}
    for name, (args, _, _) in PROCEDURES.items():
        if name not in names:
            continue
        stats = (os.path.join(done["compute_stats"][1], "stats.npz")
                 if "compute_stats" in done else "")
        zero_shot = done["zero_shot"][1] if "zero_shot" in done else ""
        full = [a.format(teacher=teacher, stats=stats, zero_shot=zero_shot) for a in args]
        full += ["--deterministic", "--verbose=quiet", "--checkpoint_every_secs=1000"]
        run = str(root / name)
        assert _run([*full, f"--run_dir={run}"]) is None
        done[name] = (full, run)
    return done


def check_damage_cases(procedure: str, references: dict, tmp_path, capfd) -> None:
    """Damages every file of ``procedure``'s table entry in turn (see the module docstring)."""
    args, reference = references[procedure]
    _, products, targets = PROCEDURES[procedure]
    outcomes = {}
    for pattern, working, *faults in targets:
        for fault in (faults[0] if faults else FAULTS):
            case = f"{fault} {pattern}"
            run = str(tmp_path / f"case{len(outcomes)}")
            shutil.copytree(reference, run)
            _damage(_newest(pattern, run), fault)
            if working:  # unfinished, as after a kill: no result.json above the file
                parts = pattern.split("/")[:-1]
                for depth in range(len(parts) + 1):
                    done = os.path.join(run, *parts[:depth], "result.json")
                    if os.path.exists(done):
                        os.remove(done)
            capfd.readouterr()
            error = _run([*args, f"--run_dir={run}"])
            said = capfd.readouterr().err
            if error is not None:
                assert pattern.split("/")[-1] in error or "different flags" in error, (case, error)
                assert _run([*args, f"--run_dir={run}", "--overwrite"]) is None, case
                outcomes[case] = "refused (one error line), then --overwrite finished"
            else:
                outcomes[case] = "healed" + (" (warned)" if "warning:" in said else "")
                if fault != "delete" and not pattern.endswith("checkpoints/checkpoint"):
                    assert "warning:" in said, (case, said[-2000:])  # damage is never silent
            assert os.path.exists(os.path.join(run, "result.json")), case
            assert read_json(os.path.join(run, "result.json")), case
            for product in products:
                _same_product(os.path.join(reference, product), os.path.join(run, product))
            shutil.rmtree(run)
    print(f"\n{procedure}: {len(outcomes)} damage cases")
    for case, outcome in outcomes.items():
        print(f"  {case}: {outcome}")


def tests_for(names: tuple) -> tuple:
    """The module fixture ``references`` and the parametrized test, for the procedures
    ``names``; a test module assigns both to module names so that pytest collects them."""
    @pytest.fixture(scope="module")
    def references(lenet5_teacher, tmp_path_factory):
        return build_references(names, lenet5_teacher, tmp_path_factory.mktemp("references"))

    @pytest.mark.slow
    @pytest.mark.parametrize("procedure", names)
    def test_damaged_run_files_heal_or_stop_cleanly(procedure, references, tmp_path, capfd):
        check_damage_cases(procedure, references, tmp_path, capfd)

    return references, test_damaged_run_files_heal_or_stop_cleanly

"""Run-directory safety: ``--overwrite`` deletes only zskd_tf runs and only after the new
command's inputs are valid; one writer per run directory; finished runs whose inputs changed
are reported stale (docs/reliability.md, "Run directories: never destroy what is not ours, one
writer, self-healing state")."""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import types
import zipfile

import numpy as np
import pytest

from helpers import REPO, assert_user_error, cli_env, run_cli
from zskd_tf import cli_flags
from zskd_tf.data import preprocess as pp
from zskd_tf.data import synthetic
from zskd_tf.errors import UserError
from zskd_tf.runtime.run_dir import RunDir


def _snapshot(directory):
    """{relative path: (size, mtime)} of every file under ``directory`` but the lock file (it
    records the PID of the last process that looked at the run)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if name == ".zskd_tf_run":
                continue
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = (os.path.getsize(path),
                                                     os.path.getmtime(path))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_directory_is_never_deleted(overwrite, tmp_path):
    own = tmp_path / "my_files"
    own.mkdir()
    (own / "thesis.tex").write_text("years of work")
    (own / "data").mkdir()
    (own / "data" / "x.csv").write_text("1,2,3")
    before = _snapshot(own)
    proc = run_cli("--procedure=train", "--epochs=1", "--max_train_examples=100",
                   f"--run_dir={own}", *(["--overwrite"] if overwrite else []))
    line = assert_user_error(proc, "did not write", "choose another --run_dir")
    assert "use --overwrite" not in line and "or --overwrite" not in line
    assert _snapshot(own) == before


@pytest.mark.slow
def test_overwrite_keeps_a_finished_run_when_the_new_input_is_bad(lenet5_teacher, tmp_path):
    """distill --overwrite with an empty .npz is refused before the finished run is touched."""
    finished = str(tmp_path / "finished")
    shutil.copytree(lenet5_teacher, finished)
    before = _snapshot(finished)
    empty = str(tmp_path / "empty.npz")
    meta = {"format": synthetic.FORMAT, "dataset": "fashion_mnist", "num_classes": 10,
            "method": "test",
            "input_spec": pp.input_spec_for("fashion_mnist", "lenet", (32, 32, 1)).to_dict()}
    np.savez(empty, x=np.zeros((0, 32, 32, 1), np.float32), y=np.zeros((0,), np.int64),
             meta=np.array(json.dumps(meta)))
    proc = run_cli("--procedure=distill", f"--teacher={lenet5_teacher}",
                   "--student=lenet5_half", f"--dataset={empty}", f"--run_dir={finished}",
                   "--overwrite")
    assert_user_error(proc, "empty.npz", "no examples")
    assert _snapshot(finished) == before


def _wait_for(predicate, seconds, proc):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        assert proc.poll() is None, "the first command ended early"
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_one_writer_per_run_directory(tmp_path):
    """A second command on a directory another process writes exits 2 naming that PID; the
    lock dies with its holder (SIGKILL included)."""
    run = str(tmp_path / "r")
    args = ["--procedure=train", "--model=lenet5", "--epochs=400", "--batch_size=50",
            "--max_train_examples=500", "--max_test_examples=100", "--verbose=quiet",
            f"--run_dir={run}"]
    marker = os.path.join(run, ".zskd_tf_run")
    first = subprocess.Popen([sys.executable, "-m", "zskd_tf.main", *args], cwd=REPO,
                             env=cli_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: os.path.exists(os.path.join(run, "flags.cfg"))
                         and open(marker).read().strip() == str(first.pid), 300, first)
        second = run_cli(*args, timeout=300)
        assert first.poll() is None, "the first command ended before the second was refused"
        assert_user_error(second, "in use by another zskd_tf process", f"PID {first.pid}")
    finally:
        first.kill()
        first.wait()
    with open(marker, "a") as f:  # free again: SIGKILL released the lock
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _finished_run(path):
    """A finished run directory (no lock left held by this process) and its config."""
    from zskd_tf.runtime import run_dir
    cfg = types.SimpleNamespace(flag_schema=cli_flags.flag_schema(), procedure="evaluate",
                                overwrite=False)
    run = RunDir(path)
    run.claim(cfg)
    run.write_result({"accuracy": 0.5})
    run_dir.release_locks()
    return run.path, cfg


def _hold(path, mode):
    """Another open file description of the marker, locked with ``mode``: to flock, as good as
    another process."""
    f = open(os.path.join(path, ".zskd_tf_run"), "r+")
    fcntl.flock(f, mode | fcntl.LOCK_NB)
    return f


def test_a_finished_run_is_read_by_many_and_written_by_none_of_them(tmp_path):
    """Readers of a finished, intact run share it; a writer needs it alone, and a writer's
    lock keeps the readers out."""
    from zskd_tf.runtime import run_dir
    path, cfg = _finished_run(str(tmp_path / "r"))
    with _hold(path, fcntl.LOCK_SH):  # another process reports the run
        try:
            assert RunDir(path).check(cfg)  # and so may this one
            assert RunDir(path).result()["accuracy"] == 0.5
            with pytest.raises(UserError, match="being read by another zskd_tf process"):
                RunDir(path).claim(cfg)  # but not write it (e.g. evaluate again)
        finally:
            run_dir.release_locks()
    with open(os.path.join(path, ".zskd_tf_run"), "r+") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        writer.write("4242\n")
        writer.flush()
        with pytest.raises(UserError, match=r"in use by another zskd_tf process \(PID 4242\)"):
            RunDir(path).check(cfg)
    try:  # alone again: the shared lock of a check is upgraded by claim
        run = RunDir(path)
        assert run.check(cfg)
        run.claim(cfg)
        with open(os.path.join(path, ".zskd_tf_run")) as f:
            assert f.read().strip() == str(os.getpid())
    finally:
        run_dir.release_locks()


@pytest.mark.slow
def test_a_finished_run_is_reported_while_another_process_reads_it(lenet5_teacher, tmp_path):
    """The case that bit: two scripts start together and both find their teacher trained."""
    run = str(tmp_path / "teacher")
    shutil.copytree(lenet5_teacher, run)
    args = ["--procedure=train", "--dataset=fashion_mnist", "--model=lenet5",
            "--batch_size=64", "--max_train_examples=3000", "--max_test_examples=1000",
            "--verbose=quiet", f"--run_dir={run}"]
    with _hold(run, fcntl.LOCK_SH):
        proc = run_cli(*args, "--epochs=2", check=True, timeout=300)
        assert "run already finished" in proc.stdout
        assert_user_error(run_cli(*args, "--epochs=3", "--overwrite", timeout=300),
                          "being read by another zskd_tf process")
    assert open(os.path.join(run, "flags.cfg")).read() == open(
        os.path.join(lenet5_teacher, "flags.cfg")).read()


def test_claiming_a_foreign_directory_leaves_no_marker_in_it(tmp_path):
    """The marker makes a directory a run (which --overwrite may delete): a refused claim must
    not leave one behind."""
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    cfg = types.SimpleNamespace(flag_schema=cli_flags.flag_schema(), procedure="evaluate",
                                overwrite=True)
    with pytest.raises(UserError, match="did not write"):
        RunDir(str(own)).claim(cfg)
    assert sorted(os.listdir(own)) == ["notes.txt"]


def test_a_damaged_result_is_deleted_only_by_a_process_that_writes_the_run(tmp_path, capsys):
    """A reader that finds result.json damaged needs the run alone to heal it: while another
    process reads the run, the file stays and the command is refused."""
    from zskd_tf.runtime import run_dir
    path, cfg = _finished_run(str(tmp_path / "r"))
    result = os.path.join(path, "result.json")
    with open(result, "r+b") as f:
        f.truncate(10)
    with _hold(path, fcntl.LOCK_SH):
        with pytest.raises(UserError, match="being read by another zskd_tf process"):
            RunDir(path).check(cfg)
        assert os.path.getsize(result) == 10
    try:
        run = RunDir(path)
        assert run.check(cfg) and run.result() is None  # the same run, unfinished: completed again
        assert not os.path.exists(result)
        assert "result.json is damaged" in capsys.readouterr().err
    finally:
        run_dir.release_locks()


def test_leftovers_of_killed_atomic_writes_are_removed_on_the_next_start(tmp_path):
    cfg = types.SimpleNamespace(flag_schema=cli_flags.flag_schema(), procedure="evaluate",
                                overwrite=False)
    run = RunDir(str(tmp_path / "r"))
    run.claim(cfg)
    leftovers = [run.file(".stats.npz.k2j4_x.tmp"), run.file("seed_0", ".model.keras.a1b2.tmp"),
                 run.file("saved_model.old")]
    for path in leftovers:
        os.makedirs(path)
        with open(os.path.join(path, "item"), "wb") as f:
            f.write(b"\0" * 100_000)
    batch = run.file("batches", "batch_000000.npz")
    os.makedirs(os.path.dirname(batch))
    np.savez(batch, x=np.zeros(3))
    RunDir(run.path).claim(cfg)
    assert not any(os.path.exists(p) for p in leftovers)
    assert os.path.exists(batch) and os.path.exists(run.file("flags.cfg"))


def _synthetic_set(path, teacher_dir, *, spec=None, dataset="fashion_mnist", weights=None):
    """20 images for the LeNet-5 teacher, recording ``weights`` as its teacher's digest (the
    real teacher's when None)."""
    from zskd_tf import model_io
    loaded = model_io.load_classifier(teacher_dir)
    made_by = model_io.fingerprint(loaded)
    if weights is not None:
        made_by = {**made_by, "weights_sha256": weights}
    x = np.random.default_rng(0).uniform(0, 1, (20, 32, 32, 1)).astype(np.float32)
    synthetic.save_synthetic(path, x, np.arange(20) % 10, input_spec=spec or loaded.spec,
                             dataset=dataset, method="test", teacher=made_by)
    return str(path)


@pytest.mark.parametrize("kind,fragment", [
    ("teacher", "another teacher"),
    ("input_mapping", "another input mapping"),
    ("dataset", "names the dataset mnist"),
])
@pytest.mark.slow
def test_distill_refuses_a_synthetic_set_of_another_teacher(kind, fragment, lenet5_teacher,
                                                           tmp_path):
    options = {"teacher": {"weights": "0" * 64},
               "input_mapping": {"spec": pp.input_spec_for("fashion_mnist", "wrn", (32, 32, 1))},
               "dataset": {"dataset": "mnist"}}[kind]
    npz = _synthetic_set(tmp_path / "foreign.npz", lenet5_teacher, **options)
    run = str(tmp_path / "r")
    proc = run_cli("--procedure=distill", f"--teacher={lenet5_teacher}", "--student=lenet5_half",
                   f"--dataset={npz}", f"--run_dir={run}")
    assert_user_error(proc, "foreign.npz", fragment, "--allow_foreign_synthetic")
    assert not os.path.exists(run)


@pytest.mark.slow
def test_distill_on_a_foreign_synthetic_set_on_purpose(lenet5_teacher, tmp_path):
    npz = _synthetic_set(tmp_path / "foreign.npz", lenet5_teacher, weights="0" * 64)
    own = _synthetic_set(tmp_path / "own.npz", lenet5_teacher)
    common = ["--procedure=distill", f"--teacher={lenet5_teacher}", "--student=lenet5_half",
              "--epochs=1", "--batch_size=10", "--max_test_examples=50", "--verbose=quiet"]
    proc = run_cli(*common, f"--dataset={npz}", "--allow_foreign_synthetic",
                   f"--run_dir={tmp_path / 'a'}", check=True)
    assert "another teacher" in proc.stdout  # said, not silent
    proc = run_cli(*common, f"--dataset={own}", f"--run_dir={tmp_path / 'b'}", check=True)
    assert "warning" not in proc.stdout


@pytest.mark.slow
def test_a_finished_run_whose_teacher_changed_is_stale(lenet5_teacher, tmp_path):
    import keras
    teacher = str(tmp_path / "teacher")
    shutil.copytree(lenet5_teacher, teacher)
    args = ["--procedure=data_impressions", f"--teacher={teacher}", "--num_samples=20",
            "--synthesis_batch_size=20", "--synthesis_steps=2", "--verbose=quiet",
            f"--run_dir={tmp_path / 'di'}"]
    run_cli(*args, check=True)
    assert "already finished" in run_cli(*args, check=True).stdout
    model_path = os.path.join(teacher, "model.keras")  # the teacher "retrained in place"
    model = keras.saving.load_model(model_path, compile=False)
    model.set_weights([w * 1.01 for w in model.get_weights()])
    model.save(model_path)
    assert_user_error(run_cli(*args), "stale", f"--teacher={teacher}", "--overwrite")
    redone = run_cli(*args, "--overwrite", check=True)
    assert "already finished" not in redone.stdout


def test_an_input_directory_is_known_by_its_products_not_its_savedmodel_bytes(tmp_path):
    from zskd_tf.runtime import integrity
    variables = tmp_path / "run" / "saved_model" / "variables"
    variables.mkdir(parents=True)
    rebuilt = [variables / "variables.data-00000-of-00001", variables / "variables.index",
               variables.parent / "saved_model.pb", variables.parent / "fingerprint.pb"]
    for path in [*rebuilt, tmp_path / "run" / "model.keras"]:
        path.write_bytes(b"first export")
    before = integrity.path_sha256(str(tmp_path / "run"))
    for path in rebuilt:  # exported again: other bytes, same weights
        path.write_bytes(b"second export")
    assert integrity.path_sha256(str(tmp_path / "run")) == before
    (tmp_path / "run" / "model.keras").write_bytes(b"retrained")
    assert integrity.path_sha256(str(tmp_path / "run")) != before
    assert not integrity.rebuilt_on_export("run/variables.json")


def test_digests_ignore_save_times_but_not_content(tmp_path):
    import keras

    from zskd_tf.runtime import integrity
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    first, second = str(tmp_path / "a.keras"), str(tmp_path / "b.keras")
    model.save(first)
    time.sleep(1.1)  # metadata.json holds the save time
    model.save(second)
    assert integrity.file_sha256(first) == integrity.file_sha256(second)
    data = bytearray(open(first, "rb").read())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "c.keras"
    damaged.write_bytes(bytes(data))
    assert integrity.file_sha256(str(damaged)) != integrity.file_sha256(first)
    x = np.ones((2, 32, 32, 1), np.float32)
    spec = pp.input_spec_for("fashion_mnist", "lenet", (32, 32, 1))
    paths = [str(tmp_path / f"s{i}.npz") for i in range(3)]
    for i, path in enumerate(paths):  # "created" differs; the third has other images
        synthetic.save_synthetic(path, x * (1 + (i == 2)), np.array([0, 1]), input_spec=spec,
                                 dataset="fashion_mnist", method="test")
        time.sleep(1.1)
    digests = [integrity.file_sha256(p) for p in paths]
    assert digests[0] == digests[1] != digests[2]


def test_locks_are_released_when_an_in_process_procedure_returns(tmp_path):
    from zskd_tf.runtime import run_dir as run_dir_lib
    cfg = types.SimpleNamespace(flag_schema=cli_flags.flag_schema(), procedure="evaluate",
                                overwrite=False)
    run = RunDir(str(tmp_path / "r"))
    run.claim(cfg)
    marker = run.file(".zskd_tf_run")
    with open(marker, "a") as f, pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held (flock: per open file)
    run_dir_lib.release_locks()
    with open(marker, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.parametrize("line, outcome, valid_text", [
    ("--verbose=epoch", "warned", False),  # an operational flag: the run is still known
    ("--verbose=epoch", "warned", True),  # damage that still reads as printable UTF-8
    ("--seed=3", "refused", False),  # a flag that defines the run: what it was is unknown
])
def test_a_damaged_flags_cfg_is_never_taken_silently(line, outcome, valid_text, tmp_path,
                                                     capsys):
    cfg = types.SimpleNamespace(flag_schema=cli_flags.flag_schema(), procedure="evaluate",
                                overwrite=False, seed=3, verbose="epoch")
    run = RunDir(str(tmp_path / "r"))
    run.claim(cfg)
    saved = open(run.file("flags.cfg"), "rb").read()
    assert line.encode() in saved
    damaged = (line[:-1] + "\u041e").encode() if valid_text else (  # a Cyrillic O
        line.encode()[:3] + bytes(b ^ 0xFF for b in line.encode()[3:]))
    open(run.file("flags.cfg"), "wb").write(saved.replace(line.encode(), damaged))
    capsys.readouterr()
    if outcome == "warned":
        assert RunDir(run.path).check(cfg) is True
        assert "flags.cfg is damaged" in capsys.readouterr().err
    else:
        with pytest.raises(Exception, match="flags.cfg is damaged"):
            RunDir(run.path).check(cfg)


def test_a_keras_config_is_digested_without_python_object_ids(tmp_path):
    """The same model saved by two processes differs only in ``shared_object_id`` (an id())."""
    from zskd_tf.runtime import integrity

    def keras_file(name, object_id, units):
        path = str(tmp_path / name)
        config = {"layers": [{"dtype": {"shared_object_id": object_id}, "units": units},
                             {"dtype": {"shared_object_id": object_id}}]}
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", json.dumps(config))
            archive.writestr("model.weights.h5", b"weights")
        return integrity.file_sha256(path)

    assert keras_file("a.keras", 1397, 8) == keras_file("b.keras", 2024, 8)
    assert keras_file("a.keras", 1397, 8) != keras_file("c.keras", 1397, 9)

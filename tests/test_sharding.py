"""Sharded synthesis: ``--shard=i/N`` runs of data_impressions / optimize_dataset joined by
``--procedure=merge`` make what one process makes, bit for bit; bad shard specs and bad sets of
shards are refused with one ``error:`` line before anything is written."""
import os
import shutil

import numpy as np
import pytest

from helpers import assert_user_error, read_json, run_cli
from zskd_tf.data import synthetic
from zskd_tf.errors import UserError
from zskd_tf.runtime.batch_store import BatchStore, parse_shard

# 3 batches: with 2 shards, shard 0 makes batches 0 and 2, shard 1 makes batch 1.
IMPRESSIONS = ["--procedure=data_impressions", "--num_samples=60", "--synthesis_batch_size=20",
               "--synthesis_steps=10", "--deterministic", "--verbose=quiet"]


def test_parse_shard():
    assert parse_shard(None) == (0, 1)
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/2", "2/2", "a/b", "1", "-1/2", "1/0", "0/"):
        with pytest.raises(UserError):
            parse_shard(bad)


def test_store_of_a_shard_makes_every_nth_batch(tmp_path):
    assert BatchStore(str(tmp_path), 7, (1, 3)).pending() == [1, 4]
    assert BatchStore(str(tmp_path), 7).pending() == list(range(7))


@pytest.mark.parametrize("shard,fragment", [("3/2", "0..1"), ("a/b", "give i/N"),
                                            ("2/2", "0..1")])
def test_bad_shard_spec_is_refused_before_anything_is_written(tmp_path, shard, fragment):
    run = str(tmp_path / "run")
    assert_user_error(run_cli(*IMPRESSIONS, f"--run_dir={run}", "--teacher=absent",
                              f"--shard={shard}"), "--shard", fragment)
    assert not os.path.exists(run)


def test_shard_and_inputs_of_another_procedure_are_refused(tmp_path):
    assert_user_error(run_cli("--procedure=train", f"--run_dir={tmp_path / 'r'}",
                              "--shard=0/2"), "--shard is for")
    assert_user_error(run_cli("--procedure=train", f"--run_dir={tmp_path / 'r'}",
                              "--inputs=a,b"), "--inputs is for --procedure=merge")
    assert not os.path.exists(tmp_path / "r")


@pytest.fixture(scope="module")
def impression_runs(lenet5_teacher, tmp_path_factory):
    """{name: run directory}: one process, its two shards, and a shard of another command."""
    root = tmp_path_factory.mktemp("shards")
    args = [*IMPRESSIONS, f"--teacher={lenet5_teacher}"]
    runs = {name: str(root / name) for name in ("single", "s0", "s1", "other1")}
    run_cli(*args, f"--run_dir={runs['single']}", check=True)
    run_cli(*args, f"--run_dir={runs['s0']}", "--shard=0/2", check=True)
    run_cli(*args, f"--run_dir={runs['s1']}", "--shard=1/2", check=True)
    run_cli(*args, f"--run_dir={runs['other1']}", "--shard=1/2", "--seed=7", check=True)
    return runs


@pytest.mark.slow
def test_two_shards_merged_equal_one_process_bit_for_bit(impression_runs, lenet5_teacher,
                                                         tmp_path):
    runs = impression_runs
    assert sorted(os.listdir(os.path.join(runs["s0"], "batches"))) == [
        "batch_000000.npz", "batch_000002.npz"]
    assert not os.path.exists(os.path.join(runs["s0"], "impressions.npz"))
    merged = str(tmp_path / "merged")
    run_cli("--procedure=merge", f"--run_dir={merged}", "--verbose=quiet",
            f"--inputs={runs['s1']},{runs['s0']}", check=True)
    a = synthetic.load_synthetic(os.path.join(runs["single"], "impressions.npz"))
    b = synthetic.load_synthetic(os.path.join(merged, "impressions.npz"))
    for name in ("x", "y", "soft_targets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    single, joined = (read_json(os.path.join(d, "result.json")) for d in (runs["single"], merged))
    assert joined["mean_loss"] == single["mean_loss"]
    with open(os.path.join(runs["single"], "flags.cfg")) as f1, \
            open(os.path.join(merged, "flags.cfg")) as f2:
        kept = [[line for line in f if not line.startswith(("#", "--run_dir"))] for f in (f1, f2)]
    assert kept[0] == kept[1] and any(line.startswith("--seed") for line in kept[0])
    again = run_cli(*IMPRESSIONS, f"--teacher={lenet5_teacher}", f"--run_dir={merged}",
                    check=True)  # the merged directory is the unsharded command's run
    assert "run already finished" in again.stdout


@pytest.mark.slow
@pytest.mark.parametrize("inputs,fragments", [
    (("s0", "other1"), ("another command", "--seed=7")),
    (("s0", "s0"), ("twice",)),
    (("s1", "s1copy"), ("both shard 1/2",)),
    (("s0",), ("shard(s) 1/2 missing",)),
    (("s0", "single"), ("made without --shard",)),
])
def test_merge_refuses_a_bad_set_of_shards(impression_runs, tmp_path, inputs, fragments):
    runs = dict(impression_runs)
    if "s1copy" in inputs:
        runs["s1copy"] = str(tmp_path / "s1copy")
        shutil.copytree(runs["s1"], runs["s1copy"])
    merged = str(tmp_path / "merged")
    proc = run_cli("--procedure=merge", f"--run_dir={merged}",
                   "--inputs=" + ",".join(runs[name] for name in inputs))
    assert_user_error(proc, *fragments)
    assert not os.path.exists(merged)


@pytest.mark.slow
def test_merge_accepts_a_glob_and_refuses_an_unfinished_shard(impression_runs, tmp_path):
    runs = impression_runs
    pattern = os.path.join(os.path.dirname(runs["s0"]), "s[01]")
    merged = str(tmp_path / "merged")
    run_cli("--procedure=merge", f"--run_dir={merged}", f"--inputs={pattern}", check=True)
    assert os.path.exists(os.path.join(merged, "impressions.npz"))
    unfinished = str(tmp_path / "unfinished")
    shutil.copytree(runs["s1"], unfinished)
    os.remove(os.path.join(unfinished, "result.json"))
    assert_user_error(run_cli("--procedure=merge", f"--run_dir={tmp_path / 'm2'}",
                              f"--inputs={runs['s0']},{unfinished}"), "not a finished run")
    assert not os.path.exists(tmp_path / "m2")


@pytest.mark.slow
def test_optimize_dataset_shards_merged_equal_one_process(lenet5_teacher, tmp_path):
    stats = str(tmp_path / "stats")
    run_cli("--procedure=compute_stats", f"--teacher={lenet5_teacher}", f"--run_dir={stats}",
            "--max_train_examples=500", "--verbose=quiet", check=True)
    args = ["--procedure=optimize_dataset", "--objective=spectral_layer_pairs",
            "--num_samples=40", "--synthesis_batch_size=20", "--synthesis_steps=10",
            "--deterministic", "--verbose=quiet", f"--teacher={lenet5_teacher}",
            f"--stats={stats}"]
    run_cli(*args, f"--run_dir={tmp_path / 'single'}", check=True)
    for i in (0, 1):
        run_cli(*args, f"--run_dir={tmp_path / f'shard{i}'}", f"--shard={i}/2", check=True)
    run_cli("--procedure=merge", f"--run_dir={tmp_path / 'merged'}", "--verbose=quiet",
            f"--inputs={tmp_path / 'shard*'}", check=True)
    name = "spectral_layer_pairs.npz"
    a = synthetic.load_synthetic(str(tmp_path / "single" / name))
    b = synthetic.load_synthetic(str(tmp_path / "merged" / name))
    for field in ("x", "y", "soft_targets"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))

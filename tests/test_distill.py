"""Distillation: losses and their reductions, the frozen teacher, replicas, the CLI."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_user_error, read_json, run_cli, two_cpu_strategy
from zskd_tf import losses
from zskd_tf.data import datasets, synthetic
from zskd_tf.data import preprocess as pp
from zskd_tf.procedures.distill import _few_shot_epochs
from zskd_tf.trainers.distiller import DistillConfig, Distiller

RNG = np.random.default_rng(0)


def test_kl_is_pytorch_element_mean():
    t = RNG.normal(size=(6, 10)).astype(np.float32)
    s = RNG.normal(size=(6, 10)).astype(np.float32)
    T = 4.0
    p = np.exp(t / T) / np.exp(t / T).sum(1, keepdims=True)
    q = np.exp(s / T) / np.exp(s / T).sum(1, keepdims=True)
    expected = np.mean(p * (np.log(p) - np.log(q)))  # sum over B*C / (B*C)
    assert float(losses.kl_element_mean(t, s, T)) == pytest.approx(expected, rel=1e-5)
    batch_mean = keras.losses.KLDivergence()(p, q)
    assert float(losses.kl_element_mean(t, s, T)) == pytest.approx(float(batch_mean) / 10,
                                                                   rel=1e-4)


def test_kd_combines_ce_and_kl_as_fewshot():
    t = RNG.normal(size=(5, 10)).astype(np.float32)
    s = RNG.normal(size=(5, 10)).astype(np.float32)
    y = RNG.integers(0, 10, 5)
    got = float(losses.kd(y, s, t, alpha=0.9, temperature=4.0))
    want = 0.1 * float(losses.cross_entropy(y, s)) + 28.8 * float(losses.kl_element_mean(t, s, 4.0))
    assert got == pytest.approx(want, rel=1e-5)
    assert float(losses.kd(y, s, t, 0.0, 4.0)) == pytest.approx(float(losses.cross_entropy(y, s)))


def test_attention_maps_and_loss():
    f = RNG.normal(size=(3, 4, 4, 8)).astype(np.float32)
    g = RNG.normal(size=(3, 4, 4, 16)).astype(np.float32)
    a = losses.attention_map(f).numpy()
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    ref = (f ** 2).mean(-1).reshape(3, -1)
    np.testing.assert_allclose(a, ref / np.linalg.norm(ref, axis=1, keepdims=True), rtol=1e-5)
    assert float(losses.attention_transfer([f], [f])) == pytest.approx(0.0, abs=1e-12)
    b = losses.attention_map(g).numpy()
    assert float(losses.attention_transfer([f, f], [g, g])) == pytest.approx(
        2 * np.mean((a - b) ** 2), rel=1e-5)


def _tapped_net(seed, width, batchnorm):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(width, 3, padding="same", name="tap_g1")(inputs)
    if batchnorm:
        h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))


def _distill_once(strategy, x, y, teacher_weights):
    with strategy.scope():
        teacher = _tapped_net(1, 6, batchnorm=True)
        teacher.set_weights(teacher_weights)
        student = _tapped_net(2, 4, batchnorm=False)
        trainer = Distiller(student, teacher, DistillConfig(alpha=0.9, temperature=4.0,
                                                            beta=1000.0, at_taps=("g1",)),
                            weight_decay=5e-4)
        opt = keras.optimizers.SGD(0.05, momentum=0.9)
        trainer.compile(optimizer=opt)
        opt.build(student.trainable_variables)
    trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x)), epochs=2, verbose=0)
    return student.get_weights(), teacher.get_weights()


def test_teacher_frozen_and_replicas_agree():
    x = RNG.normal(size=(8, 8, 8, 1)).astype(np.float32)
    y = RNG.integers(0, 3, 8)
    teacher_weights = [w + RNG.normal(size=w.shape).astype(np.float32) * 0.1
                       for w in _tapped_net(1, 6, batchnorm=True).get_weights()]
    one, t_after = _distill_once(tf.distribute.OneDeviceStrategy("/cpu:0"), x, y,
                                 teacher_weights)
    two, _ = _distill_once(two_cpu_strategy(), x, y,
                           teacher_weights)
    for before, after in zip(teacher_weights, t_after):  # incl. BN moving mean/variance
        np.testing.assert_array_equal(before, after)
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(one, _tapped_net(2, 4, batchnorm=False).get_weights()))
    assert moved > 1e-4  # the student did learn
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


TINY = ["--dataset=fashion_mnist", "--epochs=1", "--batch_size=50", "--max_test_examples=500",
        "--verbose=quiet"]


@pytest.mark.slow
def test_cli_kd_student(lenet5_teacher, tmp_path):
    run = str(tmp_path / "kd")
    run_cli("--procedure=distill", f"--run_dir={run}", f"--teacher={lenet5_teacher}",
            "--student=lenet5_half", "--max_train_examples=2000", *TINY, check=True)
    result = read_json(os.path.join(run, "result.json"))
    assert result["test_accuracy"] > 0.3
    assert result["trainable_params"] == 35820
    assert result["compression_ratio"] == pytest.approx(61706 / 35820)
    info = read_json(os.path.join(run, "model_info.json"))
    assert info["model"] == "lenet5_half"
    teacher_info = read_json(os.path.join(lenet5_teacher, "model_info.json"))
    assert info["input_spec"] == teacher_info["input_spec"]


@pytest.mark.slow
def test_cli_few_shot_and_no_teacher(lenet5_teacher, tmp_path):
    run = str(tmp_path / "fs")
    run_cli("--procedure=distill", f"--run_dir={run}", f"--teacher={lenet5_teacher}",
            "--student=lenet5_half", "--samples_per_class=5", *TINY, check=True)
    samples = read_json(os.path.join(run, "samples.json"))
    raw = datasets.load_dataset("fashion_mnist")
    labels = raw.train_y[samples["indices"]]
    assert np.bincount(labels, minlength=10).tolist() == [5] * 10
    base = str(tmp_path / "noteacher")
    run_cli("--procedure=distill", f"--run_dir={base}", "--student=lenet5_half",
            "--alpha=0", "--beta=0", "--samples_per_class=5", *TINY, check=True)
    assert read_json(os.path.join(base, "samples.json"))["indices"] == samples["indices"]
    assert read_json(os.path.join(base, "result.json"))["teacher"] is None


def test_iteration_matching_follows_the_fewshot_table():
    # docs/methods/kd_at_moonshine.md, "Few-shot KD+AT and the no-teacher baseline": CIFAR 200
    # epochs x 50,000 / (10 M); SVHN 100 epochs, M < 100 scaled by M/100.
    assert _few_shot_epochs(200, 50000, 10, 10, "cifar10") == 100000
    assert _few_shot_epochs(200, 50000, 10, 200, "cifar10") == 5000
    assert _few_shot_epochs(200, 50000, 10, 75, "cifar10") == 13333
    assert _few_shot_epochs(100, 73257, 10, 10, "svhn") == 7325
    assert _few_shot_epochs(100, 73257, 10, 50, "svhn") == 7325
    assert _few_shot_epochs(100, 73257, 10, 100, "svhn") == 7325


@pytest.mark.slow
def test_cli_synthetic_stored_targets_and_fine_tuning(lenet5_teacher, tmp_path):
    raw = datasets.load_dataset("fashion_mnist")
    spec = pp.InputSpec.from_dict(read_json(os.path.join(lenet5_teacher,
                                                         "model_info.json"))["input_spec"])
    x = pp.preprocess(raw.train_x[:300], spec).numpy()
    soft = np.eye(10, dtype=np.float32)[raw.train_y[:300]] * 0.9 + 0.01
    npz = str(tmp_path / "syn.npz")
    synthetic.save_synthetic(npz, x, raw.train_y[:300], soft, input_spec=spec,
                             dataset="fashion_mnist", method="test")
    run = str(tmp_path / "syn")
    run_cli("--procedure=distill", f"--run_dir={run}", f"--dataset={npz}",
            "--student=lenet5_half", "--loss=soft_ce", "--targets=stored", "--temperature=1",
            "--epochs=2", "--batch_size=50", "--max_test_examples=300", "--verbose=quiet",
            "--ema_momentum=0.9", check=True)
    result = read_json(os.path.join(run, "result.json"))
    assert result["test_accuracy"] > 0.2 and result["ema_momentum"] == 0.9
    tuned = str(tmp_path / "tuned")
    run_cli("--procedure=distill", f"--run_dir={tuned}", f"--teacher={lenet5_teacher}",
            f"--init_from={run}", "--anchor_weight=1", "--freeze_bn", "--samples_per_class=5",
            *TINY, check=True)
    assert read_json(os.path.join(tuned, "model_info.json"))["model"] == "lenet5_half"


@pytest.mark.slow
def test_cli_distill_bad_input(lenet5_teacher, tmp_path):
    r = str(tmp_path / "r")
    assert_user_error(run_cli("--procedure=distill", f"--run_dir={r}", "--student=lenet5_half",
                              *TINY), "--teacher")
    assert_user_error(run_cli("--procedure=distill", f"--run_dir={r}",
                              f"--teacher={lenet5_teacher}", "--student=hinton800",
                              "--beta=1000", *TINY), "taps")
    assert_user_error(run_cli("--procedure=distill", f"--run_dir={r}",
                              f"--teacher={lenet5_teacher}", "--student=lenet5_half",
                              "--alpha=1.5", *TINY), "--alpha")
    assert_user_error(run_cli("--procedure=distill", f"--run_dir={r}",
                              f"--teacher={lenet5_teacher}", "--student=lenet5_half",
                              "--ema_momentum=1", *TINY), "--ema_momentum")
    assert_user_error(run_cli("--procedure=distill", f"--run_dir={r}",
                              f"--teacher={lenet5_teacher}", "--student=wrn-16-1",
                              f"--init_from={lenet5_teacher}", *TINY), "architecture")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 32, 32, 1), np.float32))
    assert_user_error(run_cli("--procedure=distill", f"--run_dir={r}", f"--dataset={bad}",
                              f"--teacher={lenet5_teacher}", "--student=lenet5_half",
                              "--verbose=quiet"), "bad.npz")
    assert not os.path.exists(r) or not os.listdir(r)  # refused runs leave nothing behind

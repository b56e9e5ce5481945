"""ZSKD: concentration matrix, Dirichlet targets, the impressions loss, data_impressions (CLI,
resume, replicas, foreign teachers, bad input), the visualisation tools and the flagfiles."""
import glob
import json
import os
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from helpers import REPO, assert_user_error, cli_env, read_json, run_cli, two_cpu_strategy
from zskd_tf import api, cli_flags, model_io
from zskd_tf.data import preprocess as pp
from zskd_tf.data import synthetic
from zskd_tf.errors import UserError
from zskd_tf.procedures import data_impressions
from zskd_tf.trainers.impressions import ImpressionSynthesizer
from zskd_tf.zskd import concentration as conc
from zskd_tf.zskd import targets as tg
from zskd_tf.zskd import teacher as teacher_lib
from zskd_tf.zskd.config import ImpressionConfig

RNG = np.random.default_rng(0)
TINY = ["--num_samples=40", "--synthesis_batch_size=20", "--synthesis_steps=25",
        "--deterministic", "--verbose=epoch"]


# --- concentration matrix ----------------------------------------------------------------------
def _numpy_concentration(kernel, eps=1e-4):
    """The paper's recipe written out: cosine of kernel columns, per-row min-max, + eps."""
    k = kernel.shape[1]
    cos = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            a, b = kernel[:, i], kernel[:, j]
            cos[i, j] = a @ b / np.sqrt((a @ a) * (b @ b))
    out = np.empty_like(cos)
    for i in range(k):
        out[i] = (cos[i] - cos[i].min()) / (cos[i].max() - cos[i].min())
    return out + eps


def _cnn(final, *, softmax_layer=False, hidden=6, input_shape=(28, 28, 1)):
    """A small foreign CNN; ``final``: a layer (e.g. Dense(10)) or None (no final Dense)."""
    inputs = keras.Input(input_shape)
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    if final is None:
        h = keras.layers.Reshape((hidden, 1))(h)
        out = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(10, 1)(h))
    else:
        out = final(h)
    if softmax_layer:
        out = keras.layers.Softmax()(out)
    return keras.Model(inputs, out)


# Hand-made kernel (6 features x 10 classes): small integers, no two columns parallel.
HAND_KERNEL = np.array([[1, 0, 2, 0, 1, -1, 0, 3, 1, 0],
                        [0, 1, 1, 0, -2, 0, 1, 0, 2, 1],
                        [2, 1, 0, 1, 0, 1, -1, 0, 0, 2],
                        [0, 0, 1, 3, 1, 0, 2, -1, 0, 1],
                        [1, -1, 0, 0, 1, 2, 0, 1, 1, 0],
                        [0, 2, 0, 1, 0, 1, 1, 0, -1, 3]], np.float32)


@pytest.mark.parametrize("activation, softmax_layer", [
    (None, False), ("softmax", False), (None, True)])
def test_concentration_of_a_hand_made_dense_layer(tmp_path, activation, softmax_layer):
    model = _cnn(keras.layers.Dense(10, activation=activation, name="head"),
                 softmax_layer=softmax_layer)
    model.get_layer("head").set_weights([HAND_KERNEL, np.arange(10, dtype=np.float32)])
    path = str(tmp_path / "foreign.keras")
    model.save(path)
    teacher = teacher_lib.load_teacher(path, dataset="mnist", dataset_given=True)
    assert teacher.final_layer == "head"
    got = conc.concentration_matrix(teacher.kernel)
    want = _numpy_concentration(HAND_KERNEL.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.diag(got), 1 + 1e-4)
    np.testing.assert_allclose(got.min(axis=1), 1e-4)
    # Row-wise, not column-wise (da2so's broadcast bug) nor global min-max.
    assert not np.allclose(got, _numpy_concentration(HAND_KERNEL).T, atol=1e-3)
    # The logits are the Dense's pre-activation even behind a softmax.
    x = RNG.uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    features = keras.Model(model.input, model.get_layer("hidden").output)(x).numpy()
    np.testing.assert_allclose(teacher.logits_model(x).numpy(),
                               features @ HAND_KERNEL + np.arange(10), rtol=1e-5, atol=1e-5)


def test_final_layer_flag_and_input_range(tmp_path):
    model = _cnn(keras.layers.Dense(10, name="head"), hidden=10)
    path = str(tmp_path / "m.keras")
    model.save(path)
    chosen = teacher_lib.load_teacher(path, dataset="mnist", dataset_given=True,
                                      final_layer="hidden", input_range=(-1.0, 1.0))
    np.testing.assert_array_equal(chosen.kernel, model.get_layer("hidden").kernel.numpy())
    assert chosen.logits_from == "output"  # an inner Dense: the logits stay the output
    low, high = chosen.value_range
    np.testing.assert_allclose([low[0], high[0]], [-1.0, 1.0], atol=1e-6)
    raw = np.full((1, 28, 28, 1), 255.0)
    assert float(pp.preprocess(raw, chosen.spec).numpy().max()) == pytest.approx(1.0)
    with pytest.raises(UserError, match="no such layer"):
        teacher_lib.load_teacher(path, dataset="mnist", dataset_given=True, final_layer="nope")
    with pytest.raises(UserError, match="not a Dense"):
        teacher_lib.load_teacher(path, dataset="mnist", dataset_given=True,
                                 final_layer=model.layers[1].name)
    with pytest.raises(UserError, match="LOW < HIGH"):
        teacher_lib.parse_input_range(["1", "0"])


def test_degenerate_kernels_are_refused():
    with pytest.raises(UserError, match="all-zero"):
        conc.concentration_matrix(np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(UserError, match="NaN"):
        conc.concentration_matrix(np.array([[1.0, np.nan], [0.0, 1.0]]))


# --- Dirichlet targets -------------------------------------------------------------------------
def test_dirichlet_plan_balance_beta_scaling_and_determinism():
    concentration = conc.concentration_matrix(RNG.normal(size=(8, 4)))
    plan = tg.ImpressionPlan(16000, 4, (1.0, 0.1), 500)
    draws, classes, betas = [], [], []
    for i in range(plan.num_batches):
        draws.append(plan.targets(i, concentration, seed=3))
        k, b = plan.groups(i)
        classes.append(k)
        betas.append(b)
    draws, classes, betas = map(np.concatenate, (draws, classes, betas))
    counts = np.zeros((4, 2), int)
    np.add.at(counts, (classes, betas), 1)
    assert (counts == 2000).all()
    np.testing.assert_allclose(draws.sum(axis=1), 1.0, atol=1e-12)
    for k in range(4):
        for b, beta in enumerate((1.0, 0.1)):
            alpha = beta * concentration[k]
            a0 = alpha.sum()
            sample = draws[(classes == k) & (betas == b)]
            variance = alpha * (a0 - alpha) / (a0 ** 2 * (a0 + 1))  # Dirichlet variance
            # Mean within 5 standard errors of the Dirichlet mean, component-wise.
            standard_error = np.sqrt(variance / len(sample))
            assert np.all(np.abs(sample.mean(axis=0) - alpha / a0) < 5 * standard_error + 1e-3)
            assert sample.var(axis=0).sum() == pytest.approx(variance.sum(), rel=0.1)
    # beta really scales alpha: beta=0.1 targets are much peakier.
    peak = [draws[betas == b].max(axis=1).mean() for b in (0, 1)]
    assert peak[1] > peak[0] + 0.15
    # Batch i depends on (seed, i) only.
    np.testing.assert_array_equal(plan.targets(5, concentration, 3), draws[2500:3000])
    assert not np.allclose(plan.targets(5, concentration, 4), draws[2500:3000])
    shape, low, high = (2, 4, 4, 3), np.array([-1.0, 0, 0]), np.array([1.0, 1, 2])
    first = tg.initial_images(3, 7, shape, low, high)
    np.testing.assert_array_equal(first, tg.initial_images(3, 7, shape, low, high))
    assert (first >= low).all() and (first <= high).all() and first[..., 0].min() < 0
    assert not np.array_equal(first, tg.initial_images(3, 8, shape, low, high))
    # --impression_init=normal: N(0, 1) scaled to the range, clipped: ~half the pixels at low.
    normal = tg.initial_images(3, 7, (64, 8, 8, 3), low, high, init="normal")
    assert (normal >= low).all() and (normal <= high).all()
    at_low = (normal == low).mean(axis=(0, 1, 2))
    assert np.all(np.abs(at_low - 0.5) < 0.05), at_low
    assert 0.1 < (normal == high).mean() < 0.22  # P(N(0,1) > 1) = 0.16


def test_plan_and_betas_refuse_bad_values():
    with pytest.raises(UserError, match="multiple of 10 classes x 2 betas"):
        tg.ImpressionPlan(30, 10, (1.0, 0.1), 10)
    with pytest.raises(UserError, match="divide"):
        tg.ImpressionPlan(40, 10, (1.0, 0.1), 30)
    for bad in (["1.0", "x"], ["0"], ["-1"], ["inf"], []):
        with pytest.raises(UserError, match="--betas"):
            tg.parse_betas(bad)
    assert tg.parse_betas(["1", "0.1"]) == (1.0, 0.1)


def test_impression_config_takes_the_papers_defaults_and_refuses_bad_values():
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["zskd_tf", "--procedure=data_impressions", "--run_dir=r", "--teacher=t",
                     "--impression_tv=0.5", "--betas=2"])
        cfg = cli_flags.config_from_flags()
    config = ImpressionConfig.from_flags(cfg)
    assert (config.betas, config.impression_tv, config.temperature, config.synthesis_steps,
            config.synthesis_batch_size, config.synthesis_lr) == ((2.0,), 0.5, 20.0, 1500, 100,
                                                                  1e-3)
    assert config.num_samples_for("cifar10") == 40000
    with pytest.raises(UserError, match="--num_samples"):
        config.num_samples_for("svhn")  # the paper made no transfer set for it
    assert ImpressionConfig(num_samples=40).num_samples_for("svhn") == 40
    for bad in ({"impression_l2": -1.0}, {"impression_bn_weight": float("nan")},
                {"impression_jitter": -1}, {"impression_init": "zeros"}, {"betas": ["0"]}):
        with pytest.raises(UserError, match=f"--{next(iter(bad))}"):
            ImpressionConfig(**bad)


# --- the impressions loss and its optimisation -------------------------------------------------
def _tiny_teacher():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(3, 3, activation="relu")(keras.layers.BatchNormalization()(inputs))
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(h)))


def _synthesise(strategy, weights, x0, targets, steps=15, **options):
    with strategy.scope():
        teacher = _tiny_teacher()
        teacher.set_weights(weights)
        synth = ImpressionSynthesizer(teacher, x0.shape, 20.0, (0.0, 1.0), **options)
        opt = keras.optimizers.Adam(0.05, epsilon=1e-8)
        synth.compile(optimizer=opt)
        opt.build([synth.images])
    return synth, synth.optimise(x0, targets, steps)


def test_impressions_loss_is_the_papers_cross_entropy_at_t20():
    teacher = _tiny_teacher()
    synth = ImpressionSynthesizer(teacher, (5, 6, 6, 1), 20.0)
    x = RNG.uniform(0, 1, (5, 6, 6, 1)).astype(np.float32)
    y = RNG.dirichlet(np.full(4, 0.3), 5).astype(np.float32)
    z = teacher(x, training=False).numpy().astype(np.float64) / 20.0
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    want = np.mean(-(y * log_p).sum(axis=1))
    got = float(synth.synthesis_loss(tf.constant(x), tf.constant(y)))
    assert got == pytest.approx(want, rel=1e-5)
    # --impression_l2: sseung0703's penalty, l2 * mean_i sum(x_i^2) / 2, on top.
    penalised = ImpressionSynthesizer(teacher, (5, 6, 6, 1), 20.0, image_l2=0.3)
    got = float(penalised.synthesis_loss(tf.constant(x), tf.constant(y)))
    assert got == pytest.approx(want + 0.3 * np.mean((x ** 2).sum(axis=(1, 2, 3))) / 2, rel=1e-5)
    # --impression_tv: summed squared differences of neighbouring pixels, mean over images.
    smooth = ImpressionSynthesizer(teacher, (5, 6, 6, 1), 20.0, image_tv=0.2)
    tv = (np.square(np.diff(x, axis=1)).sum(axis=(1, 2, 3))
          + np.square(np.diff(x, axis=2)).sum(axis=(1, 2, 3)))
    got = float(smooth.synthesis_loss(tf.constant(x), tf.constant(y)))
    assert got == pytest.approx(want + 0.2 * tv.mean(), rel=1e-5)
    # --impression_l2_mix: row r takes weight r mod K; a replica's rows keep their own weights.
    mixed = ImpressionSynthesizer(teacher, (5, 6, 6, 1), 20.0, image_l2=(0.3, 0.0, 0.1))
    squares = (x ** 2).sum(axis=(1, 2, 3))
    row_weights = np.array([0.3, 0.0, 0.1, 0.3, 0.0])
    got = float(mixed.synthesis_loss(tf.constant(x), tf.constant(y)))
    assert got == pytest.approx(want + np.mean(row_weights * squares) / 2, rel=1e-5)
    part = float(mixed.synthesis_loss(tf.constant(x[2:4]), tf.constant(y[2:4]),
                                      tf.constant([2, 3])))
    plain = float(synth.synthesis_loss(tf.constant(x[2:4]), tf.constant(y[2:4])))
    assert part == pytest.approx(plain + np.mean(row_weights[2:4] * squares[2:4]) / 2, rel=1e-5)


def test_a_mixture_of_image_penalties_makes_each_row_as_its_own_penalty_would():
    """Nothing couples two rows of a batch (the teacher's BatchNorm is in inference mode, Adam
    is per pixel), so the rows of a mixed batch are those of one-weight batches up to rounding,
    and two replicas make what one makes."""
    weights = _tiny_teacher().get_weights()
    x0 = RNG.uniform(0, 1, (4, 6, 6, 1)).astype(np.float32)
    y = RNG.dirichlet(np.full(4, 0.3), 4).astype(np.float32)
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    _, mixed = _synthesise(one, weights, x0, y, image_l2=(0.0, 2.0))
    _, light = _synthesise(one, weights, x0, y, image_l2=0.0)
    _, heavy = _synthesise(one, weights, x0, y, image_l2=2.0)
    np.testing.assert_allclose(mixed[0::2], light[0::2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mixed[1::2], heavy[1::2], rtol=1e-5, atol=1e-6)
    assert np.abs(light - heavy).max() > 0.05  # the two weights do make different images
    _, two = _synthesise(two_cpu_strategy(), weights, x0, y, image_l2=(0.0, 2.0))
    np.testing.assert_allclose(mixed, two, rtol=1e-5, atol=1e-6)


def _transforms(x, jitter):
    """Every roll of up to ``jitter`` pixels per axis, mirrored or not: {(dy, dx, flip): image}."""
    out = {}
    for dy in range(-jitter, jitter + 1):
        for dx in range(-jitter, jitter + 1):
            rolled = np.roll(x, (dy, dx), axis=(1, 2))
            out[(dy, dx, False)], out[(dy, dx, True)] = rolled, rolled[:, :, ::-1]
    return out


def test_impression_jitter_and_flip_show_the_teacher_a_seeded_random_roll_and_mirror():
    teacher = _tiny_teacher()
    x = RNG.uniform(0, 1, (5, 6, 6, 1)).astype(np.float32)
    y = RNG.dirichlet(np.full(4, 0.3), 5).astype(np.float32)
    plain = ImpressionSynthesizer(teacher, x.shape, 20.0)
    plain.compile(optimizer=keras.optimizers.Adam(0.05))
    np.testing.assert_array_equal(plain.shown(tf.constant(x)).numpy(), x)
    synth = ImpressionSynthesizer(teacher, x.shape, 20.0, jitter=2, flip=True)
    synth.compile(optimizer=keras.optimizers.Adam(0.05))
    synth.optimizer.build([synth.images])
    candidates = _transforms(x, 2)

    def seen(seed, step):
        synth.batch_seed.assign(seed)
        synth.optimizer.iterations.assign(step)
        shown = synth.shown(tf.constant(x)).numpy()
        matches = [k for k, image in candidates.items() if np.array_equal(shown, image)]
        assert matches, "not a roll of at most 2 pixels, mirrored or not"
        return matches[0]

    drawn = [seen(7, step) for step in range(40)]
    assert len(set(drawn)) > 10  # the offset changes from step to step
    assert {flip for _, _, flip in drawn} == {False, True}
    assert {dy for dy, _, _ in drawn} == {-2, -1, 0, 1, 2}
    assert [seen(7, step) for step in range(40)] == drawn  # a function of seed and step
    assert [seen(8, step) for step in range(40)] != drawn
    # The loss is the teacher's on the shown images.
    synth.batch_seed.assign(7)
    synth.optimizer.iterations.assign(3)
    z = teacher(candidates[drawn[3]], training=False).numpy().astype(np.float64) / 20.0
    want = np.mean(-(y * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))).sum(axis=1))
    got = float(synth.synthesis_loss(tf.constant(x), tf.constant(y)))
    assert got == pytest.approx(want, rel=1e-5)


def test_synthesis_lowers_the_loss_keeps_range_and_replicas_agree():
    weights = _tiny_teacher().get_weights()
    x0 = RNG.uniform(0, 1, (8, 6, 6, 1)).astype(np.float32)
    y = RNG.dirichlet(np.full(4, 0.5), 8).astype(np.float32)
    synth, one = _synthesise(tf.distribute.OneDeviceStrategy("/cpu:0"), weights, x0, y)
    _, two = _synthesise(two_cpu_strategy(), weights, x0, y)
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
    assert one.min() >= 0.0 and one.max() <= 1.0 and np.abs(one - x0).max() > 0.1
    before = float(synth.synthesis_loss(tf.constant(x0), tf.constant(y)))
    assert float(synth.synthesis_loss(tf.constant(one), tf.constant(y))) < before
    for w, w0 in zip(synth.teacher.get_weights(), weights):  # frozen, BN stats included
        np.testing.assert_array_equal(w, w0)
    # With jitter and flip, every replica rolls and mirrors its rows alike.
    _, one = _synthesise(tf.distribute.OneDeviceStrategy("/cpu:0"), weights, x0, y,
                         jitter=1, flip=True)
    _, two = _synthesise(two_cpu_strategy(), weights, x0, y, jitter=1, flip=True)
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)


# --- data_impressions on the LeNet-5 teacher ------------------------------------------------------
@pytest.fixture(scope="module")
def impressions_run(lenet5_teacher, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("zskd") / "di")
    proc = run_cli("--procedure=data_impressions", f"--run_dir={run}",
                   f"--teacher={lenet5_teacher}", *TINY, check=True)
    return run, proc


@pytest.mark.slow
def test_cli_data_impressions_products(impressions_run, lenet5_teacher):
    run, proc = impressions_run
    assert "batch 1/2: loss" in proc.stdout and "batch 2/2: loss" in proc.stdout
    data = synthetic.load_synthetic(os.path.join(run, "impressions.npz"))
    assert data.x.shape == (40, 32, 32, 1) and data.dataset == "fashion_mnist"
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0  # LeNet input range: raw/255
    teacher = model_io.load_classifier(lenet5_teacher).model
    logits = teacher(data.x, training=False).numpy()
    np.testing.assert_array_equal(data.y, logits.argmax(axis=1))
    np.testing.assert_allclose(data.soft_targets, tf.nn.softmax(logits / 20.0).numpy(),
                               atol=1e-5)
    kernel = teacher.get_layer("logits").kernel.numpy()
    np.testing.assert_allclose(np.load(os.path.join(run, "concentration.npy")),
                               _numpy_concentration(kernel.astype(np.float64)), atol=1e-9)
    records = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [r["batch"] for r in records] == [1, 2]
    assert all(r["loss"] < r["initial_loss"] for r in records)
    result = read_json(os.path.join(run, "result.json"))
    assert result["num_impressions"] == 40 and result["temperature"] == 20.0
    assert result["betas"] == [1.0, 0.1] and result["logits"] == "output"
    assert sum(result["y_counts"]) == 40
    rows = np.concatenate([np.load(p)["concentration_row"]
                           for p in sorted(glob.glob(os.path.join(run, "batches", "*.npz")))])
    assert np.bincount(rows).tolist() == [4] * 10
    again = run_cli("--procedure=data_impressions", f"--run_dir={run}",
                    f"--teacher={lenet5_teacher}", *TINY, check=True)
    assert "already finished" in again.stdout


@pytest.mark.slow
def test_cli_sseung_start_and_image_l2_darken_the_impressions(impressions_run, lenet5_teacher,
                                                              tmp_path):
    """--impression_init=normal --impression_l2: half-black start, pixels pulled to 0, and the
    settings are recorded; the default run (uniform start, no penalty) stays near mean 0.5."""
    run = str(tmp_path / "sseung")
    run_cli("--procedure=data_impressions", f"--run_dir={run}", f"--teacher={lenet5_teacher}",
            *TINY, "--impression_init=normal", "--impression_l2=0.1", "--synthesis_lr=0.05",
            check=True)
    x = synthetic.load_synthetic(os.path.join(run, "impressions.npz")).x
    default = synthetic.load_synthetic(os.path.join(impressions_run[0], "impressions.npz")).x
    assert abs(default.mean() - 0.5) < 0.05 and x.mean() < 0.25 and (x == 0).mean() > 0.4
    result = read_json(os.path.join(run, "result.json"))
    assert (result["impression_init"], result["impression_l2"]) == ("normal", 0.1)
    meta = synthetic.load_synthetic(os.path.join(run, "impressions.npz")).meta
    assert meta["extra"]["image_l2"] == 0.1 and meta["extra"]["init"].startswith("N(0, 1)")


@pytest.mark.slow
def test_cli_a_mixture_of_image_penalties_is_made_and_recorded(lenet5_teacher, tmp_path):
    run = str(tmp_path / "mix")
    proc = run_cli("--procedure=data_impressions", f"--run_dir={run}",
                   f"--teacher={lenet5_teacher}", *TINY, "--impression_init=normal",
                   "--impression_l2_mix=0,0.1", "--synthesis_lr=0.05", check=True)
    assert "(normal start, image L2 0,0.1 by row)" in proc.stdout
    data = synthetic.load_synthetic(os.path.join(run, "impressions.npz"))
    assert data.x[1::2].mean() < data.x[0::2].mean() - 0.05  # odd rows: the penalised ones
    assert read_json(os.path.join(run, "result.json"))["impression_l2_mix"] == [0.0, 0.1]
    assert data.meta["extra"]["image_l2_mix"] == [0.0, 0.1]


def test_the_progress_line_names_the_start_and_the_image_priors():
    assert ImpressionConfig().priors == "uniform start, image L2 0"
    assert ImpressionConfig(impression_init="normal", impression_l2=1e-3,
                            impression_tv=1e-2).priors == "normal start, image L2 0.001, TV 0.01"
    assert (ImpressionConfig(impression_l2_mix=("1e-3", "0.1"), impression_bn_weight=1,
                             impression_jitter=2, impression_flip=True).priors
            == "uniform start, image L2 0.001,0.1 by row, BN prior 1, jitter 2, flips")


def test_impression_l2_mix_is_checked():
    with pytest.raises(UserError, match="--impression_l2_mix must be numbers"):
        api.config("data_impressions", "/tmp/x", teacher="t", impression_l2_mix=["1e-3", "x"])
    with pytest.raises(UserError, match="--impression_l2_mix must be a finite number >= 0"):
        api.config("data_impressions", "/tmp/x", teacher="t", impression_l2_mix=["-1"])
    assert api.config("data_impressions", "/tmp/x", teacher="t",
                      impression_l2_mix="1e-3,0.1").impression_l2_mix == ["1e-3", "0.1"]


@pytest.mark.slow
def test_cli_bfloat16_input_gradient_is_recorded_and_close_to_float32(impressions_run,
                                                                      lenet5_teacher, tmp_path):
    run = str(tmp_path / "bf16")
    proc = run_cli("--procedure=data_impressions", f"--run_dir={run}",
                   f"--teacher={lenet5_teacher}", *TINY, "--bfloat16_input_gradient", check=True)
    assert "bfloat16 input gradient through ['tap_conv1', 'tap_conv2']" in proc.stdout
    result = read_json(os.path.join(run, "result.json"))
    assert result["bfloat16_input_gradient"] is True
    assert read_json(os.path.join(impressions_run[0], "result.json"))[
        "bfloat16_input_gradient"] is False
    data = synthetic.load_synthetic(os.path.join(run, "impressions.npz"))
    assert data.meta["extra"]["bfloat16_input_gradient"] is True
    default = synthetic.load_synthetic(os.path.join(impressions_run[0], "impressions.npz"))
    assert not np.array_equal(data.x, default.x)
    np.testing.assert_allclose(data.x.mean(), default.x.mean(), atol=0.01)


@pytest.mark.slow
def test_cli_resume_makes_the_same_impressions(impressions_run, lenet5_teacher, tmp_path):
    run, _ = impressions_run
    resumed = str(tmp_path / "resumed")
    shutil.copytree(run, resumed)
    for name in ("result.json", "impressions.npz", "batches/batch_000001.npz"):
        os.remove(os.path.join(resumed, name))  # as if killed during the second batch
    kept = os.path.join(resumed, "batches", "batch_000000.npz")
    stamp = os.stat(kept).st_mtime_ns
    proc = run_cli("--procedure=data_impressions", f"--run_dir={resumed}",
                   f"--teacher={lenet5_teacher}", *TINY, check=True)
    assert "1 batch(es) to make" in proc.stdout and "batch 2/2" in proc.stdout
    assert os.stat(kept).st_mtime_ns == stamp  # a finished batch is never rewritten
    a = synthetic.load_synthetic(os.path.join(run, "impressions.npz"))
    b = synthetic.load_synthetic(os.path.join(resumed, "impressions.npz"))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.soft_targets, b.soft_targets)


@pytest.mark.slow
def test_cli_distill_on_impressions(impressions_run, lenet5_teacher, tmp_path):
    run, _ = impressions_run
    student = str(tmp_path / "student")
    run_cli("--procedure=distill", f"--run_dir={student}",
            f"--dataset={run}/impressions.npz", f"--teacher={lenet5_teacher}",
            "--student=lenet5_half", "--loss=soft_ce", "--temperature=20",
            "--soft_ce_scale=400", "--targets=stored", "--epochs=1", "--batch_size=20",
            "--max_test_examples=200", "--verbose=quiet", check=True)
    result = read_json(os.path.join(student, "result.json"))
    assert result["num_train_examples"] == 40 and 0.0 <= result["test_accuracy"] <= 1.0


def test_nan_stops_with_the_batch_named_and_keeps_finished_ones(lenet5_teacher, tmp_path,
                                                                 monkeypatch):
    run = str(tmp_path / "nan")
    calls = []
    original = ImpressionSynthesizer.optimise

    def optimise_then_fail(self, initial_images, targets, steps, verbose=0, seed=0):
        calls.append(1)
        images = original(self, initial_images, targets, steps, verbose, seed)
        return images if len(calls) == 1 else np.full_like(images, np.nan)

    monkeypatch.setattr(ImpressionSynthesizer, "optimise", optimise_then_fail)
    with flagsaver.flagsaver(procedure="data_impressions", run_dir=run, teacher=lenet5_teacher,
                             num_samples=40, synthesis_batch_size=20, synthesis_steps=3,
                             verbose="quiet"):
        cfg = cli_flags.config_from_flags()
    with pytest.raises(UserError, match=r"batch 2/2.*NaN.*1 finished batch"):
        data_impressions.run(cfg)
    assert sorted(os.listdir(os.path.join(run, "batches"))) == ["batch_000000.npz"]
    assert not os.path.exists(os.path.join(run, "impressions.npz"))
    assert not os.path.exists(os.path.join(run, "result.json"))


# --- foreign teachers and bad input ------------------------------------------------------------
@pytest.mark.slow
def test_cli_foreign_keras_and_savedmodel_teachers(tmp_path):
    keras.utils.set_random_seed(0)
    model = _cnn(keras.layers.Dense(10, activation="softmax", name="head"))
    keras_path, saved = str(tmp_path / "foreign.keras"), str(tmp_path / "foreign_sm")
    model.save(keras_path)
    model.export(saved, verbose=False)
    want = _numpy_concentration(model.get_layer("head").kernel.numpy().astype(np.float64))
    args = ["--procedure=data_impressions", "--dataset=fashion_mnist", "--num_samples=20",
            "--synthesis_batch_size=20", "--synthesis_steps=5", "--verbose=quiet"]
    results = {}
    two_replicas = ["--strategy=mirrored", "--logical_cpus=2"]
    for kind, path, replicas in (("keras", keras_path, []), ("savedmodel", saved, two_replicas)):
        run = str(tmp_path / kind)
        run_cli(*args, *replicas, f"--run_dir={run}", f"--teacher={path}", check=True)
        np.testing.assert_allclose(np.load(os.path.join(run, "concentration.npy")), want,
                                   atol=1e-6)
        results[kind] = read_json(os.path.join(run, "result.json"))
        data = synthetic.load_synthetic(os.path.join(run, "impressions.npz"))
        assert data.x.shape == (20, 28, 28, 1) and data.x.min() >= 0 and data.x.max() <= 1
    assert results["keras"]["logits"] == "pre-activation of head"
    assert results["savedmodel"]["logits"] == "log of the probability output"
    assert results["savedmodel"]["final_layer"] == "head"
    # log-probabilities and logits give the same softmax at T, and 2 replicas do what 1 does:
    # the same optimisation.
    assert results["savedmodel"]["mean_loss"] == pytest.approx(results["keras"]["mean_loss"],
                                                               abs=1e-4)


@pytest.mark.slow
def test_cli_bad_input_exits_2_and_writes_nothing(lenet5_teacher, tmp_path):
    no_dense = str(tmp_path / "no_dense.keras")
    _cnn(None).save(no_dense)
    run = str(tmp_path / "r")
    base = ["--procedure=data_impressions", f"--run_dir={run}", "--dataset=fashion_mnist"]
    assert_user_error(run_cli(*base, f"--teacher={no_dense}"), "not a Dense", "--final_layer")
    assert_user_error(run_cli(*base, f"--teacher={lenet5_teacher}", "--betas=1.0,abc"),
                      "--betas")
    assert_user_error(run_cli("--procedure=data_impressions", f"--run_dir={run}",
                              f"--teacher={lenet5_teacher}", "--num_samples=30"), "multiple")
    assert_user_error(run_cli(*base, f"--teacher={lenet5_teacher}", "--impression_l2=-1"),
                      "--impression_l2")
    assert_user_error(run_cli(*base, f"--teacher={lenet5_teacher}", "--impression_tv=nan"),
                      "--impression_tv")
    assert_user_error(run_cli(*base, f"--teacher={lenet5_teacher}", "--impression_jitter=-1"),
                      "--impression_jitter")
    assert not os.path.exists(run)


# --- tools ----------------------------------------------------------------------------------------
def _tool(name, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", name), *args],
                          env=cli_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_tools_draw_pngs_and_refuse_bad_input(impressions_run, tmp_path):
    run, _ = impressions_run
    heat, grid = str(tmp_path / "c.png"), str(tmp_path / "s.png")
    proc = _tool("visualize_concentration.py", f"--run_dir={run}", f"--out={heat}")
    assert proc.returncode == 0, proc.stderr
    proc = _tool("visualize_samples.py", f"--run_dir={run}", f"--out={grid}", "--per_class=3")
    assert proc.returncode == 0, proc.stderr
    heat_image, grid_image = cv2.imread(heat), cv2.imread(grid)
    assert heat_image.shape[0] > 400 and heat_image.shape[1] > 400
    assert grid_image.shape[1] > 3 * 112 and grid_image.std() > 10
    assert_user_error(_tool("visualize_concentration.py", f"--run_dir={tmp_path}/missing",
                            f"--out={heat}"), "missing")
    assert_user_error(_tool("visualize_samples.py", f"--run_dir={run}",
                            f"--out={tmp_path}/x.jpg"), ".png")


# --- flagfiles ------------------------------------------------------------------------------------
def _flagfile_config(path):
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["zskd_tf", f"--flagfile={path}"])
        return cli_flags.config_from_flags()


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_flagfile_chains_are_valid_and_connected(dataset):
    cfg = {step: _flagfile_config(os.path.join(REPO, "flags", "zskd", f"{dataset}_{step}.cfg"))
           for step in ("impressions", "student", "evaluate", "export")}
    teacher_file = glob.glob(os.path.join(REPO, "flags", "teachers", f"*_{dataset}.cfg"))
    teachers = {_flagfile_config(p).run_dir: p for p in teacher_file}
    assert cfg["impressions"].teacher in teachers
    assert cfg["impressions"].num_samples == data_impressions.PAPER_NUM_SAMPLES[dataset]
    assert cfg["student"].dataset == f"{cfg['impressions'].run_dir}/impressions.npz"
    assert cfg["student"].teacher == cfg["impressions"].teacher
    assert cfg["student"].loss == "soft_ce" and cfg["student"].soft_ce_scale == 400
    assert cfg["evaluate"].model_path == cfg["export"].model_path == cfg["student"].run_dir

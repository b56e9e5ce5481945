"""Any teacher: a foreign classifier described by itself (teacher_task), --eval_data, the
default student, and ``--procedure=pipeline --teacher=MODEL`` with its bad inputs."""
import dataclasses
import os

import cv2
import keras
import numpy as np
import pytest

from helpers import FASHION_MNIST_DIR, assert_user_error, read_json, run_cli
from zskd_tf import api, teacher_task
from zskd_tf.data import datasets, synthetic
from zskd_tf.data.eval_data import load_eval_data
from zskd_tf.errors import UserError
from zskd_tf.models import complexity, narrower, registry, small_cnn, teacher_channels
from zskd_tf.pipeline import any_teacher

CLASSES = (0, 1, 5, 7, 9)  # five Fashion-MNIST classes
NAMES = ("tshirt", "trouser", "sandal", "sneaker", "boot")
NAMES_FLAG = "--class_names=" + ",".join(NAMES)
PER_CLASS = 4  # eval images per class


def _five_classes(x, y, n):
    keep = np.flatnonzero(np.isin(y, CLASSES))[:n]
    return x[keep], np.searchsorted(CLASSES, y[keep])


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A BatchNorm CNN trained a few steps by plain model.fit on 5 Fashion-MNIST classes at
    28x28, saved as .keras and exported as a SavedModel, and an --eval_data folder of PNGs."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip("the Debian package dataset-fashion-mnist is not installed (./setup.sh)")
    d = tmp_path_factory.mktemp("foreign")
    data = datasets.load_dataset("fashion_mnist")
    x, y = _five_classes(data.train_x, data.train_y, 1000)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(5)])
    model.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x / 255.0, y, epochs=1, batch_size=50, verbose=0)
    model.save(d / "teacher.keras")
    model.export(str(d / "teacher_savedmodel"), verbose=False)
    tx, ty = _five_classes(data.test_x, data.test_y, 200)
    eval_x, eval_y = [], []
    for c, name in enumerate(NAMES):
        os.makedirs(d / "eval" / name)
        for i in np.flatnonzero(ty == c)[:PER_CLASS]:
            cv2.imwrite(str(d / "eval" / name / f"{i}.png"), tx[i])
            eval_x.append(tx[i])
            eval_y.append(c)
    expected = np.argmax(model.predict(np.stack(eval_x)[..., None] / 255.0, verbose=0), -1)
    return {"dir": d, "keras": str(d / "teacher.keras"),
            "savedmodel": str(d / "teacher_savedmodel"), "eval": str(d / "eval"),
            "eval_accuracy": float(np.mean(expected == np.array(eval_y)))}


# --- the pieces -------------------------------------------------------------------------------
def test_a_foreign_teacher_is_described_by_itself(foreign):
    loaded, task = teacher_task.resolve(foreign["keras"])
    assert task.dataset == datasets.CUSTOM and task.class_names == ("0", "1", "2", "3", "4")
    assert task.spec.raw_shape == (28, 28, 1) and task.spec.resize == "none"
    described = teacher_task.Description(class_names=NAMES, input_range=(-1.0, 1.0))
    _, task = teacher_task.resolve(foreign["savedmodel"], description=described)
    assert task.class_names == NAMES
    np.testing.assert_allclose(np.ravel(task.spec.value_range), [-1.0, 1.0], rtol=1e-6)
    with pytest.raises(UserError, match="has 5 outputs but --num_classes"):
        teacher_task.resolve(foreign["keras"], description=teacher_task.Description(4))
    _, task = teacher_task.resolve(foreign["keras"], dataset="fashion_mnist")  # named: as before
    assert task.dataset == "fashion_mnist" and task.num_classes == 10


def test_eval_data_folders_and_npz(foreign, tmp_path):
    def named_images(class_names):  # {(class name, image bytes)}: independent of file order
        x, y = load_eval_data(foreign["eval"], class_names, (28, 28, 1))
        return x, y, sorted((class_names[label], image.tobytes()) for image, label in zip(x, y))

    x, y, by_name = named_images(NAMES)
    assert x.shape == (5 * PER_CLASS, 28, 28, 1) and np.bincount(y).tolist() == [PER_CLASS] * 5
    assert named_images(tuple(reversed(NAMES)))[2] == by_name  # matched by name
    unnamed = [str(i) for i in range(5)]  # no names: the folders in sorted order
    _, _, by_index = named_images(unnamed)
    assert sorted((sorted(NAMES)[int(i)], b) for i, b in by_index) == by_name
    npz = str(tmp_path / "e.npz")
    np.savez(npz, x=np.full((3, 32, 32), 255, np.uint8), y=np.array([0, 4, 2]))
    x, y = load_eval_data(npz, NAMES, (28, 28, 1))
    assert x.shape == (3, 28, 28, 1) and np.allclose(x, 255) and y.tolist() == [0, 4, 2]
    np.savez(npz, x=np.zeros((2, 28, 28)), y=np.array([0, 5]))
    with pytest.raises(UserError, match=r"labels must be in \[0, 5\)"):
        load_eval_data(npz, NAMES, (28, 28, 1))


def test_default_student_and_preset_scaling():
    assert registry.auto_student("lenet5") == "lenet5_half"
    assert registry.auto_student("wrn-40-2") == "wrn-40-1"
    assert registry.auto_student(None) == "small_cnn"
    assert small_cnn.num_stages((28, 28, 1)) == 2 and small_cnn.num_stages((224, 224, 3)) == 4
    model = registry.build_model("small_cnn", num_classes=10, input_shape=(28, 28, 1))
    assert model.count_params() == 16698 and model.output_shape == (None, 10)
    quick = any_teacher.ANY_PRESETS["quick"]
    assert any_teacher.scale(quick, (28, 28, 1)) == quick
    scaled = any_teacher.scale(quick, (32, 32, 3))
    assert scaled.impressions == round(quick.impressions * 784 / 3072)
    assert scaled.impression_steps == quick.impression_steps
    lenet5 = registry.build_model("lenet5", num_classes=10, input_shape=(28, 28, 1))
    assert complexity.count_macs(lenet5) == any_teacher.REFERENCE_MACS
    # Up to COST_ALLOWANCE LeNet-5s the counts stay; beyond, they shrink with the cost.
    assert any_teacher.scale(quick, (28, 28, 1), 10 * any_teacher.REFERENCE_MACS) == quick
    costly = any_teacher.scale(quick, (28, 28, 1), 40 * any_teacher.REFERENCE_MACS)
    assert costly.impressions == quick.impressions // 4
    assert costly.zskt_iterations == quick.zskt_iterations // 4


def test_narrower_copy_halves_every_width_but_the_class_scores():
    inputs = keras.Input((28, 28, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.SeparableConv2D(15, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dense(7)(x)
    teacher = keras.Model(inputs, keras.layers.Softmax()(x))
    copy = narrower.narrower_copy(teacher)
    widths = [(type(layer).__name__, getattr(layer, "filters", getattr(layer, "units", None)))
              for layer in copy.layers]
    assert widths == [("InputLayer", None), ("Rescaling", None), ("Conv2D", 16),
                      ("BatchNormalization", None), ("SeparableConv2D", 8),
                      ("GlobalAveragePooling2D", None), ("Dense", 32), ("Dense", 7)]
    batch = np.random.default_rng(0).uniform(0, 255, (4, 28, 28, 3)).astype("float32")
    scores = copy.predict(batch, verbose=0)
    assert scores.shape == (4, 7) and not np.allclose(scores.sum(-1), 1)  # logits, no softmax
    sequential = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                   keras.layers.Dense(4, activation="softmax")])
    head = narrower.narrower_copy(sequential).layers[-1]
    assert head.units == 4 and head.get_config()["activation"] == "linear"
    np.testing.assert_array_equal(  # the same seed, the same initial weights
        narrower.narrower_copy(teacher).get_weights()[0], copy.get_weights()[0])


def test_narrower_copy_refuses_what_cannot_be_copied_and_auto_falls_back():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (-1, 4)))

    model = Subclassed()
    model(np.zeros((1, 2, 2, 1), "float32"))
    with pytest.raises(UserError, match="cannot be copied layer by layer"):
        narrower.narrower_copy(model)
    assert any_teacher.choose_student(None, _teacher()) == any_teacher.NARROWER_COPY
    assert any_teacher.choose_student("auto", _teacher(keras_model=False)) == "small_cnn"


def test_impression_counts_suit_data_impressions():
    # data_impressions needs a count divisible by classes x 2 betas and by the batch.
    for wanted, classes in ((4015, 10), (1531, 3), (6000, 7), (100, 5), (50, 10), (10, 1000)):
        count, batch = any_teacher.impression_sizes(wanted, classes)
        assert count % batch == 0 and batch % (2 * classes) == 0 and batch <= max(500, 2 * classes)
        assert abs(count - wanted) <= batch
    assert any_teacher.impression_sizes(4015, 10) == (4000, 500)
    assert any_teacher.impression_sizes(6000, 10) == (6000, 500)


def _int_flags(steps, name, *flags):
    """{flag: integer value} of ``flags`` in the planned step ``name`` (exactly one such step,
    each flag given once)."""
    (step,) = [s for s in steps if s.name == name]
    found = [(flag, int(value)) for flag, _, value in (a.partition("=") for a in step.args)
             if flag in flags]
    assert len(found) == len(dict(found)), f"a flag given twice in {name}: {found}"
    return dict(found)


def test_scaled_reconstruction_counts_suit_optimize_dataset():
    # optimize_dataset needs whole batches of 64: scaled counts such as 817 (a 32x32x3 teacher)
    # or 2141 (a teacher of 15 LeNet-5s) must be rounded before the step is planned.
    for shape, macs in (((32, 32, 3), None), ((28, 28, 1), 15 * any_teacher.REFERENCE_MACS)):
        preset = any_teacher.scale(any_teacher.ANY_PRESETS["quick"], shape, macs)
        assert preset.reconstructions % any_teacher.RECONSTRUCTION_BATCH
        steps = any_teacher.plan(preset, "/r", _teacher(), "small_cnn", ["lopes"],
                                 eval_data=None, stats="/s.npz", at_taps=(), seed=0)
        count = _int_flags(steps, "lopes_dataset", "--num_samples")["--num_samples"]
        assert count % any_teacher.RECONSTRUCTION_BATCH == 0
        assert abs(count - preset.reconstructions) <= any_teacher.RECONSTRUCTION_BATCH / 2


def test_pipeline_seed_reaches_the_zskt_students():
    # The any-teacher plan trains ZSKT with the pipeline's --seed and exports that student.
    steps = {s.name: s.args for s in any_teacher.plan(
        any_teacher.ANY_PRESETS["smoke"], "/r", _teacher(), "small_cnn", ["zskt", "zskt_bn"],
        eval_data=None, stats=None, at_taps=(), seed=2)}
    for method in ("zskt", "zskt_bn"):
        assert "--seeds=2" in steps[f"{method}_student"]
        assert f"--model_path=/r/{method}_student/seed_2" in steps[f"{method}_export"]
        assert any_teacher.student_run(method, "/r", 2) == f"/r/{method}_student/seed_2"
    assert any_teacher.student_run("zskd_bn", "/r", 2) == "/r/zskd_bn_student"


def test_a_student_from_the_teachers_channels_is_fine_tuned():
    # --student_init=teacher: the distill steps decay the rate to 0; ZSKT's step is unchanged.
    # The zskd student also takes channel hints when the copy has a layer to match; no other.
    def plan(fine_tune, hints=True):
        return {s.name: s.args for s in any_teacher.plan(
            any_teacher.ANY_PRESETS["smoke"], "/r", _teacher(), "/r/student.keras",
            ["zskd", "zskd_bn", "lopes", "zskt"], eval_data=None, stats="/s", at_taps=(),
            seed=0, fine_tune=fine_tune, hints=hints)}
    tuned, plain, unhinted = plan(True), plan(False), plan(True, hints=False)
    added = {"--lr_schedule=cosine", *any_teacher.COPY_HINTS}
    for step in ("zskd_student", "zskd_bn_student", "lopes_student"):
        assert "--lr_schedule=cosine" in tuned[step] and "--lr_schedule=cosine" not in plain[step]
        assert [a for a in tuned[step] if a not in added] == list(plain[step])
    assert set(any_teacher.COPY_HINTS) <= set(tuned["zskd_student"])
    assert not set(any_teacher.COPY_HINTS) & set(unhinted["zskd_student"])
    for step in ("zskd_bn_student", "lopes_student", "zskt_student"):
        assert not any(a.startswith("--hint_weight") for a in tuned[step]), step
    assert tuned["zskt_student"] == plain["zskt_student"]


def test_a_rerun_plans_for_the_copy_on_disk(tmp_path):
    # A rerun keeps the student.keras it finds; it fine-tunes it only if it still holds the
    # weights the teacher's channels give (one made with random weights is trained as such).
    from zskd_tf.procedures.pipeline import _same_weights

    keras.utils.set_random_seed(0)
    copy = small_cnn.small_cnn(num_classes=2, input_shape=(28, 28, 1))
    path = str(tmp_path / "student.keras")
    copy.save(path)
    assert _same_weights(path, copy)
    weights = copy.get_weights()
    copy.set_weights([weights[0] + 1e-6] + weights[1:])
    assert not _same_weights(path, copy)


def _teacher(keras_model=True, batchnorm=True, macs=None):
    return any_teacher.Teacher("/t", "custom", ("a", "b"), (28, 28, 1), keras_model, batchnorm,
                               macs, zoo_model=None, task_flags=())


def test_quick_runs_the_recommended_method_on_a_costly_teacher():
    cheap, costly = any_teacher.REFERENCE_MACS, 15 * any_teacher.REFERENCE_MACS
    every = ["zskd", "zskd_bn", "zskt", "zskt_bn"]
    assert any_teacher.choose_methods(None, _teacher(macs=cheap), None)[0] == every
    assert any_teacher.choose_methods(None, _teacher(macs=costly), None, "full")[0] == every
    methods, left_out = any_teacher.choose_methods(None, _teacher(macs=costly), None)
    assert methods == ["zskd_bn"]
    assert "15 times the LeNet-5" in left_out["zskt"] and "--methods" in left_out["zskt"]
    assert "Lopes et al. need activation statistics" in left_out["lopes"]
    no_bn = _teacher(batchnorm=False, macs=costly)
    assert any_teacher.choose_methods(None, no_bn, None)[0] == ["zskd"]
    # --methods is obeyed as given, however costly the teacher.
    assert any_teacher.choose_methods(["zskd", "zskt"], _teacher(macs=costly), None)[0] == [
        "zskd", "zskt"]
    assert any_teacher.recommended(_teacher(keras_model=False, batchnorm=False)) == "zskd"


# --- the pipeline -----------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_on_a_foreign_keras_teacher_with_eval_data(foreign, tmp_path):
    run = str(tmp_path / "p")
    run_cli("--procedure=pipeline", "--preset=smoke", f"--teacher={foreign['keras']}",
            NAMES_FLAG, f"--eval_data={foreign['eval']}", "--methods=zskd,zskt_bn",
            "--student_init=teacher", f"--run_dir={run}", check=True, timeout=900)
    report = read_json(os.path.join(run, "report.json"))
    assert report["dataset"] == "custom" and report["class_names"] == list(NAMES)
    # --student=auto: a half-width copy of the teacher, kept in the pipeline directory
    assert report["student"] == os.path.join(run, "student.keras")
    assert report["methods"] == ["zskd", "zskt_bn"]
    copy = keras.saving.load_model(report["student"], compile=False)
    assert [type(layer) for layer in copy.layers] == [
        type(layer) for layer in keras.saving.load_model(foreign["keras"]).layers]
    assert copy.layers[0].filters == 4 and copy.output_shape == (None, 5)
    # --student_init=teacher: the copy holds the teacher's strongest channels, fine-tuned
    from_teacher = teacher_channels.take_teacher_channels(
        keras.saving.load_model(foreign["keras"]),
        narrower.narrower_copy(keras.saving.load_model(foreign["keras"])))
    for a, b in zip(copy.get_weights(), from_teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert read_json(os.path.join(run, "result.json"))["student_init"] == "teacher"
    assert report["student_init"] == "teacher"
    assert "--student_init=teacher" in open(os.path.join(run, "report.html")).read()
    assert "--lr_schedule=cosine" in open(os.path.join(run, "zskd_student", "flags.cfg")).read()
    teacher, *students = report["rows"]
    assert teacher["test_accuracy"] == pytest.approx(foreign["eval_accuracy"])
    for row in students:
        assert 0 <= row["test_accuracy"] <= 1
        assert read_json(os.path.join(row["run"], "result.json"))["num_test_examples"] == 20
        assert read_json(os.path.join(row["run"], "model_info.json"))["class_names"] == list(NAMES)
        assert row["tflite_top1_agreement"] >= 0.95 and row["int8_bytes"] > 0
    zskt_bn = read_json(os.path.join(run, "zskt_bn_student", "result.json"))
    assert zskt_bn["zero_shot"]["generator_bn_weight"] == 1.0
    impressions = synthetic.load_synthetic(os.path.join(run, "zskd_impressions",
                                                        "impressions.npz"))
    assert impressions.dataset == "custom" and impressions.class_names == NAMES
    html = open(os.path.join(run, "report.html"), encoding="utf-8").read()
    assert "accuracy on --eval_data" in html and "No real-data accuracy" not in html


@pytest.mark.slow
def test_pipeline_on_a_savedmodel_teacher_reports_agreement(foreign, tmp_path):
    run = str(tmp_path / "p")
    run_cli("--procedure=pipeline", "--preset=smoke", f"--teacher={foreign['savedmodel']}",
            f"--run_dir={run}", check=True, timeout=900)
    report = read_json(os.path.join(run, "report.json"))
    assert report["methods"] == ["zskd"] and not report["real_data"]
    assert report["student"] == "small_cnn"  # a SavedModel cannot be copied layer by layer
    assert set(report["left_out"]) == {"zskd_bn", "lopes", "zskt", "zskt_bn"}
    assert "SavedModel" in report["left_out"]["zskt"]
    row = report["rows"][1]
    assert row["test_accuracy"] is None
    holdout = synthetic.load_synthetic(os.path.join(run, "holdout_impressions",
                                                    "impressions.npz"))
    student = keras.saving.load_model(os.path.join(run, "zskd_student", "model.keras"))
    agreement = np.mean(np.argmax(student.predict(holdout.x, verbose=0), -1) == holdout.y)
    assert row["teacher_agreement"] == pytest.approx(agreement)
    html = open(os.path.join(run, "report.html"), encoding="utf-8").read()
    assert "No real-data accuracy exists" in html


def _bad(run_dir, fragment, **options):
    with pytest.raises(UserError, match=fragment):
        api.run("pipeline", run_dir=run_dir, preset="smoke", **options)
    assert not os.path.exists(run_dir)


def test_pipeline_bad_inputs_are_refused_before_anything_is_written(foreign, tmp_path):
    run, teacher = str(tmp_path / "p"), foreign["keras"]
    three = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    _bad(run, "outputs .* but the teacher has 5 classes", teacher=teacher, student=three)
    small = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    _bad(run, r"takes inputs of shape \(32, 32, 1\)", teacher=teacher, student=small)
    (tmp_path / "junk.keras").write_text("not a model")
    _bad(run, "is not a Keras model file", teacher=teacher, student=str(tmp_path / "junk.keras"))
    _bad(run, "has 5 outputs but --num_classes", teacher=teacher, num_classes=4)
    _bad(run, "starts the half-width copy .* not --student=small_cnn", teacher=teacher,
         student="small_cnn", student_init="teacher")
    _bad(run, "cannot apply to this teacher: ZSKT .* SavedModel",
         teacher=foreign["savedmodel"], methods="zskt")
    _bad(run, "cannot apply to this teacher: Lopes .* statistics", teacher=teacher,
         methods="lopes")
    _bad(run, "do not match the teacher's classes", teacher=teacher,
         class_names="a,b,c,d,e", eval_data=foreign["eval"])
    four = tmp_path / "four"
    for name in NAMES[:4]:
        os.makedirs(four / name)
    _bad(run, "has 4 class folders but the teacher has 5", teacher=teacher,
         eval_data=str(four))
    broken = tmp_path / "broken"
    for name in NAMES:
        os.makedirs(broken / name)
        (broken / name / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _bad(run, "cannot read its images", teacher=teacher, class_names=",".join(NAMES),
         eval_data=str(broken))
    # the command line: one error line, exit status 2, nothing written
    assert_user_error(run_cli("--procedure=pipeline", "--preset=smoke", f"--teacher={teacher}",
                              "--methods=zskd,dream", f"--run_dir={run}"),
                      "--methods: unknown dream")
    assert not os.path.exists(run)


SYNTHESIS_SIZES = ("--num_samples", "--synthesis_steps", "--synthesis_batch_size")


def test_zskd_bn_makes_more_impressions_at_fewer_steps_than_zskd():
    # The worked example's CNN costs 15 LeNet-5s: both counts shrink by 10/15, and zskd_bn makes
    # twice zskd's impressions at a quarter of its steps (docs/any_teacher.md, "More impressions
    # at fewer steps").
    classes = tuple("abcdefghij")
    teacher = dataclasses.replace(_teacher(), class_names=classes)
    preset = any_teacher.scale(any_teacher.ANY_PRESETS["quick"], (28, 28, 1),
                               15 * any_teacher.REFERENCE_MACS)
    steps = any_teacher.plan(preset, "/r", teacher, "small_cnn", ["zskd", "zskd_bn"],
                             eval_data=None, stats=None, at_taps=(), seed=0)
    assert _int_flags(steps, "zskd_impressions", *SYNTHESIS_SIZES) == {
        "--num_samples": 4000, "--synthesis_steps": 400, "--synthesis_batch_size": 500}
    assert _int_flags(steps, "zskd_bn_impressions", *SYNTHESIS_SIZES) == {
        "--num_samples": 8000, "--synthesis_steps": 100, "--synthesis_batch_size": 500}


@pytest.mark.slow
def test_split_needs_a_named_dataset_for_a_teacher_described_by_itself(foreign, tmp_path):
    """A teacher described by itself has no training images to hold out: --split=holdout is
    refused (zero_shot without --dataset), with --eval_data as the way out."""
    run = str(tmp_path / "zskt")
    assert_user_error(run_cli("--procedure=zero_shot", f"--teacher={foreign['keras']}",
                              "--student=small_cnn", NAMES_FLAG, "--iterations=1",
                              "--split=holdout", "--holdout_first=10", f"--run_dir={run}"),
                      "--split=holdout needs a named dataset", "give --eval_data")
    assert not os.path.exists(run)  # refused before the run directory is claimed

"""distill --disagreement_eps: half of every batch moved, within an L2 ball, to where the student
and the teacher disagree; the teacher scores the moved images."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import read_json, run_cli
from zskd_tf.models import registry
from zskd_tf.trainers.distill_config import DistillConfig
from zskd_tf.trainers.distiller import Distiller


def _pair(seed=0):
    keras.utils.set_random_seed(seed)
    return registry.build_model("lenet5"), registry.build_model("lenet5_half")


def _per_image_kl(teacher, student, x):
    t, s = teacher(x, training=False), student(x, training=False)
    return tf.reduce_sum(tf.nn.softmax(t) * (tf.nn.log_softmax(t) - tf.nn.log_softmax(s)),
                         axis=-1).numpy()


def test_the_first_half_moves_by_eps_towards_more_disagreement_and_the_rest_stays():
    teacher, student = _pair()
    x = tf.constant(np.random.default_rng(1).normal(size=(9, 32, 32, 1)).astype("float32"))
    views = Distiller(student, teacher, DistillConfig(loss="soft_ce", disagreement_eps=2.0))
    moved = views.perturb(x, None).numpy()
    distance = np.sqrt(np.sum((moved - x.numpy()) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(distance[:4], 2.0, rtol=1e-4)  # 9 // 2 images, on the sphere
    np.testing.assert_array_equal(moved[4:], x.numpy()[4:])
    before, after = _per_image_kl(teacher, student, x[:4]), _per_image_kl(teacher, student,
                                                                          moved[:4])
    assert np.all(after > before), (before, after)
    np.testing.assert_array_equal(views.perturb(x, None).numpy(), moved)  # no randomness
    plain = Distiller(student, teacher, DistillConfig(loss="soft_ce"))
    np.testing.assert_array_equal(plain.perturb(x, None).numpy(), x.numpy())


def test_the_training_step_learns_from_the_moved_images():
    x = np.random.default_rng(2).normal(size=(8, 32, 32, 1)).astype("float32")
    y = np.zeros(8, np.int64)
    updated = {}
    for eps in (0.0, 2.0):
        teacher, student = _pair(seed=3)
        trainer = Distiller(student, teacher, DistillConfig(loss="soft_ce",
                                                            disagreement_eps=eps))
        trainer.compile(optimizer=keras.optimizers.SGD(0.1))
        trainer.fit(tf.data.Dataset.from_tensors((x, y)), verbose=0)
        updated[eps] = student.get_layer("tap_conv1").get_weights()[0]
    assert not np.allclose(updated[0.0], updated[2.0])


@pytest.mark.slow
def test_a_student_on_disagreement_views_records_them(lenet5_teacher, tmp_path):
    run = str(tmp_path / "run")
    run_cli("--procedure=distill", f"--run_dir={run}", f"--teacher={lenet5_teacher}",
            "--dataset=fashion_mnist", "--student=lenet5_half", "--loss=soft_ce",
            "--targets=teacher", "--disagreement_eps=1.5", "--disagreement_steps=2",
            "--max_train_examples=256", "--max_test_examples=100", "--epochs=1",
            "--batch_size=64", "--verbose=quiet", check=True)
    result = read_json(os.path.join(run, "result.json"))
    assert (result["distill"]["disagreement_eps"], result["distill"]["disagreement_steps"]) == (
        1.5, 2)
    assert 0.0 <= result["test_accuracy"] <= 1.0

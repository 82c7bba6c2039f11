"""Fashion-MNIST (Zalando, MIT; 60k train + 10k test 28x28 grey images, 10 classes) read from its IDX files with numpy.

The files are the ones torchvision downloads (train-images-idx3-ubyte.gz, ...), gzipped or not. They are looked for
in `root`, else $PYFAST_FASHION_MNIST, else Debian's package folder (``apt-get install dataset-fashion-mnist``:
/usr/share/datasets/fashion-mnist), and also in the torchvision layout below a root (FashionMNIST/raw/). Nothing is
downloaded. Every file's magic number, dimensions and length are checked, so a truncated file is a clear ValueError.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

__all__ = ["FASHION_MNIST_CLASSES", "DEFAULT_FASHION_MNIST_ROOT", "fashion_mnist_root", "load_fashion_mnist",
           "read_idx"]

DEFAULT_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts them
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000)}
# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_UBYTE = 0x08


def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzipped when the name ends in .gz) of unsigned bytes as a uint8 array of its stored shape."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip's BadGzipFile is an OSError; a cut gzip stream an EOFError
        raise ValueError(f"read_idx: cannot read {path}: {type(exc).__name__}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    if raw[2] != _UBYTE:
        raise ValueError(f"read_idx: {path} holds IDX type 0x{raw[2]:02x}; only unsigned bytes (0x08) are supported")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"read_idx: {path} has a truncated header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw) - header} data bytes, its header {shape} says {expected} "
                         "(truncated or corrupt?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _candidates(root: str) -> list[str]:
    return [root, os.path.join(root, "FashionMNIST", "raw"), os.path.join(root, "raw")]


def _find(root: str, stem: str) -> str | None:
    for folder in _candidates(root):
        for name in (stem + ".gz", stem):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def fashion_mnist_root(root: str | None = None) -> str:
    """The folder the files are read from: `root`, else $PYFAST_FASHION_MNIST, else the Debian package's."""
    return os.fspath(root) if root is not None else os.environ.get("PYFAST_FASHION_MNIST", DEFAULT_FASHION_MNIST_ROOT)


def load_fashion_mnist(split: str = "train", root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of the "train" (N = 60000) or "test" (N = 10000) split.

    A FileNotFoundError says how to get the files when they are missing; a ValueError names a file whose contents
    are not what Fashion-MNIST's are (magic number, 28 x 28 images, N labels in [0, 10)).
    """
    if split not in _FILES:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    folder = fashion_mnist_root(root)
    images_stem, labels_stem, n = _FILES[split]
    paths = [_find(folder, images_stem), _find(folder, labels_stem)]
    if None in paths:
        missing = [s for s, p in zip((images_stem, labels_stem), paths) if p is None]
        raise FileNotFoundError(
            f"load_fashion_mnist: {', '.join(m + '[.gz]' for m in missing)} not found in {folder} (nor its "
            "FashionMNIST/raw/). Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu: they go to "
            f"{DEFAULT_FASHION_MNIST_ROOT}), or put the four IDX files torchvision downloads there and pass root= "
            "(or set PYFAST_FASHION_MNIST)")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.shape != (n, 28, 28):
        raise ValueError(f"load_fashion_mnist: {paths[0]} holds shape {images.shape}, expected {(n, 28, 28)}")
    if labels.shape != (n,):
        raise ValueError(f"load_fashion_mnist: {paths[1]} holds shape {labels.shape}, expected {(n,)}")
    if labels.size and int(labels.max()) >= 10:
        raise ValueError(f"load_fashion_mnist: {paths[1]} holds label {int(labels.max())}; classes are 0..9")
    return images, labels.astype(np.int64)

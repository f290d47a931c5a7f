"""Image classification data: TFDS ``data_source`` (no TensorFlow) or an ``.npz``, held as uint8
arrays on device; shuffling, augmentation and normalization happen on device inside jit.

Sources, in order: ``npz`` (keys train_image/train_label/test_image/test_label) when given,
else ``tfds.data_source(name, data_dir=TFDS_DATA_DIR)``. Decoded arrays are cached as an
``.npz`` under ``cache_dir`` (default ``~/.cache/pruning_jax``) so later runs skip decoding.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
# per-channel mean / std of the train split (CIFAR-10: the ASLP / PFS constants, PAPERS.md s.9)
NORMALIZATION = {
  "mnist": ((0.1307,), (0.3081,)),
  "fashion_mnist": ((0.2860,), (0.3530,)),
  "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
  "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}


class DataError(ValueError):
  """Data that cannot be found or read; the message says how to fix it."""


class Dataset(NamedTuple):
  name: str
  train_image: jax.Array  # (N, H, W, C) uint8, on device
  train_label: jax.Array  # (N,) int32
  val_image: jax.Array  # seeded split carved from train
  val_label: jax.Array
  test_image: jax.Array
  test_label: jax.Array
  mean: jax.Array  # (C,) float32, in [0, 1] pixel units
  std: jax.Array  # (C,) float32
  num_classes: int


def _read_tfds(name: str, data_dir: str | None) -> dict[str, np.ndarray]:
  import tensorflow_datasets as tfds

  out = {}
  for split in ("train", "test"):
    try:
      src = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - TFDS raises many types for a missing dataset
      raise DataError(
        f"Dataset {name!r} (split {split!r}) is not prepared in TFDS_DATA_DIR={data_dir!r}: "
        f"{type(e).__name__}: {str(e)[:300]}\nFix: export TFDS_DATA_DIR=/path/to/a/prepared/tfds "
        "directory (this project: ../shared/tfds), or set config.npz to an .npz with keys "
        "train_image/train_label/test_image/test_label. Nothing is downloaded at run time."
      ) from None
    images, labels = [], []
    for start in range(0, len(src), 5000):
      batch = src.__getitems__(list(range(start, min(start + 5000, len(src)))))
      images.append(np.stack([b["image"] for b in batch]))
      labels.append(np.asarray([b["label"] for b in batch]))
    out[f"{split}_image"] = np.concatenate(images)
    out[f"{split}_label"] = np.concatenate(labels)
  return out


def _read_npz(path: str) -> dict[str, np.ndarray]:
  if not os.path.exists(path):
    raise DataError(
      f"config.npz={path!r} does not exist. Fix: build it (see ../shared/device-data) or unset it."
    )
  with np.load(path) as z:
    missing = [k for k in ("train_image", "train_label", "test_image", "test_label") if k not in z]
    if missing:
      raise DataError(f"{path} lacks keys {missing}; expected train_image/train_label/test_image/test_label.")
    return {k: z[k] for k in ("train_image", "train_label", "test_image", "test_label")}


def read_arrays(
  name: str, *, data_dir: str | None = None, npz: str | None = None, cache_dir: str | None = None
):
  """uint8 images (N, H, W, C) and int labels of the train and test splits, as NumPy arrays."""
  if name not in DATASETS:
    raise DataError(f"Unknown dataset {name!r}; expected one of {DATASETS}.")
  if npz:
    arrays = _read_npz(npz)
  else:
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "pruning_jax")
    tag = hashlib.sha1(os.path.abspath(data_dir or "").encode()).hexdigest()[:10]
    cache = os.path.join(cache_dir, f"{name}-{tag}.npz")
    if os.path.exists(cache):
      arrays = _read_npz(cache)
    else:
      arrays = _read_tfds(name, data_dir)
      os.makedirs(cache_dir, exist_ok=True)
      tmp = cache + ".tmp.npz"
      np.savez(tmp, **arrays)
      os.replace(tmp, cache)
  for split in ("train", "test"):
    img = arrays[f"{split}_image"]
    if img.ndim == 3:
      arrays[f"{split}_image"] = img[..., None]
    if img.dtype != np.uint8:
      raise DataError(f"{name} {split}_image has dtype {img.dtype}; expected uint8 pixels.")
  return arrays


def load(
  name: str,
  *,
  data_dir: str | None = None,
  npz: str | None = None,
  val_size: int = 5000,
  seed: int = 0,
  train_subset: int | None = None,
  cache_dir: str | None = None,
  normalization: tuple | None = None,
) -> Dataset:
  """The dataset on device with a seeded validation split of ``val_size`` train images.

  Args:
    train_subset: keep only this many (seeded) training images after the split; for short
      documented budgets.
    normalization: ``(mean, std)`` per channel; default :data:`NORMALIZATION`.
  """
  arrays = read_arrays(name, data_dir=data_dir, npz=npz, cache_dir=cache_dir)
  n = len(arrays["train_image"])
  if not 0 <= val_size < n:
    raise DataError(f"val_size={val_size} must be in [0, {n}) for {name}.")
  perm = np.random.default_rng(seed).permutation(n)
  val, train = perm[:val_size], perm[val_size:]
  if train_subset is not None:
    train = train[:train_subset]
  mean, std = normalization or NORMALIZATION[name]
  put = jnp.asarray
  return Dataset(
    name,
    put(arrays["train_image"][train]),
    put(arrays["train_label"][train].astype(np.int32)),
    put(arrays["train_image"][val]),
    put(arrays["train_label"][val].astype(np.int32)),
    put(arrays["test_image"]),
    put(arrays["test_label"].astype(np.int32)),
    jnp.asarray(mean, jnp.float32),
    jnp.asarray(std, jnp.float32),
    NUM_CLASSES[name],
  )


def normalize(images: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """uint8 -> float32 ``(x / 255 - mean) / std``."""
  return (images.astype(jnp.float32) / 255.0 - mean) / std


def augment(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
  """Random crop with ``pad``-pixel zero padding and random horizontal flip, per image."""
  n, h, w, _ = images.shape
  k_crop, k_flip = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * pad + 1)
  crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1])))
  out = crop(padded, offsets)
  flip = jax.random.bernoulli(k_flip, 0.5, (n,))
  return jnp.where(flip[:, None, None, None], out[:, :, ::-1], out)


def epoch_order(key: jax.Array, n: int, batch_size: int) -> jax.Array:
  """(steps, batch) example indices of one epoch: a seeded permutation, remainder dropped."""
  steps = n // batch_size
  if steps == 0:
    raise DataError(f"batch_size={batch_size} exceeds the {n} training examples.")
  return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def eval_batches(n: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """``[(indices, valid)]`` covering ``n`` examples in fixed-size batches (last one padded)."""
  out = []
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    out.append((np.minimum(idx, n - 1), idx < n))
  return out

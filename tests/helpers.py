"""Shared test fixtures: pytrees of every supported flavour and NumPy references."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class Layer(NamedTuple):
  kernel: jax.Array
  bias: jax.Array


def linen_params(key=0, dtype=jnp.float32):
  """A Flax-linen-shaped param dict (conv + dense)."""
  k = jax.random.split(jax.random.key(key), 3)
  return {
    "params": {
      "Conv_0": {"kernel": jax.random.normal(k[0], (3, 3, 3, 8), dtype), "bias": jnp.zeros(8, dtype)},
      "Dense_0": {"kernel": jax.random.normal(k[1], (32, 16), dtype), "bias": jnp.zeros(16, dtype)},
      "Dense_1": {"kernel": jax.random.normal(k[2], (16, 10), dtype), "bias": jnp.zeros(10, dtype)},
    }
  }


def nnx_state(key=0):
  model = nnx.Sequential(nnx.Linear(6, 8, rngs=nnx.Rngs(key)), nnx.Linear(8, 4, rngs=nnx.Rngs(key + 1)))
  return nnx.state(model, nnx.Param)


def eqx_module(key=0):
  return eqx.nn.MLP(6, 4, 8, 2, key=jax.random.key(key))


def tuple_params(key=0):
  k = jax.random.split(jax.random.key(key), 2)
  return (
    Layer(jax.random.normal(k[0], (6, 8)), jnp.zeros(8)),
    [Layer(jax.random.normal(k[1], (8, 4)), jnp.zeros(4))],
  )


ALL_TREES = {
  "linen": linen_params,
  "nnx": nnx_state,
  "equinox": eqx_module,
  "tuples": tuple_params,
}


def np_keys(x: np.ndarray) -> np.ndarray:
  """NumPy reference of order-preserving keys (float32; -0 == 0; NaN below everything)."""
  x = np.asarray(x, np.float32).copy()
  x[x == 0] = 0.0
  b = x.view(np.uint32)
  return np.where(np.isnan(x), np.uint32(0), np.where(b >> 31 == 1, ~b, b | np.uint32(1 << 31)))


def np_keep(scores_list, n_remove):
  """Reference keep masks: remove the n lowest; among ties the later (flat, concatenated) go."""
  flat = np.concatenate([np.asarray(s, np.float32).reshape(-1) for s in scores_list])
  keys = np_keys(flat)
  # ascending by key, ties: later index first (they are removed first)
  order = np.lexsort((-np.arange(flat.size), keys))
  keep = np.ones(flat.size, bool)
  keep[order[:n_remove]] = False
  out, i = [], 0
  for s in scores_list:
    out.append(keep[i : i + np.size(s)].reshape(np.shape(s)))
    i += np.size(s)
  return out


def write_tiny_cifar_npz(path, n_train: int, n_test: int, seed: int = 0) -> str:
  """Random 32x32x3 uint8 images with labels in 0..9, as the runner's ``npz`` source expects."""
  rng = np.random.default_rng(seed)
  np.savez(
    path,
    train_image=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
    train_label=rng.integers(0, 10, n_train),
    test_image=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
    test_label=rng.integers(0, 10, n_test),
  )
  return str(path)

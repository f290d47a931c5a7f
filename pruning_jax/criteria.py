"""Importance scores: pytrees with the params' structure, higher = keep.

Non-array leaves (e.g. an Equinox activation function) pass through unchanged; they are never
selected for pruning.

Example:
  >>> import jax.numpy as jnp
  >>> params = {"w": jnp.array([[1., -3.], [2., 0.5]])}
  >>> grads = {"w": jnp.array([[1., 1.], [-1., 4.]])}
  >>> saliency(params, grads)["w"].tolist()
  [[1.0, 3.0], [2.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from pruning_jax.tree import PyTree, check_structure, is_array, keystr, path_str, split_key_like


def _map(fn: Callable, tree: PyTree, *rest: PyTree) -> PyTree:
  for other in rest:
    check_structure(tree, other, names=("params", "grads"))
  return jax.tree.map(lambda x, *r: fn(x, *r) if is_array(x) else x, tree, *rest)


def magnitude(params: PyTree) -> PyTree:
  """``|w|`` (Han et al., 2015)."""
  return _map(jnp.abs, params)


def random(key: jax.Array, params: PyTree) -> PyTree:
  """Independent U(0, 1) scores per weight: the random-pruning baseline."""
  keys = split_key_like(key, params)
  return jax.tree.map(
    lambda p, k: jax.random.uniform(k, p.shape, jnp.float32) if is_array(p) else p, params, keys
  )


def gradient(grads: PyTree) -> PyTree:
  """``|g|``."""
  return _map(jnp.abs, grads)


def saliency(params: PyTree, grads: PyTree) -> PyTree:
  """``|w * g|``, the connection sensitivity of SNIP (Lee et al., ICLR 2019)."""
  return _map(lambda w, g: jnp.abs(w * g), params, grads)


def movement(params: PyTree, grads: PyTree) -> PyTree:
  """``-w * g``: positive where the weight moves away from zero (Sanh et al., NeurIPS 2020).

  Accumulate it over steps (sum of per-step scores) for movement pruning proper.
  """
  return _map(lambda w, g: -w * g, params, grads)


def channel_norm(params: PyTree, *, axis: int = -1, ord: int = 1) -> PyTree:
  """Per-channel L1 (``ord=1``, Li et al. ICLR 2017) or L2 norm of every leaf with ndim > 1,
  kept as a broadcastable shape (e.g. ``(1, 1, 1, C)`` for an HWIO kernel); other leaves get
  their magnitude."""
  if ord not in (1, 2):
    raise ValueError(f"channel_norm: ord must be 1 or 2, got {ord!r}.")

  def norm(x):
    if x.ndim < 2:
      return jnp.abs(x)
    a = axis % x.ndim
    others = tuple(i for i in range(x.ndim) if i != a)
    if ord == 1:
      return jnp.sum(jnp.abs(x), axis=others, keepdims=True)
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=others, keepdims=True))

  return _map(norm, params)


def bn_scale(params: PyTree, pairs: Mapping[str, str], *, axis: int = -1) -> PyTree:
  """Network-slimming scores: ``|gamma|`` of the BatchNorm that follows each kernel, broadcast
  along the kernel's channel ``axis`` (Liu et al., ICCV 2017).

  Args:
    params: the parameter pytree.
    pairs: ``{kernel slash path: BN scale slash path}``, e.g.
      ``{"Conv_0/kernel": "BatchNorm_0/scale"}``. Kernels not listed get their magnitude.
    axis: the kernel's output-channel axis.

  Raises:
    ValueError: a path in ``pairs`` that is not in params, or a channel-count mismatch.
  """
  flat = {path_str(p): (p, leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
  missing = [p for kv in pairs.items() for p in kv if p not in flat]
  if missing:
    raise ValueError(
      f"bn_scale: paths {missing} are not in params. Fix: use slash paths as written by "
      f"pruning_jax.tree.path_str; params has e.g. {sorted(flat)[:6]}."
    )
  scales = {}
  for kernel_path, scale_path in pairs.items():
    kpath, kernel = flat[kernel_path]
    _, scale = flat[scale_path]
    a = axis % kernel.ndim
    if scale.shape != (kernel.shape[a],):
      raise ValueError(
        f"bn_scale: {keystr(kpath)} has {kernel.shape[a]} channels on axis {a} but "
        f"{scale_path} has shape {scale.shape}. Fix: pair each kernel with its own BN scale."
      )
    shape = [1] * kernel.ndim
    shape[a] = kernel.shape[a]
    scales[kernel_path] = jnp.abs(scale).reshape(shape)

  def score(path, leaf):
    if not is_array(leaf):
      return leaf
    return scales.get(path_str(path), jnp.abs(leaf))

  return jax.tree_util.tree_map_with_path(score, params)

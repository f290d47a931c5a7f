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

__all__ = ["bn_scale", "channel_norm", "gradient", "magnitude", "movement", "random", "saliency"]


def _map(fn: Callable, tree: PyTree, *rest: PyTree) -> PyTree:
  for other in rest:
    check_structure(tree, other, names=("params", "grads"))
  return jax.tree.map(lambda x, *r: fn(x, *r) if is_array(x) else x, tree, *rest)


def magnitude(params: PyTree) -> PyTree:
  """Magnitude scores ``|w|`` (Han et al., NeurIPS 2015).

  Args:
    params: the parameter pytree.

  Returns:
    A pytree of ``|w|`` with the params' structure.

  Example:
    >>> import jax.numpy as jnp
    >>> magnitude({"w": jnp.array([-2.0, 1.0])})["w"].tolist()
    [2.0, 1.0]
  """
  return _map(jnp.abs, params)


def random(key: jax.Array, params: PyTree) -> PyTree:
  """Independent U(0, 1) scores per weight: the random-pruning baseline.

  Args:
    key: PRNG key; each leaf draws from its own key split off it.
    params: the parameter pytree (only shapes are used).

  Returns:
    A pytree of float32 scores with the params' structure.

  Raises:
    TypeError: ``key`` is not a PRNG key.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> s = random(jax.random.key(0), {"w": jnp.zeros((2, 3))})
    >>> s["w"].shape, bool(((s["w"] >= 0) & (s["w"] < 1)).all())
    ((2, 3), True)
  """
  keys = split_key_like(key, params)
  return jax.tree.map(
    lambda p, k: jax.random.uniform(k, p.shape, jnp.float32) if is_array(p) else p, params, keys
  )


def gradient(grads: PyTree) -> PyTree:
  """Gradient-magnitude scores ``|g|``.

  Args:
    grads: the gradient pytree.

  Returns:
    A pytree of ``|g|``.

  Example:
    >>> import jax.numpy as jnp
    >>> gradient({"w": jnp.array([-0.5, 2.0])})["w"].tolist()
    [0.5, 2.0]
  """
  return _map(jnp.abs, grads)


def saliency(params: PyTree, grads: PyTree) -> PyTree:
  """Saliency ``|w * g|``, the connection sensitivity of SNIP (Lee et al., ICLR 2019).

  ``|w * g|`` is ``|dL/dc|`` for a multiplicative mask c at 1, the first-order change of the
  loss when the weight is removed.

  Args:
    params: the parameter pytree.
    grads: the loss gradient, with the params' structure.

  Returns:
    A pytree of ``|w * g|``.

  Raises:
    ValueError: ``grads`` does not have the params' structure.

  Example:
    >>> import jax.numpy as jnp
    >>> saliency({"w": jnp.array([2.0, -1.0])}, {"w": jnp.array([0.5, 3.0])})["w"].tolist()
    [1.0, 3.0]
  """
  return _map(lambda w, g: jnp.abs(w * g), params, grads)


def movement(params: PyTree, grads: PyTree) -> PyTree:
  """Movement scores ``-w * g``: positive where SGD moves the weight away from zero
  (Sanh et al., NeurIPS 2020).

  Accumulate it over steps (sum of per-step scores) for movement pruning proper.

  Args:
    params: the parameter pytree.
    grads: the loss gradient, with the params' structure.

  Returns:
    A pytree of ``-w * g``.

  Raises:
    ValueError: ``grads`` does not have the params' structure.

  Example:
    >>> import jax.numpy as jnp
    >>> movement({"w": jnp.array([1.0, 1.0])}, {"w": jnp.array([-1.0, 1.0])})["w"].tolist()
    [1.0, -1.0]
  """
  return _map(lambda w, g: -w * g, params, grads)


def channel_norm(params: PyTree, *, axis: int = -1, ord: int = 1) -> PyTree:
  """Per-channel L1 (``ord=1``, Li et al. ICLR 2017) or L2 norm of every leaf with ndim > 1.

  Args:
    params: the parameter pytree.
    axis: the channel axis (``-1``: output channels of Flax kernels).
    ord: 1 or 2.

  Returns:
    A pytree of channel norms of broadcastable shape (e.g. ``(1, 1, 1, C)`` for an HWIO
    kernel); leaves with ndim < 2 get their magnitude.

  Raises:
    ValueError: ``ord`` other than 1 or 2.

  Example:
    >>> import jax.numpy as jnp
    >>> channel_norm({"w": jnp.array([[1.0, -2.0], [3.0, 0.0]])})["w"].tolist()
    [[4.0, 2.0]]
  """
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

  Returns:
    A pytree of scores: listed kernels get ``|gamma|`` of shape ``(1, ..., C, ..., 1)``, every
    other leaf its magnitude.

  Raises:
    ValueError: a path in ``pairs`` that is not in params, or a channel-count mismatch.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"conv": {"kernel": jnp.ones((3, 3, 1, 2))}, "bn": {"scale": jnp.array([0.5, -2.0])}}
    >>> bn_scale(params, {"conv/kernel": "bn/scale"})["conv"]["kernel"].ravel().tolist()
    [0.5, 2.0]
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

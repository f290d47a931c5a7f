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

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from pruning_jax.tree import PyTree, check_structure, is_array, keystr, path_str, split_key_like

__all__ = [
  "bn_scale",
  "channel_norm",
  "connection_sensitivity",
  "gradient",
  "gradient_flow",
  "magnitude",
  "movement",
  "random",
  "saliency",
  "synaptic_flow",
]


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


def _mean_grad(loss_fn: Callable, params: PyTree, batches) -> PyTree:
  if not batches:
    raise ValueError("the score needs at least one batch (InitContext.batches).")
  grads = [jax.grad(loss_fn)(params, b) for b in batches]
  return jax.tree.map(lambda *g: sum(g[1:], g[0]) / len(g), *grads)


def connection_sensitivity(loss_fn: Callable[[PyTree, Any], jax.Array], params: PyTree, batches) -> PyTree:
  """SNIP's connection sensitivity (Lee et al., ICLR 2019): ``|dL/dc|`` for a multiplicative
  mask ``c`` at 1, i.e. ``|w * g|`` with ``g`` the loss gradient averaged over ``batches``,
  divided by its sum over every leaf (as the reference does; the ranking is unchanged).

  Args:
    loss_fn: ``(params, batch) -> scalar`` loss.
    params: the (masked) parameter pytree.
    batches: the batches the gradient averages over.

  Returns:
    Scores with the params' structure, summing to 1 over the floating leaves.

  Raises:
    ValueError: no batches.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.array([1.0, -2.0, 0.5])}
    >>> loss = lambda p, x: jnp.sum(p["w"] * x) ** 2
    >>> [round(v, 4) for v in connection_sensitivity(loss, params, [jnp.ones(3)])["w"].tolist()]
    [0.2857, 0.5714, 0.1429]
  """
  s = saliency(params, _mean_grad(loss_fn, params, batches))
  return _normalized(s, lambda total: total)


def gradient_flow(loss_fn: Callable[[PyTree, Any], jax.Array], params: PyTree, batches) -> PyTree:
  """GraSP's keep score (Wang et al., ICLR 2020): ``w * (H g)``, where ``g`` is the loss
  gradient averaged over ``batches`` (held constant) and ``H g`` the Hessian-vector product,
  by forward-over-reverse differentiation (no Hessian is formed). GraSP removes the weights
  whose removal least reduces the gradient flow, the highest ``-w * (H g)``: the lowest of this
  score. Divided by ``|sum|`` over every leaf, as the reference does.

  Pass a loss on tempered logits (``InitContext.loss_fn(w, b, temperature=200)``) for the
  reference's setting.

  Args:
    loss_fn: ``(params, batch) -> scalar`` loss.
    params: the (masked) parameter pytree.
    batches: the batches ``g`` and ``H g`` average over.

  Returns:
    Scores with the params' structure (higher = keep).

  Raises:
    ValueError: no batches.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> loss = lambda p, b: 0.5 * (p["w"][0] ** 2 + 3 * p["w"][1] ** 2)  # H = diag(1, 3)
    >>> gradient_flow(loss, params, [None])["w"].tolist()  # w * H g = (1 * 1, 2 * 3 * 6) / 37
    [0.027027027681469917, 0.9729729890823364]
  """
  g = jax.lax.stop_gradient(_mean_grad(loss_fn, params, batches))

  def grad_of(p):
    return _mean_grad(loss_fn, p, batches)

  hg = jax.jvp(grad_of, (params,), (g,))[1]
  s = _map(lambda w, v: w * v, params, hg)
  return _normalized(s, jnp.abs)


def synaptic_flow(
  forward: Callable[[PyTree, Any], Any], params: PyTree, example_input: Any, *, dtype: Any = jnp.float64
) -> PyTree:
  """SynFlow's data-free score (Tanaka et al., NeurIPS 2020): ``|theta * dR/dtheta|`` with
  ``R = 1^T f_|theta|(1)``, the summed output of the network whose every parameter is replaced
  by its absolute value, on one all-ones input.

  Without biases and normalisation the network is a product of non-negative matrices and every
  layer's summed score equals ``R`` (the paper's conservation theorem). The product of many
  small weights underflows float32 in deep networks; ``dtype=float64`` (the default) computes
  it in double precision, as the paper advises (the reference code uses float32).

  Args:
    forward: ``(params, x) -> outputs`` in evaluation mode (BatchNorm uses its statistics).
    params: the (masked) parameter pytree.
    example_input: an input batch; its first example's shape is used.
    dtype: the floating type of the computation.

  Returns:
    Non-negative scores with the params' structure, in ``dtype``.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"a": jnp.array([[1.0, -2.0]]), "b": jnp.array([[3.0], [1.0]])}
    >>> s = synaptic_flow(lambda p, x: x @ p["a"] @ p["b"], params, jnp.zeros((4, 1)))
    >>> s["a"].tolist(), s["b"].tolist()  # R = 1 * 3 + 2 * 1 = 5 in every layer
    ([[3.0, 2.0]], [[3.0], [2.0]])
  """
  with jax.enable_x64(True) if jnp.dtype(dtype) == jnp.float64 else contextlib.nullcontext():
    lin = _map(lambda w: jnp.abs(w).astype(dtype), params)
    ones = jax.tree.map(lambda a: jnp.ones((1, *jnp.shape(a)[1:]), dtype), example_input)

    def r(p):
      return sum(jnp.sum(o) for o in jax.tree.leaves(forward(p, ones)))

    grads = jax.grad(r)(lin)
    return _map(lambda w, g: jnp.abs(w * g), lin, grads)


def _floating(x: Any) -> bool:
  return is_array(x) and jnp.issubdtype(x.dtype, jnp.floating)


def _normalized(scores: PyTree, norm: Callable[[jax.Array], jax.Array]) -> PyTree:
  total = norm(sum(jnp.sum(x) for x in jax.tree.leaves(scores) if _floating(x))) + jnp.finfo(jnp.float32).tiny
  return jax.tree.map(lambda x: x / total if _floating(x) else x, scores)

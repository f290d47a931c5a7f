"""Per-leaf sparsity allocation for a global target.

``uniform`` and ``erk`` return a pytree of Python floats with the params' structure (0.0 on
unselected leaves) to pass as ``sparsity`` to :func:`pruning_jax.masks_from_scores` with
``scope="layer"``. ``erk`` returns fractions ``r_l / n_l`` of integer removal counts ``r_l``
that sum to exactly ``round(s * N)``. "global" is not an allocation but one threshold over all
leaves (``scope="global"``); :func:`resolve` maps the three names to ``(sparsity, scope)``.

Example:
  >>> import jax.numpy as jnp
  >>> params = {"a": jnp.ones((100, 100)), "b": jnp.ones((10, 10)), "bias": jnp.ones(10)}
  >>> alloc = erk(params, 0.9)
  >>> alloc["bias"], alloc["b"] < alloc["a"]
  (0.0, True)
  >>> sum(round(alloc[k] * params[k].size) for k in ("a", "b")) == round(0.9 * 10100)
  True
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from pruning_jax import selection as sel_lib
from pruning_jax import validation
from pruning_jax.tree import PyTree, is_array, keystr, leaves_with_paths

DISTRIBUTIONS = ("uniform", "erk", "global")

__all__ = ["DISTRIBUTIONS", "erk", "erk_raw_density", "resolve", "uniform"]


def _check(sparsity: Any) -> float:
  s = validation.fraction(sparsity, "sparsity", what="removed fraction")
  if s is None:
    raise TypeError("sparsity must be a static number to allocate per-leaf fractions, got a traced value.")
  return s


def uniform(params: PyTree, sparsity: float, *, selection: PyTree | None = None) -> PyTree:
  """Uniform allocation: every selected leaf gets ``sparsity``.

  Args:
    params: the parameter pytree.
    sparsity: removed fraction in [0, 1), static.
    selection: bool pytree of prunable leaves; default :func:`pruning_jax.selection.select`.

  Returns:
    A pytree of Python floats: ``sparsity`` on selected leaves, 0.0 elsewhere.

  Raises:
    ValueError: sparsity outside [0, 1), or an empty selection.
    TypeError: a traced sparsity.

  Example:
    >>> import jax.numpy as jnp
    >>> uniform({"w": jnp.ones((4, 4)), "b": jnp.ones(4)}, 0.5)
    {'b': 0.0, 'w': 0.5}
  """
  s = _check(sparsity)
  if selection is None:
    selection = sel_lib.select(params)
  sel_lib.validate(params, selection)
  return jax.tree.map(lambda sel: s if sel else 0.0, selection)


def erk_raw_density(shape: tuple[int, ...], power_scale: float = 1.0) -> float:
  """ERK's un-normalized density ``raw = (sum of dims / product of dims) ** power_scale``.

  For a conv kernel this is ``(h + w + c_in + c_out) / (h w c_in c_out)``, for a dense kernel
  Erdos-Renyi's ``(n_in + n_out) / (n_in n_out)``.

  Args:
    shape: the leaf's shape.
    power_scale: exponent (1 in Evci et al.; 0 gives the uniform allocation).

  Returns:
    The raw density, a float.

  Example:
    >>> erk_raw_density((10, 10))
    0.2
  """
  return (sum(shape) / math.prod(shape)) ** power_scale


def erk(
  params: PyTree, sparsity: float, *, selection: PyTree | None = None, power_scale: float = 1.0
) -> PyTree:
  """Erdos-Renyi-Kernel allocation (Evci et al., ICML 2020).

  The density of leaf l is ``d_l = eps * raw_l`` (:func:`erk_raw_density`) with one ``eps`` for
  the whole net, chosen so that ``sum_l d_l n_l = N - round(s N)`` (n_l weights in leaf l, N in
  all). A leaf whose density would exceed 1 is made dense and ``eps`` re-solved over the others
  (repeated until none exceeds 1). Removal counts are rounded by largest remainder so that they
  sum to exactly ``round(s N)``, and every leaf keeps at least one weight.

  Args:
    params: the parameter pytree.
    sparsity: global removed fraction in [0, 1), static.
    selection: bool pytree of prunable leaves; default :func:`pruning_jax.selection.select`.
    power_scale: ERK's exponent.

  Returns:
    A pytree of Python floats (removed fraction per leaf, 0.0 on unselected leaves).

  Raises:
    ValueError: sparsity outside [0, 1), an empty selection, or a sparsity that would leave a
      layer without weights.
    TypeError: a traced sparsity.

  Example:
    >>> import jax.numpy as jnp
    >>> alloc = erk({"big": jnp.ones((100, 100)), "small": jnp.ones((10, 10))}, 0.9)
    >>> alloc["small"] < 0.9 < alloc["big"]
    True
  """
  s = _check(sparsity)
  if selection is None:
    selection = sel_lib.select(params)
  paths = sel_lib.validate(params, selection)
  leaves = {keystr(p): leaf for p, leaf in leaves_with_paths(params) if is_array(leaf)}
  names = [keystr(p) for p in paths]
  sizes = np.array([leaves[n].size for n in names], dtype=np.float64)
  raw = np.array([erk_raw_density(tuple(leaves[n].shape), power_scale) for n in names])
  total = sizes.sum()
  n_remove = round(s * total)
  kept_target = total - n_remove
  dense = np.zeros(len(names), bool)
  while True:
    budget = kept_target - sizes[dense].sum()
    eps = budget / (raw[~dense] * sizes[~dense]).sum() if (~dense).any() else 0.0
    density = np.where(dense, 1.0, eps * raw)
    over = (~dense) & (density > 1.0)
    if not over.any():
      break
    dense[np.argmax(np.where(over, density, -np.inf))] = True
  density = np.clip(density, 0.0, 1.0)
  # every layer keeps at least one weight: a fraction of 1 would remove the layer (layer collapse)
  caps = sizes - 1
  if n_remove > caps.sum():
    raise ValueError(
      f"erk: sparsity {s!r} removes {n_remove} of {int(total)} weights, more than leaves one weight in "
      f"each of the {len(names)} selected layers ({int(caps.sum())} at most). Fix: lower the sparsity "
      "or select fewer layers."
    )
  removal = _largest_remainder((1.0 - density) * sizes, n_remove, caps)
  frac = dict(zip(names, (removal / sizes).tolist(), strict=True))
  return jax.tree_util.tree_map_with_path(lambda p, sel: frac[keystr(p)] if sel else 0.0, selection)


def _largest_remainder(ideal: np.ndarray, total: int, caps: np.ndarray) -> np.ndarray:
  """Integers close to ``ideal`` summing to ``total``, each within ``[0, caps]``."""
  base = np.minimum(np.floor(ideal), caps)
  rest = int(total - base.sum())
  order = np.argsort(-(ideal - base), kind="stable")
  i = 0
  while rest != 0:
    j = order[i % len(order)]
    step = 1 if rest > 0 else -1
    if 0 <= base[j] + step <= caps[j]:
      base[j] += step
      rest -= step
    i += 1
  return base


def resolve(
  name: str, params: PyTree, sparsity: float, *, selection: PyTree | None = None
) -> tuple[Any, str]:
  """``(sparsity, scope)`` for :func:`pruning_jax.masks_from_scores` from a distribution name.

  Args:
    name: ``"uniform"`` or ``"erk"`` (a per-leaf tree with ``scope="layer"``) or ``"global"``
      (the scalar with ``scope="global"``).
    params: the parameter pytree.
    sparsity: removed fraction in [0, 1), static.
    selection: bool pytree of prunable leaves.

  Returns:
    ``(sparsity, scope)``.

  Raises:
    ValueError: an unknown name, or what :func:`uniform` / :func:`erk` raise.

  Example:
    >>> import jax.numpy as jnp
    >>> resolve("global", {"w": jnp.ones((2, 2))}, 0.5)
    (0.5, 'global')
  """
  if name == "uniform":
    return uniform(params, sparsity, selection=selection), "layer"
  if name == "erk":
    return erk(params, sparsity, selection=selection), "layer"
  if name == "global":
    return _check(sparsity), "global"
  raise ValueError(f"Unknown distribution {name!r}; expected one of {DISTRIBUTIONS}.")

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


def _check(sparsity: Any) -> float:
  s = validation.fraction(sparsity, "sparsity", what="removed fraction")
  if s is None:
    raise TypeError("sparsity must be a static number to allocate per-leaf fractions, got a traced value.")
  return s


def uniform(params: PyTree, sparsity: float, *, selection: PyTree | None = None) -> PyTree:
  """Every selected leaf gets ``sparsity``."""
  s = _check(sparsity)
  if selection is None:
    selection = sel_lib.select(params)
  sel_lib.validate(params, selection)
  return jax.tree.map(lambda sel: s if sel else 0.0, selection)


def erk_raw_density(shape: tuple[int, ...], power_scale: float = 1.0) -> float:
  """ERK's un-normalized density ``(sum of dims / product of dims) ** power_scale`` (for a conv
  kernel ``(h + w + c_in + c_out) / (h w c_in c_out)``; Erdos-Renyi for a dense kernel)."""
  return (sum(shape) / math.prod(shape)) ** power_scale


def erk(
  params: PyTree, sparsity: float, *, selection: PyTree | None = None, power_scale: float = 1.0
) -> PyTree:
  """Erdos-Renyi-Kernel allocation (Evci et al., ICML 2020).

  Density of leaf l is ``eps * raw_l`` with one ``eps`` for the whole net, chosen so the global
  kept count is ``N - round(s N)``. A leaf whose density would exceed 1 is made dense and the
  budget is re-solved over the others (repeat until none exceeds 1). Removal counts are then
  rounded by largest remainder so they sum exactly to ``round(s N)``.

  Raises:
    ValueError: sparsity outside [0, 1) or an empty selection.
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
  """``(sparsity, scope)`` for :func:`pruning_jax.masks_from_scores` from a distribution name:
  ``"uniform"`` and ``"erk"`` give a per-leaf tree with ``scope="layer"``; ``"global"`` gives
  the scalar with ``scope="global"``."""
  if name == "uniform":
    return uniform(params, sparsity, selection=selection), "layer"
  if name == "erk":
    return erk(params, sparsity, selection=selection), "layer"
  if name == "global":
    return _check(sparsity), "global"
  raise ValueError(f"Unknown distribution {name!r}; expected one of {DISTRIBUTIONS}.")

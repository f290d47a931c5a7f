"""One call for the common case: prune a (sharded) params pytree to a sparsity.

``prune(params, 0.9)`` scores the params with a named criterion of :mod:`pruning_jax.criteria`,
thresholds the scores exactly (:func:`pruning_jax.masks_from_scores`) and returns masks placed
like the params: on sharded params each mask leaf has its param's sharding, and the threshold
moves only counts between devices.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax

from pruning_jax import criteria as criteria_lib
from pruning_jax import sharding as sharding_lib
from pruning_jax.masks import masks_from_scores
from pruning_jax.tree import PyTree

__all__ = ["prune"]

# the criteria that score from what prune() is given (params, grads, a key); the others need a
# loss and batches (SNIP, GraSP, SynFlow) and are called directly
_INPUTS = {"params", "grads", "key"}


def _criterion(name: str):
  usable = sorted(
    n
    for n, f in vars(criteria_lib).items()
    if inspect.isfunction(f)
    and not n.startswith("_")
    and f.__module__ == criteria_lib.__name__
    and set(_required(f)) <= _INPUTS
  )
  if name not in usable:
    raise ValueError(
      f"prune: criterion={name!r} is not one prune() can score; expected one of {usable}. Data-dependent "
      "criteria (connection_sensitivity, gradient_flow, synaptic_flow) take a loss: call them, then "
      "pruning_jax.masks_from_scores."
    )
  return getattr(criteria_lib, name)


def _required(fn) -> list[str]:
  return [
    n
    for n, p in inspect.signature(fn).parameters.items()
    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
  ]


def prune(
  params: PyTree,
  sparsity: float,
  *,
  criterion: str = "magnitude",
  structure: str = "unstructured",
  scope: str = "global",
  selection: PyTree | None = None,
  normalize: str | None = None,
  grads: PyTree | None = None,
  key: jax.Array | None = None,
) -> PyTree:
  """Masks that remove exactly ``round(sparsity * N)`` of the selected units by ``criterion``.

  Args:
    params: the params (any pytree; arrays may be sharded).
    sparsity: the removed fraction, in [0, 1).
    criterion: a function of :mod:`pruning_jax.criteria` that scores from params, grads and/or a
      key: ``"magnitude"``, ``"random"``, ``"gradient"``, ``"saliency"``, ``"movement"``.
    structure: ``"unstructured"``, ``"channels"`` or a :class:`pruning_jax.structures.Structure`
      (e.g. ``pruning_jax.structures.nm(2, 4)``; see :func:`pruning_jax.masks_from_scores`).
    scope: ``"global"`` (one threshold over all selected leaves) or ``"layer"``.
    selection: bool pytree of prunable leaves; default kernels (no biases, no norms).
    normalize: layer normalization of a global ranking (``"l1"``, ``"l2"``, ``"max"``, ``"mean"``).
    grads: the loss gradient, for the criteria that read it.
    key: a PRNG key, for ``"random"``.

  Returns:
    Bool masks with the params' structure; on sharded params, each mask leaf sharded like its
    param (the others replicated).

  Raises:
    ValueError: an unknown criterion, or one whose input (grads, key) is missing.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.array([[3.0, -1.0], [0.5, 2.0]]), "b": jnp.zeros(2)}
    >>> prune(params, 0.5)["w"].tolist()
    [[True, False], [False, True]]
  """
  fn = _criterion(criterion)
  given: dict[str, Any] = {"params": params, "grads": grads, "key": key}
  missing = [n for n in _required(fn) if given[n] is None]
  if missing:
    raise ValueError(
      f"prune: criterion={criterion!r} needs {missing}; pass them (e.g. grads=jax.grad(loss)(params))."
    )
  args = [given[n] for n in _required(fn)]

  def masks(params, args):
    scores = fn(*args)
    return masks_from_scores(
      scores, sparsity, selection=selection, structure=structure, scope=scope, normalize=normalize
    )

  arrays = jax.tree.leaves(params)
  shardings = [getattr(x, "sharding", None) for x in arrays]
  if arrays and all(isinstance(s, jax.sharding.NamedSharding) for s in shardings):
    param_shardings = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), shardings)
    shapes = jax.eval_shape(masks, params, args)
    out = sharding_lib.shardings_like(shapes, params, param_shardings)
    return jax.jit(masks, out_shardings=out)(params, args)
  return jax.jit(masks)(params, args)

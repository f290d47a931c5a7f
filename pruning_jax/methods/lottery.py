"""Iterative magnitude pruning rounds: lottery tickets with rewinding (Frankle & Carbin 2019;
Frankle et al. 2020; Renda et al. 2020).

One round is one stage: :func:`imp_round` removes a fraction of the weights the previous round
kept (``InitContext.masks``, 20% in the papers), the smallest in magnitude over one global
ranking, with chosen layers at their own rate (the output layer at half the rate for conv
nets in the original), and holds those masks while the stage trains. What the stage starts
from is the runner's business, so the four ways to continue after a prune are stage configs:

* rewind to initialization: ``rewind_to={"stage": 0, "step": 0}`` (Frankle & Carbin);
* rewind to step k: ``rewind_to={"stage": 0, "step": k}`` (Frankle et al.);
* learning-rate rewinding: no ``rewind_to`` (the trained weights go on), the stage's learning
  rate schedule restarting from its beginning (Renda et al.);
* fine-tuning: no ``rewind_to`` and a small constant learning rate.

After k rounds at rate p the kept fraction of the globally ranked weights is ``(1 - p) ** k``,
exactly (each round removes ``round(p * kept)``).

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jnp.arange(1.0, 101.0).reshape(10, 10)}
  >>> pruner = pj.methods.imp_round(0.2)
  >>> first = pruner.masks(params, pruner.init(jax.random.key(0), params))
  >>> again = pruner.masks(params, pruner.init(jax.random.key(0), params, pj.InitContext(masks=first)))
  >>> int(first["w"].sum()), int(again["w"].sum())
  (80, 64)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from pruning_jax import criteria, validation
from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax.methods.at_init import InitBuffers, fixed_mask_pruner
from pruning_jax.pruner import InitContext, Pruner, PrunerState
from pruning_jax.tree import path_str, static_value


def _removed_fraction(kept: jax.Array, total: int, rate: float) -> jax.Array | float:
  """``(total - kept + round(rate * kept)) / total``: exact in Python for concrete counts."""
  k = static_value(kept)
  if k is not None:
    k = int(k)
    return (total - k + round(rate * k)) / total
  kept = jnp.asarray(kept, jnp.float32)
  return (total - kept + jnp.round(rate * kept)) / total


def imp_round(
  rate: float = 0.2,
  *,
  layer_rates: Mapping[str, float] | None = None,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """One round of iterative magnitude pruning, applied at ``init`` to the hand-off's masks.

  Args:
    rate: the fraction of the still-kept weights this round removes, in [0, 1).
    layer_rates: ``{regex on the slash path: rate}`` for leaves pruned at their own rate,
      each on its own (e.g. ``{"Dense_2/kernel": 0.1}``, the output layer at half of 0.2); the
      other selected leaves share one global ranking.
    selection: the prunable leaves (default: conv and dense kernels).

  Returns:
    A :class:`pruning_jax.Pruner` whose masks are fixed during the stage, with a
    ``collapsed_layers`` metric.

  Raises:
    ValueError: a rate outside [0, 1), or (at init) a ``layer_rates`` pattern that matches no
      selected leaf.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"a": jnp.ones((10, 10)), "out": jnp.ones((10, 10))}
    >>> pruner = pj.methods.imp_round(0.2, layer_rates={"out": 0.1})
    >>> m = pruner.masks(params, pruner.init(jax.random.key(0), params))
    >>> int(m["a"].sum()), int(m["out"].sum())
    (80, 90)
  """
  where = "imp_round"
  rate = validation.fraction(rate, f"{where}: rate")
  special = {}
  for pattern, r in (layer_rates or {}).items():
    special[pattern] = validation.fraction(r, f"{where}: layer_rates[{pattern!r}]")

  def init(key, params, context: InitContext | None = None):
    del key
    sel = sel_lib.resolve(selection, params)
    start = masks_lib.init_masks(params, sel)
    if context is not None and context.masks is not None:
      masks_lib.check_masks(params, context.masks)
      start = jax.tree.map(lambda a, b: a & b, start, context.masks)
    paths = {path_str(p): s for p, s in jax.tree_util.tree_flatten_with_path(sel)[0]}
    own = {}  # leaf path -> its rate
    for pattern, r in special.items():
      hit = [p for p, s in paths.items() if s and re.search(pattern, p)]
      if not hit:
        raise ValueError(
          f"{where}: layer_rates pattern {pattern!r} matches no selected leaf; selected: "
          f"{sorted(p for p, s in paths.items() if s)}."
        )
      own.update({p: r for p in hit})
    in_global = jax.tree_util.tree_map_with_path(lambda p, s: bool(s) and path_str(p) not in own, sel)
    scores = jax.tree.map(
      lambda w, m: jnp.where(m, w, -jnp.inf) if jnp.ndim(m) else w, criteria.magnitude(params), start
    )
    out = start
    if any(jax.tree.leaves(in_global)):
      leaves = [(m, s) for m, s in zip(jax.tree.leaves(start), jax.tree.leaves(in_global), strict=True) if s]
      total = sum(int(m.size) for m, _ in leaves)
      kept = sum(jnp.sum(m, dtype=jnp.int32) for m, _ in leaves)
      removed = _removed_fraction(kept, total, rate)
      glob = masks_lib.masks_from_scores(scores, removed, selection=in_global, scope="global")
      out = jax.tree.map(lambda g, m, s: g if s else m, glob, out, in_global)
    for p, r in own.items():
      only = jax.tree_util.tree_map_with_path(lambda q, s, p=p: path_str(q) == p, sel)
      (m,) = [m for m, s in zip(jax.tree.leaves(start), jax.tree.leaves(only), strict=True) if s]
      removed = _removed_fraction(jnp.sum(m, dtype=jnp.int32), int(m.size), r)
      leaf = masks_lib.masks_from_scores(scores, removed, selection=only, scope="global")
      out = jax.tree.map(lambda a, b, s: a if s else b, leaf, out, only)
    return PrunerState({}, InitBuffers(out))

  return fixed_mask_pruner(init)


__all__ = ["imp_round"]

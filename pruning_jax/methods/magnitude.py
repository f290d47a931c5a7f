"""Score-based pruning with a sparsity schedule: one-shot, gradual (Zhu & Gupta), iterative.

Masks are recomputed whenever the scheduled sparsity changes (so a polynomial schedule with
``frequency=100`` recomputes every 100 steps and a one-shot schedule once). Scores are computed
on the masked weights, so a pruned weight (score 0) never comes back while the schedule rises.
Pruned weights are held by ``keep_masked`` in the optimizer chain.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jax.random.normal(jax.random.key(0), (10, 10))}
  >>> pruner = pj.methods.magnitude(pj.schedules.one_shot(0.9, at_step=5))
  >>> state = pruner.init(jax.random.key(1), params)
  >>> [int(pj.count_kept(pruner.masks(params, pruner.update(params, state, None, t)))[0]) for t in (4, 5)]
  [100, 10]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax import criteria
from pruning_jax import distributions as dist_lib
from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax import structures as struct_lib
from pruning_jax.pruner import Pruner, PrunerState
from pruning_jax.tree import PyTree

ScoreFn = Callable[[PyTree, PyTree], PyTree]  # (masked params, grads) -> scores


class MagnitudeBuffers(NamedTuple):
  masks: PyTree  # bool per selected leaf (params' structure), 0-d True elsewhere
  sparsity: jax.Array  # (), float32: the scheduled sparsity the masks were computed for


def score_pruning(
  score_fn: ScoreFn,
  sparsity: float | Callable[[Any], jax.Array],
  *,
  final_sparsity: float | None = None,
  structure: str | struct_lib.Structure = "unstructured",
  distribution: str = "global",
  normalize: str | None = None,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """Prunes the lowest ``score_fn`` scores to a scheduled sparsity.

  Args:
    score_fn: ``(masked params, grads) -> scores`` (grads may be None at step 0).
    sparsity: a float (pruned at the first update) or a schedule ``step -> sparsity``.
    final_sparsity: the schedule's final value; needed for ``distribution="uniform"/"erk"``
      with a schedule (per-leaf fractions scale with ``s(t) / final_sparsity``).
    structure: unit grouping (see :mod:`pruning_jax.structures`).
    distribution: ``"global"`` (one threshold), ``"uniform"`` or ``"erk"``.
    normalize: layer normalization of scores for the global threshold.
    selection: which leaves may be pruned.
  """
  if distribution not in dist_lib.DISTRIBUTIONS:
    raise ValueError(f"Unknown distribution {distribution!r}; expected one of {dist_lib.DISTRIBUTIONS}.")
  schedule = sparsity if callable(sparsity) else (lambda step, s=float(sparsity): jnp.float32(s))
  final = float(sparsity) if not callable(sparsity) else final_sparsity
  if callable(sparsity) and distribution != "global" and final is None:
    raise ValueError(
      f"distribution={distribution!r} with a sparsity schedule needs final_sparsity= (the "
      "schedule's last value) to allocate per-leaf fractions."
    )

  def allocation(params, sel):
    if distribution == "global":
      return None
    tree, _ = dist_lib.resolve(distribution, params, final, selection=sel)
    return tree

  def init(key, params):
    del key
    sel = sel_lib.resolve(selection, params)
    return PrunerState({}, MagnitudeBuffers(masks_lib.init_masks(params, sel), jnp.zeros((), jnp.float32)))

  def apply(params, state, *, key=None, train=True):
    del key, train
    return masks_lib.apply_masks(params, state.buffers.masks)

  def compute(params, current_masks, grads, s):
    sel = sel_lib.resolve(selection, params)
    scores = score_fn(masks_lib.apply_masks(params, current_masks), grads)
    alloc = allocation(params, sel)
    if alloc is None:
      return masks_lib.masks_from_scores(
        scores, s, selection=sel, structure=structure, scope="global", normalize=normalize
      )
    scale = s / final if final else jnp.float32(0.0)
    per_leaf = jax.tree.map(lambda a: a * scale, alloc)
    return masks_lib.masks_from_scores(scores, per_leaf, selection=sel, structure=structure, scope="layer")

  def update(params, state, grads, step):
    s = jnp.asarray(schedule(step), jnp.float32)

    def recompute(_):
      return MagnitudeBuffers(compute(params, state.buffers.masks, grads, s), s)

    buffers = jax.lax.cond(s != state.buffers.sparsity, recompute, lambda _: state.buffers, None)
    return state._replace(buffers=buffers)

  def masks(params, state):
    del params
    return state.buffers.masks

  def finalize(params, state):
    return masks_lib.apply_masks(params, state.buffers.masks), state.buffers.masks

  return Pruner(init, apply, update, finalize, masks)


def magnitude(sparsity: float | Callable[[Any], jax.Array], **kwargs: Any) -> Pruner:
  """Magnitude pruning ``|w|`` (Han et al., NeurIPS 2015; Zhu & Gupta, 2017 with a polynomial
  schedule); keyword arguments as in :func:`score_pruning`."""
  return score_pruning(lambda params, grads: criteria.magnitude(params), sparsity, **kwargs)

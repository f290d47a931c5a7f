"""Score-based pruning with a sparsity schedule: one-shot, gradual (Zhu & Gupta), iterative.

The masks of step t are those of the scheduled sparsity s(t): ``init`` computes the masks of
s(0) (a constant sparsity prunes before the first step), and the update of step t recomputes
them whenever s(t + 1) differs from the sparsity they were computed for (so a polynomial
schedule with ``frequency=100`` recomputes every 100 steps and a one-shot schedule once).
Scores are computed from the masked weights and the masked gradient, so a removed weight
(score of a zero weight) never comes back while the schedule rises. Removed weights are held
by ``keep_masked`` in the optimizer chain.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jax.random.normal(jax.random.key(0), (10, 10))}
  >>> pruner = pj.methods.magnitude_pruning(pj.schedules.one_shot(0.9, at_step=5))
  >>> state = pruner.init(jax.random.key(1), params)
  >>> kept = lambda t: pruner.masks(params, pruner.update(params, state, pj.StepInfo(jnp.int32(t))))
  >>> [int(pj.count_kept(kept(t))[0]) for t in (3, 4)]  # the update of step 4 prunes for step 5
  [100, 10]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax import criteria, validation
from pruning_jax import distributions as dist_lib
from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax import structures as struct_lib
from pruning_jax.pruner import InitContext, Pruner, PrunerState, StepInfo, no_update
from pruning_jax.tree import PyTree

ScoreFn = Callable[[PyTree, PyTree | None], PyTree]  # (masked params, masked grads or None) -> scores


class ScoreBuffers(NamedTuple):
  """The buffers of :func:`score_pruning`.

  Attributes:
    masks: bool per selected leaf (the params' structure), 0-d True elsewhere.
    sparsity: (), float32: the scheduled sparsity the masks were computed for.
  """

  masks: PyTree
  sparsity: jax.Array


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
    score_fn: ``(masked params, masked grads) -> scores`` (higher = keep). The gradient is that
      of the step's loss with respect to the weights the forward pass saw; it is None at init.
    sparsity: a number in [0, 1) (pruned at init) or a schedule ``step -> sparsity``.
    final_sparsity: the schedule's final value; needed for ``distribution="uniform"/"erk"``
      with a schedule (per-leaf fractions scale with ``s(t) / final_sparsity``).
    structure: unit grouping (see :mod:`pruning_jax.structures`).
    distribution: ``"global"`` (one threshold), ``"uniform"`` or ``"erk"``.
    normalize: layer normalization of scores for the global threshold.
    selection: which leaves may be pruned.

  Returns:
    A :class:`pruning_jax.Pruner`; with ``InitContext.masks`` it starts from those masks.

  Raises:
    ValueError: a sparsity outside [0, 1), an unknown distribution, or a per-leaf
      distribution with a schedule but no ``final_sparsity``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.array([[1.0, -4.0], [3.0, 2.0]])}
    >>> pruner = pj.methods.score_pruning(lambda p, g: pj.criteria.magnitude(p), 0.5)
    >>> pruner.masks(params, pruner.init(jax.random.key(0), params))["w"].tolist()
    [[False, True], [True, False]]
  """
  if distribution not in dist_lib.DISTRIBUTIONS:
    raise ValueError(
      f"score_pruning: distribution={distribution!r} is unknown; expected one of {dist_lib.DISTRIBUTIONS}."
    )
  if callable(sparsity):
    schedule = sparsity
    final = None if final_sparsity is None else validation.fraction(final_sparsity, "final_sparsity")
  else:
    final = validation.fraction(sparsity, "sparsity", what="sparsity (removed fraction)")
    schedule = lambda step, s=final: jnp.float32(s)  # noqa: E731
  if callable(sparsity) and distribution != "global" and final is None:
    raise ValueError(
      f"score_pruning: distribution={distribution!r} with a sparsity schedule needs final_sparsity= "
      "(the schedule's last value) to allocate per-leaf fractions."
    )

  def allocation(params, sel):
    if distribution == "global":
      return None
    tree, _ = dist_lib.resolve(distribution, params, final, selection=sel)
    return tree

  def compute(params, current_masks, grads, s):
    sel = sel_lib.resolve(selection, params)
    masked_grads = None if grads is None else masks_lib.apply_masks(grads, current_masks)
    scores = score_fn(masks_lib.apply_masks(params, current_masks), masked_grads)
    alloc = allocation(params, sel)
    if alloc is None:
      return masks_lib.masks_from_scores(
        scores, s, selection=sel, structure=structure, scope="global", normalize=normalize
      )
    scale = s / final if final else jnp.float32(0.0)
    per_leaf = jax.tree.map(lambda a: a * scale, alloc)
    return masks_lib.masks_from_scores(scores, per_leaf, selection=sel, structure=structure, scope="layer")

  def init(key, params, context: InitContext | None = None):
    del key
    sel = sel_lib.resolve(selection, params)
    start = masks_lib.init_masks(params, sel)
    if context is not None and context.masks is not None:
      masks_lib.check_masks(params, context.masks)
      start = jax.tree.map(lambda a, b: a & b, start, context.masks)
    s0 = jnp.asarray(schedule(0), jnp.float32)
    return PrunerState({}, ScoreBuffers(compute(params, start, None, s0), s0))

  def apply(params, state, *, key=None, train=True):
    del key, train
    return masks_lib.apply_masks(params, state.buffers.masks)

  def update(params, state, info: StepInfo):
    s = jnp.asarray(schedule(jnp.asarray(info.step) + 1), jnp.float32)

    def recompute(_):
      return ScoreBuffers(compute(params, state.buffers.masks, info.grads, s), s)

    buffers = jax.lax.cond(s != state.buffers.sparsity, recompute, lambda _: state.buffers, None)
    return state._replace(buffers=buffers)

  # A constant sparsity is reached at init and never changes, so no step recomputes the masks:
  # without the conditional the optimizer step need not wait for one.

  def masks(params, state):
    del params
    return state.buffers.masks

  def finalize(params, state):
    return masks_lib.apply_masks(params, state.buffers.masks), state.buffers.masks

  # update_due stays None: the recomputation's cond reads the params alone (and the gradient only
  # for a gradient score), which costs the steps that skip it nothing measurable, while a second
  # program would cost every run a compilation
  return Pruner(init, apply, update if callable(sparsity) else no_update, finalize, masks)


def magnitude_pruning(
  sparsity: float | Callable[[Any], jax.Array],
  *,
  final_sparsity: float | None = None,
  structure: str | struct_lib.Structure = "unstructured",
  distribution: str = "global",
  normalize: str | None = None,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """Magnitude pruning ``|w|`` (Han et al., NeurIPS 2015; Zhu & Gupta, 2017 with a polynomial
  schedule).

  Args:
    sparsity: a number in [0, 1) or a schedule (see :func:`score_pruning`).
    final_sparsity: a schedule's final value (for per-leaf distributions).
    structure: unit grouping.
    distribution: ``"global"``, ``"uniform"`` or ``"erk"``.
    normalize: layer normalization of scores for the global threshold.
    selection: which leaves may be pruned.

  Returns:
    A :class:`pruning_jax.Pruner`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.arange(1.0, 9.0).reshape(2, 4)}
    >>> pruner = pj.methods.magnitude_pruning(0.25)
    >>> pruner.finalize(params, pruner.init(jax.random.key(0), params))[0]["w"][0].tolist()
    [0.0, 0.0, 3.0, 4.0]
  """
  return score_pruning(
    lambda params, grads: criteria.magnitude(params),
    sparsity,
    final_sparsity=final_sparsity,
    structure=structure,
    distribution=distribution,
    normalize=normalize,
    selection=selection,
  )


__all__ = ["ScoreBuffers", "magnitude_pruning", "score_pruning"]

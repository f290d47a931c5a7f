"""Dynamic sparse training: SET (Mocanu et al. 2018) and RigL (Evci et al., ICML 2020).

The network starts sparse (random masks, ERK or uniform per-layer densities, as
:mod:`pruning_jax.distributions` allocates them exactly) and keeps its sparsity exactly constant:
every ``every_steps`` steps, until ``end_step``, each layer drops the fraction ``f(t)`` (RigL's
cosine decay from ``drop_fraction``) of its active weights with the smallest magnitude and grows
as many among the weights inactive after the drop: at random with the step's key (SET) or by the
largest magnitude of the dense gradient (RigL). Dropped weights are set to exactly 0 by the
optimizer step that removes them (``zero_removed``), so a grown weight starts at 0, and its
optimizer moments restart (the protocol's rule for regrown weights).

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jax.random.normal(jax.random.key(0), (20, 20))}
  >>> pruner = pj.methods.rigl(0.9, end_step=1000, every_steps=10, distribution="uniform")
  >>> state = pruner.init(jax.random.key(1), params)
  >>> info = pj.StepInfo(jnp.int32(9), jax.random.key(2), grads={"w": jnp.ones((20, 20))})
  >>> new = pruner.update(params, state, info)
  >>> [int(pruner.masks(params, s)["w"].sum()) for s in (state, new)]  # the count never moves
  [40, 40]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax import criteria, schedules, validation
from pruning_jax import distributions as dist_lib
from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax.pruner import InitContext, Pruner, PrunerState, StepInfo
from pruning_jax.tree import PyTree

GROWTH = ("random", "gradient")
DECAYS = ("cosine", "constant")


class SparseBuffers(NamedTuple):
  """The buffers of :func:`dynamic_sparse`.

  Attributes:
    masks: bool per selected leaf (the params' structure), 0-d True elsewhere.
    updates: (), int32: how many drop-and-grow updates have run.
  """

  masks: PyTree
  updates: jax.Array


def _top(scores: PyTree, count: PyTree, sel: PyTree) -> PyTree:
  """Per selected leaf, the mask of its ``count`` highest scores (exact, ties deterministic)."""
  fractions = jax.tree.map(
    lambda s, k, on: 1.0 - jnp.asarray(k, jnp.float32) / s.size if on else 0.0, scores, count, sel
  )
  return masks_lib.masks_from_scores(scores, fractions, selection=sel, scope="layer")


def dynamic_sparse(
  sparsity: float,
  *,
  grow: str,
  end_step: int,
  every_steps: int = 100,
  drop_fraction: float = 0.3,
  distribution: str = "erk",
  selection: sel_lib.SelectionLike = None,
  decay: str = "cosine",
) -> Pruner:
  """Sparse training at a constant sparsity with periodic drop-and-grow.

  Args:
    sparsity: the constant removed fraction of the selected weights, in [0, 1).
    grow: ``"random"`` (SET) or ``"gradient"`` (RigL: the largest dense-gradient magnitudes).
    end_step: the step from which the masks stay fixed (RigL: 75% of training).
    every_steps: delta_T, steps between updates (100 in RigL).
    drop_fraction: alpha, the fraction of each layer's active weights dropped at step 0, decayed
      by a cosine to 0 at ``end_step`` (RigL; 0.3).
    distribution: ``"erk"`` or ``"uniform"`` per-layer densities (``"global"``: one random
      ranking).
    selection: the sparse leaves (default: conv and dense kernels).
    decay: ``"cosine"`` (RigL: the drop fraction decays to 0 at ``end_step``) or
      ``"constant"`` (SET's own rule: ``drop_fraction`` at every update, zeta = 0.3).

  Returns:
    A :class:`pruning_jax.Pruner` with ``zero_removed=True``, an ``updates`` counter and the
    metric ``updates`` (drop-and-grow updates so far: RigL's dense gradients, for training
    FLOPs).

  Raises:
    ValueError: a sparsity outside [0, 1), an unknown growth, distribution or decay, a drop
      fraction outside (0, 1], or a bad step count.

  Example:
    >>> import pruning_jax as pj
    >>> pj.methods.dynamic_sparse(0.9, grow="random", end_step=100).zero_removed
    True
  """
  where = f"dynamic_sparse(grow={grow!r})"
  sparsity = validation.fraction(sparsity, f"{where}: sparsity", what="sparsity (removed fraction)")
  if grow not in GROWTH:
    raise ValueError(f"dynamic_sparse: grow={grow!r} is unknown; expected one of {GROWTH}.")
  if distribution not in dist_lib.DISTRIBUTIONS:
    raise ValueError(
      f"{where}: distribution={distribution!r} is unknown; expected one of {dist_lib.DISTRIBUTIONS}."
    )
  for name, v in (("every_steps", every_steps), ("end_step", end_step)):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ValueError(f"{where}: {name} must be an int >= 1, got {v!r}.")
  if decay not in DECAYS:
    raise ValueError(f"{where}: decay={decay!r} is unknown; expected one of {DECAYS}.")
  drop = schedules.cosine_decay_fraction(drop_fraction, end_step)
  if decay == "constant":
    drop = lambda step: jnp.float32(drop_fraction)  # noqa: E731 (validated by the cosine's check)

  def init(key, params, context: InitContext | None = None):
    del context
    sel = sel_lib.resolve(selection, params)
    fractions, scope = dist_lib.resolve(distribution, params, sparsity, selection=sel)
    masks = masks_lib.masks_from_scores(criteria.random(key, params), fractions, selection=sel, scope=scope)
    return PrunerState({}, SparseBuffers(masks, jnp.zeros((), jnp.int32)))

  def apply(params, state, *, key=None, train=True):
    del key, train
    return masks_lib.apply_masks(params, state.buffers.masks)

  def drop_and_grow(params, masks, info: StepInfo):
    sel = sel_lib.resolve(selection, params)
    f = drop(info.step)
    active = jax.tree.map(lambda m, on: jnp.sum(m, dtype=jnp.int32) if on else 0, masks, sel)
    n_drop = jax.tree.map(lambda n: jnp.round(f * n).astype(jnp.int32), active)
    # drop: keep the n - n_drop largest magnitudes among the active weights
    kept_scores = jax.tree.map(
      lambda w, m, on: jnp.where(m, jnp.abs(w), -jnp.inf) if on else w, params, masks, sel
    )
    kept = _top(kept_scores, jax.tree.map(lambda n, d: n - d, active, n_drop), sel)
    # grow as many among the weights inactive after the drop (the just-dropped ones included)
    if grow == "gradient":
      if info.grads is None:
        raise ValueError(f"{where}: RigL grows by the dense gradient; StepInfo.grads is None.")
      score = criteria.gradient(info.grads)
    else:
      if info.key is None:
        raise ValueError(f"{where}: SET grows at random; StepInfo.key is None.")
      score = criteria.random(info.key, params)
    grow_scores = jax.tree.map(lambda s, k, on: jnp.where(k, -jnp.inf, s) if on else s, score, kept, sel)
    grown = _top(grow_scores, n_drop, sel)
    return jax.tree.map(lambda k, g, on: (k | g) if on else k, kept, grown, sel)

  def update(params, state, info: StepInfo):
    t = jnp.asarray(info.step)
    due = ((t + 1) % every_steps == 0) & (t < end_step)
    b = state.buffers
    masks = jax.lax.cond(due, lambda: drop_and_grow(params, b.masks, info), lambda: b.masks)
    return state._replace(buffers=SparseBuffers(masks, b.updates + due.astype(jnp.int32)))

  def masks(params, state):
    del params
    return state.buffers.masks

  def finalize(params, state):
    return masks_lib.apply_masks(params, state.buffers.masks), state.buffers.masks

  def metrics(params, state):
    del params
    return {"updates": state.buffers.updates.astype(jnp.float32)}

  def update_due(t: int) -> bool:
    return (t + 1) % every_steps == 0 and t < end_step

  return Pruner(
    init, apply, update, finalize, masks, metrics=metrics, zero_removed=True, update_due=update_due
  )


def rigl(
  sparsity: float,
  *,
  end_step: int,
  every_steps: int = 100,
  drop_fraction: float = 0.3,
  distribution: str = "erk",
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """RigL (Evci et al., ICML 2020): grow the inactive weights with the largest dense gradient.

  Args:
    sparsity: the constant removed fraction, in [0, 1).
    end_step: masks fixed from here on (RigL: 75% of training; ``end_epoch`` in a config).
    every_steps: delta_T (100).
    drop_fraction: alpha (0.3), cosine-decayed to 0 at ``end_step``.
    distribution: ``"erk"`` (default, RigL's) or ``"uniform"``.
    selection: the sparse leaves (default: conv and dense kernels).

  Returns:
    A :class:`pruning_jax.Pruner` (see :func:`dynamic_sparse`).

  Example:
    >>> import pruning_jax as pj
    >>> pj.methods.rigl(0.8, end_step=750).zero_removed
    True
  """
  return dynamic_sparse(
    sparsity,
    grow="gradient",
    end_step=end_step,
    every_steps=every_steps,
    drop_fraction=drop_fraction,
    distribution=distribution,
    selection=selection,
  )


def set_training(
  sparsity: float,
  *,
  end_step: int,
  every_steps: int = 100,
  drop_fraction: float = 0.3,
  distribution: str = "erk",
  selection: sel_lib.SelectionLike = None,
  decay: str = "cosine",
) -> Pruner:
  """SET (Mocanu et al., Nature Communications 2018): grow inactive weights at random, with
  the step's key.

  SET's own code drops a constant fraction zeta = 0.3 once per epoch until the last epoch
  (``decay="constant"``, ``every_steps`` = an epoch) and removes the smallest positive and the
  largest negative weights (each a fraction zeta of its sign); here the drop is by magnitude
  per layer, as RigL's, and the default decay is RigL's cosine, so the two differ only in
  growth.

  Args:
    sparsity: the constant removed fraction, in [0, 1).
    end_step: masks fixed from here on.
    every_steps: steps between updates.
    drop_fraction: the fraction dropped at step 0, cosine-decayed to 0 at ``end_step``.
    distribution: ``"erk"`` or ``"uniform"``.
    selection: the sparse leaves (default: conv and dense kernels).
    decay: ``"cosine"`` (RigL's) or ``"constant"`` (SET's).

  Returns:
    A :class:`pruning_jax.Pruner` (see :func:`dynamic_sparse`).

  Example:
    >>> import pruning_jax as pj
    >>> pj.methods.set_training(0.8, end_step=750).zero_removed
    True
  """
  return dynamic_sparse(
    sparsity,
    grow="random",
    end_step=end_step,
    every_steps=every_steps,
    drop_fraction=drop_fraction,
    distribution=distribution,
    selection=selection,
    decay=decay,
  )


__all__ = ["DECAYS", "SparseBuffers", "dynamic_sparse", "rigl", "set_training"]

"""Mask learning on frozen or trained weights: one real-valued variable per weight (scores,
logits, gate parameters) turned into a mask by an estimator inside the forward pass.

``learned_mask`` is the shared skeleton of straight-through (hard-threshold STE), edge-popup
(top-k STE), supermask (Bernoulli STE), Gumbel/ASLP and hard-concrete gates: the method is the
estimator plus how the final deterministic mask is read off the variables.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4)}
  >>> pruner = pj.methods.learned_mask(lambda key, m: pj.hard_threshold_ste(m), init=0.1)
  >>> state = pruner.init(jax.random.key(0), params)
  >>> pruner.apply(params, state, key=jax.random.key(1), train=True)["w"].sum().item()
  16.0
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax.estimators import hard_threshold_ste
from pruning_jax.pruner import Pruner, PrunerState, no_update
from pruning_jax.tree import split_key_like

Estimator = Callable[[jax.Array, jax.Array], jax.Array]  # (key, variable) -> float mask
Init = float | Callable[[jax.Array, jax.Array], jax.Array]  # constant or (key, weight) -> variable


def learned_mask(
  estimator: Estimator,
  *,
  init: Init = 0.0,
  final_mask: Callable[[jax.Array], jax.Array] = lambda m: m >= 0,
  stochastic_eval: bool = False,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """A Pruner whose forward weights are ``w * estimator(key_leaf, m)`` on selected leaves.

  Args:
    estimator: ``(key, m) -> mask`` with the gradient the method wants (see
      :mod:`pruning_jax.estimators`); deterministic estimators ignore the key.
    init: the variables' initial value, or ``(key, weight) -> m`` (e.g. edge-popup's
      kaiming-uniform scores).
    final_mask: the deterministic extracted mask ``m -> bool`` (default ``m >= 0``).
    stochastic_eval: evaluate (``train=False``) with the estimator's samples instead of
      ``final_mask`` (supermask's sampled test accuracy).
    selection: which leaves get a mask variable.

  Variables have the params' structure: a float array per selected leaf, a 0-d zero elsewhere.
  """

  def init_fn(key, params):
    sel = sel_lib.resolve(selection, params)
    keys = split_key_like(key, params)

    def make(p, s, k):
      if not s:
        return jnp.zeros((), jnp.float32)
      if callable(init):
        return jnp.asarray(init(k, p), jnp.float32)
      return jnp.full(p.shape, init, jnp.float32)

    return PrunerState(jax.tree.map(make, params, sel, keys), {})

  def apply(params, state, *, key=None, train=True):
    keys = split_key_like(key, params) if key is not None else jax.tree.map(lambda _: None, params)

    def mask_leaf(p, m, k):
      if m.ndim == 0:
        return p
      if train or stochastic_eval:
        return p * estimator(k, m).astype(p.dtype)
      return jnp.where(final_mask(m), p, jnp.zeros((), p.dtype))

    return jax.tree.map(mask_leaf, params, state.variables, keys)

  def masks(params, state):
    del params
    return jax.tree.map(lambda m: final_mask(m) if m.ndim else jnp.asarray(True), state.variables)

  def finalize(params, state):
    m = masks(params, state)
    return masks_lib.apply_masks(params, m), m

  return Pruner(init_fn, apply, no_update, finalize, masks)


def straight_through(
  *, threshold: float = 0.0, init: Init = 1.0, selection: sel_lib.SelectionLike = None
) -> Pruner:
  """Hard-threshold STE: mask ``1[m > threshold]``, gradient passed straight to ``m``."""
  return learned_mask(
    lambda key, m: hard_threshold_ste(m, threshold),
    init=init,
    final_mask=lambda m: m > threshold,
    selection=selection,
  )

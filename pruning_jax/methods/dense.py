"""The unpruned baseline as a Pruner."""

from __future__ import annotations

from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax.pruner import Pruner, PrunerState, no_update


def dense(*, selection: sel_lib.SelectionLike = None) -> Pruner:
  """Trains every weight; its masks are all-kept over ``selection`` (so sparsity reads 0).

  Args:
    selection: the leaves counted as prunable (for sparsity figures); default kernels.

  Returns:
    A :class:`pruning_jax.Pruner` whose ``apply`` is the identity.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.ones((2, 2))}
    >>> pruner = pj.methods.dense()
    >>> state = pruner.init(jax.random.key(0), params)
    >>> float(pj.sparsity(pruner.masks(params, state)))
    0.0
  """

  def init(key, params, context=None):
    del key, params, context
    return PrunerState({}, {})

  def apply(params, state, *, key=None, train=True):
    del state, key, train
    return params

  def masks(params, state):
    del state
    return masks_lib.init_masks(params, sel_lib.resolve(selection, params))

  def finalize(params, state):
    return params, masks(params, state)

  return Pruner(init, apply, no_update, finalize, masks)


__all__ = ["dense"]

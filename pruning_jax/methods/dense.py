"""The unpruned baseline as a Pruner."""

from __future__ import annotations

from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax.pruner import Pruner, PrunerState, no_update


def dense(*, selection: sel_lib.SelectionLike = None) -> Pruner:
  """Trains every weight; its masks are all-kept over ``selection`` (so sparsity reads 0)."""

  def init(key, params):
    del key, params
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

"""The unpruned baseline as a Pruner, and dense training under a sparsity penalty."""

from __future__ import annotations

import jax

from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax import transforms
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


PENALTIES = ("l1", "group_lasso")


def penalized(
  weight: float, *, penalty: str = "l1", selection: sel_lib.SelectionLike = None, axis: int = -1
) -> Pruner:
  """Dense training plus a sparsity-inducing penalty on the selected params; nothing is removed
  (a later stage prunes what the penalty drove to zero).

  ``penalty="l1"`` with ``selection=r"scale$"`` is network slimming's training (Liu et al.
  2017: lambda * sum |gamma| over the BatchNorm scales; the paper's lambda is 1e-4 for VGG,
  1e-5 for ResNets); ``"group_lasso"`` adds ``weight * sum_g sqrt(|g|) ||w_g||_2`` over the
  slices along ``axis`` (Wen et al. 2016, filters by default).

  Args:
    weight: lambda >= 0.
    penalty: ``"l1"`` or ``"group_lasso"``.
    selection: the penalised params (paths of the params tree); default: the weight kernels.
    axis: the group lasso's channel axis.

  Returns:
    A :class:`pruning_jax.Pruner` whose ``penalty`` adds the term's gradient before the
    optimizer; its masks are all-kept.

  Raises:
    ValueError: an unknown penalty or a negative weight; (at init) a selection that selects
      nothing.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import pruning_jax as pj
    >>> params = {"bn": {"scale": jnp.array([0.5, -2.0])}, "w": jnp.ones((2, 2))}
    >>> pruner = pj.methods.penalized(0.1, selection=r"scale$")
    >>> tree = {"params": params, "learned": {}}
    >>> u, _ = pruner.penalty.update(jax.tree.map(jnp.zeros_like, tree), pruner.penalty.init(tree), tree)
    >>> u["params"]["bn"]["scale"].tolist(), u["params"]["w"].tolist()
    ([0.10000000149011612, -0.10000000149011612], [[0.0, 0.0], [0.0, 0.0]])
  """
  if penalty not in PENALTIES:
    raise ValueError(f"penalized: penalty={penalty!r} is unknown; expected one of {PENALTIES}.")

  def over_tree(tree):  # the optimizer's {"params", "learned"} tree: only params are penalised
    return {
      "params": sel_lib.resolve(selection, tree["params"]),
      "learned": jax.tree.map(lambda _: False, tree["learned"]),
    }

  if penalty == "l1":
    tx = transforms.l1_penalty(weight, selection=over_tree)
  else:
    tx = transforms.group_lasso_penalty(weight, axis=axis, selection=over_tree)
  return dense()._replace(penalty=tx)


__all__ = ["PENALTIES", "dense", "penalized"]

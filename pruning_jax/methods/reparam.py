"""Budget-aware pruning by weight reparametrization (Dupont et al., ICIP 2021).

The forward pass sees ``w_hat = w * h_t(w)`` with the gate ``h_t`` of
:func:`pruning_jax.estimators.reparam_gate`: the mask is an implicit function of each weight, so
there are no per-weight mask parameters, only the gate's ``t`` (per layer or one for the net),
learned with the weights. The soft count of kept weights ``C = sum h_t(w)`` is driven to the
budget ``C_target = (1 - sparsity) N`` by ``lambda ((C - C_target) / C_initial)^2``, which the
Pruner carries as its optax ``penalty`` (:func:`pruning_jax.transforms.budget_penalty`).

Effective pruning (``finalize``) removes exactly ``round(sparsity N)`` weights: those with the
smallest gate value ``h_t(w)`` over all selected layers (ties, e.g. gates saturated at 1,
broken by position as ``lax.top_k`` does); the kept weights are folded to ``w * h_t(w)`` so the
extracted network computes what the trained one computed, minus the removed weights. There is
no fine-tuning stage.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": 0.05 * jax.random.normal(jax.random.key(0), (10, 10)), "b": jnp.zeros(10)}
  >>> pruner = pj.methods.reparam(0.9, budget_weight=1.0)
  >>> state = pruner.init(jax.random.key(1), params)
  >>> _, masks = pruner.finalize(params, state)
  >>> int(masks["w"].sum())  # exactly 10% of 100 kept
  10
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax import validation
from pruning_jax.estimators import reparam_gate
from pruning_jax.pruner import Pruner, PrunerState, no_update
from pruning_jax.transforms import budget_penalty
from pruning_jax.tree import PyTree


def _check(sparsity: float, t_init: float, n: int, budget_weight: float) -> float:
  s = validation.fraction(sparsity, "reparam: sparsity", what="removed fraction")
  if s is None:
    raise TypeError("reparam: sparsity must be a static number (it fixes C_target and the hard prune).")
  validation.positive(t_init, "reparam: t_init (the paper uses 100)")
  if not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
    raise ValueError(f"reparam: n must be a positive integer (the paper uses 4), got {n!r}.")
  validation.positive(budget_weight, "reparam: budget_weight (lambda)", allow_zero=True)
  return s


def _t_tree(t: PyTree, params: PyTree) -> PyTree:
  """``learned["t"]`` as one t per leaf: a per-layer tree as is, the net's single t broadcast."""
  if jax.tree.structure(t) == jax.tree.structure(params):
    return t
  return jax.tree.map(lambda _: t, params)


def gates(params: PyTree, t: PyTree, selection: PyTree, n: int = 4) -> PyTree:
  """The gate ``h_t(w) = C1 (exp(-1 / ((t w)^n + 1)) - C2)`` of every selected weight.

  Args:
    params: the weights.
    t: one t per leaf (a tree like ``params``) or one scalar for the net.
    selection: the gated leaves (a bool tree).
    n: the gate's exponent.

  Returns:
    A tree like ``params``: ``h_t(w)`` on selected leaves, a 0-d 1 elsewhere (ungated).

  Example:
    >>> import jax.numpy as jnp
    >>> h = gates({"w": jnp.zeros(2), "b": jnp.ones(1)}, jnp.float32(100.0), {"w": True, "b": False})
    >>> h["w"].tolist(), float(h["b"])
    ([0.0, 0.0], 1.0)
  """
  return jax.tree.map(
    lambda p, tl, s: reparam_gate(p, tl, n) if s else jnp.ones((), jnp.float32),
    params,
    _t_tree(t, params),
    selection,
  )


def soft_count(params: PyTree, t: PyTree, selection: PyTree, n: int = 4) -> jax.Array:
  """The paper's differentiable cost ``C = sum over selected weights of h_t(w)``.

  Args:
    params: the weights.
    t: one t per leaf or one for the net.
    selection: the gated leaves.
    n: the gate's exponent.

  Returns:
    (), float32.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(soft_count({"w": jnp.array([0.0, 10.0])}, jnp.float32(100.0), {"w": True})), 6)
    1.0
  """
  h = gates(params, t, selection, n)
  return sum(
    (
      jnp.sum(g, dtype=jnp.float32)
      for g, s in zip(jax.tree.leaves(h), jax.tree.leaves(selection), strict=True)
      if s
    ),
    jnp.zeros((), jnp.float32),
  )


def reparam(
  sparsity: float,
  *,
  budget_weight: float,
  t_init: float = 100.0,
  n: int = 4,
  per_layer_t: bool = True,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """Budget-aware reparametrization as a Pruner (with its budget penalty).

  Args:
    sparsity: the target removed fraction of the selected weights (C_target = (1 - s) N).
    budget_weight: lambda of the budget term (not given by the paper; choose on validation).
    t_init: the gate's initial t (100 in the paper).
    n: the gate's exponent (4 in the paper).
    per_layer_t: one learned t per selected layer, or one for the whole net (the paper does
      not say which).
    selection: the prunable leaves (default: kernels, not biases or norms).

  Returns:
    A :class:`pruning_jax.Pruner`. State: ``learned = {"t": ...}`` (label ``"learned"``: give
    it an optimizer, or freeze it); no buffers. ``Pruner.penalty`` is the budget transform over
    ``{"params", "learned"}``; ``Pruner.metrics`` reports ``budget_cost`` (C) and
    ``budget_ratio`` (C / C_target). ``finalize`` removes exactly ``round(s N)`` weights, the
    lowest gates over the whole selection.

  Raises:
    ValueError: a sparsity outside [0, 1), a non-positive t or n, or a negative weight.
    TypeError: a traced sparsity.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.linspace(-1.0, 1.0, 20).reshape(4, 5)}
    >>> pruner = pj.methods.reparam(0.5, budget_weight=1.0)
    >>> state = pruner.init(jax.random.key(0), params)
    >>> _, masks = pruner.finalize(params, state)
    >>> int(masks["w"].sum())
    10
  """
  sparsity = _check(sparsity, t_init, n, budget_weight)

  def sel_of(params):
    return sel_lib.resolve(selection, params)

  def init(key, params, context=None):
    del key, context
    if per_layer_t:
      t = jax.tree.map(lambda s: jnp.asarray(t_init if s else 0.0, jnp.float32), sel_of(params))
    else:
      t = jnp.asarray(t_init, jnp.float32)
    return PrunerState({"t": t}, {})

  def apply(params, state, *, key=None, train=True):
    del key, train
    sel = sel_of(params)
    h = gates(params, state.learned["t"], sel, n)
    return jax.tree.map(lambda p, g, s: p * g.astype(p.dtype) if s else p, params, h, sel)

  def masks(params, state):
    del state  # nothing is removed before the effective pruning
    return masks_lib.init_masks(params, sel_of(params))

  def finalize(params, state):
    sel = sel_of(params)
    scores = gates(params, state.learned["t"], sel, n)
    keep = masks_lib.masks_from_scores(scores, sparsity, selection=sel, scope="global")
    seen = apply(params, state)
    return masks_lib.apply_masks(seen, keep), keep

  def capacity(params) -> int:
    return sum(
      int(p.size) for p, s in zip(jax.tree.leaves(params), jax.tree.leaves(sel_of(params)), strict=True) if s
    )

  def cost(tree):
    return soft_count(tree["params"], tree["learned"]["t"], sel_of(tree["params"]), n)

  penalty = budget_penalty(
    budget_weight,
    cost,
    target_fn=lambda tree: (1.0 - sparsity) * capacity(tree["params"]),
    capacity_fn=lambda tree: capacity(tree["params"]),
  )

  def metrics(params, state):
    c = soft_count(params, state.learned["t"], sel_of(params), n)
    return {"budget_cost": c, "budget_ratio": c / ((1.0 - sparsity) * capacity(params))}

  return Pruner(init, apply, no_update, finalize, masks, penalty=penalty, metrics=metrics)


__all__ = ["gates", "reparam", "soft_count"]

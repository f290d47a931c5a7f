"""Optax transforms for pruning: masks as extra args, penalties as added gradients.

Each factory returns an ``optax.GradientTransformationExtraArgs`` that chains like
``optax.add_decayed_weights``::

  tx = optax.chain(pj.transforms.budget_penalty(1.0, cost, target=...),
                   optax.sgd(0.1, momentum=0.9),
                   pj.transforms.keep_masked())
  updates, opt_state = tx.update(grads, opt_state, params, masks=masks)

Penalties add ``grad(penalty)(params)`` to the incoming updates, so put them before the
optimizer (like weight decay in SGD) and ``keep_masked`` / ``clip_to_range`` last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pruning_jax import selection as sel_lib
from pruning_jax import validation
from pruning_jax.masks import check_masks
from pruning_jax.tree import PyTree, is_array, keystr, leaves_with_paths

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


def _at(value: ScalarOrSchedule, step: jax.Array) -> jax.Array:
  return jnp.asarray(value(step) if callable(value) else value, jnp.float32)


def _need_params(params: Any, name: str) -> None:
  if params is None:
    raise ValueError(f"{name} needs the current params: call tx.update(updates, state, params, ...).")


def _selected(params: PyTree, selection: PyTree) -> list[jax.Array]:
  return [p for p, s in zip(jax.tree.leaves(params), jax.tree.leaves(selection), strict=True) if s]


def _check_weight(weight: ScalarOrSchedule, where: str) -> None:
  """A penalty weight is >= 0 (a negative one rewards what the penalty is meant to punish);
  schedules are checked by the schedules module that builds them."""
  if not callable(weight):
    validation.positive(weight, where, allow_zero=True)


def _abs(x: jax.Array) -> jax.Array:
  """``|x|`` whose gradient is ``sign(x)`` (0 at 0, like PyTorch; jnp.abs gives 1 there), so a
  penalty never pushes an exact zero."""
  x = x.astype(jnp.float32)
  return x * jax.lax.stop_gradient(jnp.sign(x))


def _add(updates: PyTree, grads: PyTree) -> PyTree:
  return jax.tree.map(lambda u, g: (u + g.astype(u.dtype)) if is_array(u) else u, updates, grads)


def keep_masked(*, zero_removed: bool = False) -> optax.GradientTransformationExtraArgs:
  """Zeroes updates at pruned positions; masks arrive as the extra argument ``masks=``.

  Put it last in the chain so momentum, Adam moments and weight decay cannot move a pruned
  weight: with params already masked (``pj.apply_masks``) they then stay exactly zero.

  Args:
    zero_removed: instead of holding a removed weight where it is, move it to exactly 0 (the
      update is ``-w`` there; needs ``params``), so a weight regrown later starts from 0.

  Returns:
    An optax transform taking ``masks=``.

  Raises:
    ValueError: (at update) no masks, masks that do not fit, or no params with
      ``zero_removed``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = keep_masked(zero_removed=True)
    >>> w, m = jnp.array([1.0, 2.0]), jnp.array([True, False])
    >>> u, _ = tx.update(jnp.array([0.5, 0.5]), tx.init(w), w, masks=m)
    >>> optax.apply_updates(w, u).tolist()
    [1.5, 0.0]
  """

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None, *, masks=None, **extra):
    del extra
    if masks is None:
      raise ValueError("keep_masked needs the masks: call tx.update(updates, state, params, masks=masks).")
    check_masks(updates, masks)
    if zero_removed:
      _need_params(params, "keep_masked(zero_removed=True)")
      return jax.tree.map(
        lambda u, m, p: jnp.where(m, u, -p.astype(u.dtype)) if is_array(u) else u, updates, masks, params
      ), state
    return jax.tree.map(
      lambda u, m: jnp.where(m, u, jnp.zeros((), u.dtype)) if is_array(u) else u, updates, masks
    ), state

  return optax.GradientTransformationExtraArgs(init, update)


def reset_regrown(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """``inner`` whose per-parameter state (momentum, Adam moments, ...) restarts at 0 where a
  weight is regrown; the regrown weights arrive as the extra argument ``grown=`` (a bool tree
  with the updates' structure, or None for no change), like ``keep_masked``'s ``masks=``.

  Every subtree of ``inner``'s state that has the updates' structure and shapes is reset where
  ``grown`` is True before ``inner`` runs, whatever the optimizer: nothing inspects state types.
  Scalars such as Adam's step count are left as they are (RigL and SET restart the moments of a
  regrown connection, not the optimizer's clock).

  Args:
    inner: the weights' optimizer.

  Returns:
    An optax transform taking ``grown=``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = reset_regrown(optax.sgd(1.0, momentum=0.9))
    >>> w = jnp.zeros(2)
    >>> _, state = tx.update(jnp.ones(2), tx.init(w), w)  # momentum 1 everywhere
    >>> u, _ = tx.update(jnp.zeros(2), state, w, grown=jnp.array([True, False]))
    >>> [round(v, 6) for v in u.tolist()]  # the regrown weight has lost its momentum
    [-0.0, -0.9]
  """
  inner = optax.with_extra_args_support(inner)

  def update(updates, state, params=None, *, grown=None, **extra):
    if grown is not None:
      target = jax.tree.structure(updates)
      shapes = [getattr(u, "shape", None) for u in jax.tree.leaves(updates)]

      def like_updates(x):
        return (
          jax.tree.structure(x) == target
          and [getattr(v, "shape", None) for v in jax.tree.leaves(x)] == shapes
        )

      def reset(sub):
        if not like_updates(sub):
          return sub
        return jax.tree.map(
          lambda s, g: jnp.where(g, jnp.zeros((), s.dtype), s) if is_array(s) and s.ndim else s, sub, grown
        )

      flags = [jnp.any(g) for g in jax.tree.leaves(grown) if is_array(g) or isinstance(g, bool)]
      if flags:
        # masks regrow on few steps (RigL: one in delta_T): skip the pass over the moments otherwise
        any_grown = jnp.any(jnp.stack(flags))
        state = jax.lax.cond(
          any_grown, lambda s: jax.tree.map(reset, s, is_leaf=like_updates), lambda s: s, state
        )
    return inner.update(updates, state, params, **extra)

  return optax.GradientTransformationExtraArgs(inner.init, update)


class PenaltyState(NamedTuple):
  """State of :func:`add_penalty`.

  Attributes:
    count: (), int32: updates so far (the step that schedules see).
  """

  count: jax.Array


def add_penalty(
  penalty_fn: Callable[[PyTree, jax.Array], jax.Array],
) -> optax.GradientTransformationExtraArgs:
  """Adds ``grad(penalty_fn)(params, step)`` to the updates: the generic penalty transform.

  Args:
    penalty_fn: ``(params, step) -> scalar`` differentiable in params.

  Returns:
    An optax transform; its ``update`` needs ``params``.

  Raises:
    ValueError: (at update) no params passed.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = add_penalty(lambda p, step: 0.5 * jnp.sum(p ** 2))  # weight decay, by hand
    >>> w = jnp.array([1.0, -2.0])
    >>> tx.update(jnp.zeros(2), tx.init(w), w)[0].tolist()
    [1.0, -2.0]
  """

  def init(params):
    del params
    return PenaltyState(jnp.zeros((), jnp.int32))

  def update(updates, state, params=None, **extra):
    del extra
    _need_params(params, "add_penalty")
    grads = jax.grad(penalty_fn)(params, state.count)
    return _add(updates, grads), PenaltyState(optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init, update)


def budget_loss(cost: jax.Array, target: jax.Array, initial_cost: jax.Array) -> jax.Array:
  """Paper 2's budget term ``((C - C_target) / C_initial) ** 2``.

  Args:
    cost: C, the current (soft) cost.
    target: C_target.
    initial_cost: C_initial, the normalizer (a zero one is treated as 1).

  Returns:
    The squared relative distance to the budget.

  Example:
    >>> float(budget_loss(75.0, 50.0, 100.0))
    0.0625
  """
  denom = jnp.where(initial_cost != 0, initial_cost, 1.0)
  return jnp.square((cost - target) / denom)


class BudgetPenaltyState(NamedTuple):
  """State of :func:`budget_penalty`.

  Attributes:
    initial_cost: (), float32: C(params) at init, the normalizer C_initial.
    count: (), int32: updates so far (the step that schedules see).
    target: (), float32: C_target from ``target_fn`` at init (0 when a target is given).
  """

  initial_cost: jax.Array
  count: jax.Array
  target: jax.Array


def budget_penalty(
  weight: ScalarOrSchedule,
  cost_fn: Callable[[PyTree], jax.Array],
  *,
  target: ScalarOrSchedule | None = None,
  target_fn: Callable[[PyTree], Any] | None = None,
  capacity_fn: Callable[[PyTree], Any] | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Adds the gradient of Paper 2's budget term to the updates.

  The term is ``lambda * ((C(params) - C_target) / C_initial) ** 2`` with ``C_initial`` the
  cost at init, so lambda means the same for any network size.

  Like every penalty factory here, the weight lambda comes first and what is penalised next.

  Args:
    weight: lambda >= 0, a number or a schedule.
    cost_fn: differentiable cost C of the params, e.g. the sum of ``reparam_gate`` over the
      prunable weights (a soft count of kept weights).
    target: C_target (e.g. the number of weights to keep), a number or a schedule; >= 0.
    target_fn: instead of ``target``: ``params -> C_target``, evaluated once at init (e.g. a
      fraction of the prunable weights, whose count is known only from the params).
    capacity_fn: ``params -> the largest cost`` (e.g. the number of prunable weights); when
      given, a target above it is an error (no mask could ever meet it).

  Returns:
    An optax transform; its ``update`` needs ``params``.

  Raises:
    ValueError: neither or both of ``target`` and ``target_fn``; a negative weight or target,
      or (at init) a target above ``capacity_fn(params)``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = budget_penalty(1.0, lambda p: jnp.sum(p), target=1.0)
    >>> w = jnp.array([1.0, 1.0])  # C = 2, C_initial = 2: the term is ((2 - 1) / 2) ** 2
    >>> u, _ = tx.update(jnp.zeros(2), tx.init(w), w)
    >>> u.tolist()  # d/dw = 2 (C - C_target) / C_initial ** 2 = 0.5
    [0.5, 0.5]

  References:
    Dupont et al., "Weight Reparametrization for Budget-Aware Network Pruning", ICIP 2021.
  """
  if (target is None) == (target_fn is None):
    raise ValueError("budget_penalty: pass exactly one of target (number or schedule) and target_fn.")
  _check_weight(weight, "budget_penalty: weight")
  if target is not None and not callable(target):
    validation.positive(target, "budget_penalty: target", allow_zero=True)

  def check_target(c_target, params):
    t = jnp.asarray(c_target, jnp.float32)
    ok = t >= 0
    bound = ""
    if capacity_fn is not None:
      cap = jnp.asarray(capacity_fn(params), jnp.float32)
      ok = ok & (t <= cap)
      bound = " and at most the capacity (capacity_fn(params), e.g. the number of prunable weights)"
    validation.check_traced(
      ok,
      f"budget_penalty: the target C_target must be >= 0{bound}. Fix: a kept count of "
      "(1 - sparsity) * N with the sparsity in [0, 1).",
    )

  def init(params):
    if target_fn is not None:
      c_target = target_fn(params)
    else:
      c_target = target(0) if callable(target) else target
    check_target(c_target, params)
    return BudgetPenaltyState(
      jnp.asarray(cost_fn(params), jnp.float32),
      jnp.zeros((), jnp.int32),
      jnp.asarray(c_target if target_fn is not None else 0.0, jnp.float32),
    )

  def update(updates, state, params=None, **extra):
    del extra
    _need_params(params, "budget_penalty")
    c_target = state.target if target_fn is not None else _at(target, state.count)

    def penalty(p):
      return _at(weight, state.count) * budget_loss(cost_fn(p), c_target, state.initial_cost)

    grads = jax.grad(penalty)(params)
    return _add(updates, grads), state._replace(count=optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init, update)


def mean_gate_penalty(
  weight: ScalarOrSchedule, target_ratio: float, *, selection: sel_lib.SelectionLike
) -> optax.GradientTransformationExtraArgs:
  """Adds the gradient of ``weight * (mean |g| - r) ** 2``, the mean over every element of every
  selected gate leaf (Pruning from Scratch, Wang et al., AAAI 2020).

  Args:
    weight: lambda >= 0 (0.5 on CIFAR in the paper), a number or a schedule.
    target_ratio: r in [0, 1] (0.2 on CIFAR): the gates live in [0, 1], so their mean can
      reach no other value.
    selection: the gate leaves: a bool tree, regex(es) on slash paths, or ``params -> tree``.

  Returns:
    An optax transform; its ``update`` needs ``params``.

  Raises:
    ValueError: a negative weight or a ratio outside [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> tx = mean_gate_penalty(0.5, 0.2, selection=r"gate")
    >>> g = {"gate": jnp.ones(4)}  # mean 1: d/dg = 0.5 * 2 (1 - 0.2) / 4 = 0.2
    >>> [round(v, 6) for v in tx.update({"gate": jnp.zeros(4)}, tx.init(g), g)[0]["gate"].tolist()]
    [0.2, 0.2, 0.2, 0.2]
  """
  _check_weight(weight, "mean_gate_penalty: weight")
  validation.fraction(
    target_ratio, "mean_gate_penalty: target_ratio", upper_open=False, what="mean gate value"
  )

  def penalty(params, step):
    gates = _selected(params, sel_lib.resolve(selection, params))
    total = sum(jnp.sum(_abs(g)) for g in gates)
    n = sum(g.size for g in gates)
    return _at(weight, step) * jnp.square(total / n - target_ratio)

  return add_penalty(penalty)


def l1_penalty(
  weight: ScalarOrSchedule, *, selection: sel_lib.SelectionLike = None
) -> optax.GradientTransformationExtraArgs:
  """Adds ``weight * sign(w)``, the (sub)gradient of ``weight * sum |w|`` over selected leaves.

  Args:
    weight: lambda >= 0, a number or a schedule.
    selection: the penalised leaves; None is the default weight selection.

  Returns:
    An optax transform; its ``update`` needs ``params``.

  Raises:
    ValueError: a negative weight.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = l1_penalty(0.1)
    >>> w = {"w": jnp.array([[2.0, -1.0], [0.0, 3.0]])}
    >>> u = tx.update({"w": jnp.zeros((2, 2))}, tx.init(w), w)[0]["w"]
    >>> (u / 0.1).round().tolist()  # sign(w), and 0 at an exact zero
    [[1.0, -1.0], [0.0, 1.0]]
  """
  _check_weight(weight, "l1_penalty: weight")

  def penalty(params, step):
    ws = _selected(params, sel_lib.resolve(selection, params))
    return _at(weight, step) * sum(jnp.sum(_abs(w)) for w in ws)

  return add_penalty(penalty)


def _safe_norm(x: jax.Array, axis: tuple[int, ...]) -> jax.Array:
  # sqrt's gradient is infinite at 0: route zero groups through a dummy value (gradient 0).
  sq = jnp.sum(jnp.square(x), axis=axis)
  nonzero = sq > 0
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def group_lasso_penalty(
  weight: ScalarOrSchedule,
  *,
  axis: int = -1,
  selection: sel_lib.SelectionLike = None,
  scale_by_size: bool = True,
) -> optax.GradientTransformationExtraArgs:
  """Adds the gradient of the group lasso ``weight * sum_g sqrt(|g|) ||w_g||_2``.

  A group g is one slice along ``axis`` (an output channel by default) and ``|g|`` its size;
  the ``sqrt(|g|)`` factor (Yuan & Lin) is used only with ``scale_by_size``. An all-zero group
  gets the subgradient 0.

  Args:
    weight: lambda >= 0, a number or a schedule.
    axis: the channel axis; it must exist in every selected leaf.
    selection: the penalised leaves; None is the default weight selection.
    scale_by_size: multiply each group's norm by ``sqrt(|g|)``.

  Returns:
    An optax transform; its ``update`` needs ``params``.

  Raises:
    ValueError: a negative weight, or (at update) a selected leaf without ``axis``, named.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = group_lasso_penalty(1.0, scale_by_size=False)
    >>> w = {"w": jnp.array([[3.0, 0.0], [4.0, 0.0]])}  # column norms 5 and 0
    >>> u = tx.update({"w": jnp.zeros((2, 2))}, tx.init(w), w)[0]["w"]
    >>> [[round(v, 6) for v in row] for row in u.tolist()]
    [[0.6, 0.0], [0.8, 0.0]]

  References:
    Yuan & Lin, 2006; Wen et al., "Learning Structured Sparsity in DNNs", NeurIPS 2016.
  """
  _check_weight(weight, "group_lasso_penalty: weight")

  def penalty(params, step):
    sel = sel_lib.resolve(selection, params)
    total = 0.0
    for (path, w), (_, s) in zip(leaves_with_paths(params), leaves_with_paths(sel), strict=True):
      if not s:
        continue
      if not -w.ndim <= axis < w.ndim:
        raise ValueError(
          f"group_lasso_penalty: axis {axis} does not exist in the leaf at {keystr(path)} of shape "
          f"{tuple(w.shape)}. Fix: choose an axis every selected leaf has, or narrow selection=."
        )
      w = w.astype(jnp.float32)
      a = axis % w.ndim
      others = tuple(i for i in range(w.ndim) if i != a)
      scale = jnp.sqrt(w.size / w.shape[a]) if scale_by_size else 1.0
      total = total + scale * jnp.sum(_safe_norm(w, others))
    return _at(weight, step) * total

  return add_penalty(penalty)


def clip_to_range(
  lo: float = 0.0, hi: float = 1.0, *, selection: sel_lib.SelectionLike = None
) -> optax.GradientTransformationExtraArgs:
  """Projects selected leaves onto ``[lo, hi]`` after the update: returns ``u'`` such that
  ``optax.apply_updates(params, u')`` lands exactly inside the range (gates clamped to [0, 1]
  in Pruning from Scratch). Put it last in the chain.

  Args:
    lo: the lower bound.
    hi: the upper bound, > lo.
    selection: the clamped leaves; None means every floating leaf.

  Returns:
    An optax transform; its ``update`` needs ``params``.

  Raises:
    ValueError: ``lo >= hi``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = clip_to_range(0.0, 1.0)
    >>> g = jnp.array([0.9, 0.1])
    >>> optax.apply_updates(g, tx.update(jnp.array([0.5, -0.5]), tx.init(g), g)[0]).tolist()
    [1.0, 0.0]
  """
  if not lo < hi:
    raise ValueError(f"clip_to_range needs lo < hi, got lo={lo}, hi={hi}.")

  def init(params):
    del params
    return optax.EmptyState()

  def project(u, p):
    target = jnp.clip(p + u, lo, hi)
    u = (target - p).astype(u.dtype)
    # p + (target - p) can round one ulp past the bound: step u back towards the inside.
    landed = (p + u).astype(p.dtype)
    u = jnp.where(landed > hi, jnp.nextafter(u, jnp.asarray(-jnp.inf, u.dtype)), u)
    return jnp.where(landed < lo, jnp.nextafter(u, jnp.asarray(jnp.inf, u.dtype)), u)

  def update(updates, state, params=None, **extra):
    del extra
    _need_params(params, "clip_to_range")
    sel = sel_lib.resolve(selection, params, default_all_floats=True)
    return jax.tree.map(lambda u, p, s: project(u, p) if s else u, updates, params, sel), state

  return optax.GradientTransformationExtraArgs(init, update)


__all__ = [
  "BudgetPenaltyState",
  "PenaltyState",
  "ScalarOrSchedule",
  "add_penalty",
  "budget_loss",
  "budget_penalty",
  "clip_to_range",
  "group_lasso_penalty",
  "keep_masked",
  "l1_penalty",
  "mean_gate_penalty",
  "reset_regrown",
]

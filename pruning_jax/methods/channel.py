"""Structured (channel) pruning as Pruners: one-shot filter pruning and soft filter pruning.

Both find the network's channel groups at ``init`` (:func:`pruning_jax.surgery.channel_groups`
on ``InitContext.apply_fn`` and ``example_input``), score channels with a criterion of
:mod:`pruning_jax.structured` and zero whole channels in every member of their group (the
filter, its bias and BatchNorm scale and shift, the next layer's input slice), so the masked
network computes exactly what the shrunk one will (:func:`pruning_jax.surgery.keep_from_masks`
reads the removed channels back; the runner's ``shrink`` stage does that).

* :func:`channel_pruning`: one-shot at ``init`` to a removed fraction of channels or to a MACs
  reduction: L1-norm filter pruning of a trained network (Li et al., ICLR 2017) with
  ``criterion="l1"``, network slimming's prune step (Liu et al., ICCV 2017) with
  ``"bn_scale"``, a random structure with ``"random"``, Taylor and FPGM.
* :func:`soft_filter_pruning`: SFP (He et al., IJCAI 2018): every ``every_steps`` the lowest-norm
  filters of each layer are set to zero but stay trainable, so they can grow back; the last
  selection is the pruned structure.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> from pruning_jax import models, training
  >>> model = models.LeNet300100(widths=(20, 10))
  >>> x = jnp.ones((1, 28, 28, 1))
  >>> params = model.init(jax.random.key(0), x)["params"]
  >>> ctx = pj.InitContext(apply_fn=lambda p, x: model.apply({"params": p}, x), example_input=x)
  >>> pruner = pj.methods.channel_pruning("l1", amount=0.5, scope="group")
  >>> state = pruner.init(jax.random.key(1), params, ctx)
  >>> masks = pruner.masks(params, state)
  >>> int(masks["Dense_1"]["kernel"].any(axis=0).sum()) + int(masks["Dense_0"]["kernel"].any(axis=0).sum())
  15
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax import masks as masks_lib
from pruning_jax import structured, surgery, validation
from pruning_jax.pruner import InitContext, Pruner, PrunerState, StepInfo, no_update
from pruning_jax.tree import PyTree, Static, static_value


class ChannelBuffers(NamedTuple):
  """The buffers of the channel Pruners.

  Attributes:
    masks: bool masks of the params' shapes: False on every entry of a removed channel.
    groups: the channel groups (static data, not arrays).
    zeroing: (), bool: soft filter pruning only: the masks hold for this step (the weights
      they remove are set to zero), then every weight trains again.
    amount: (), float32: the fraction of channels removed (given, or found for a MACs target).
  """

  masks: PyTree
  groups: Static  # tuple[surgery.ChannelGroup, ...]
  zeroing: jax.Array
  amount: jax.Array


def _groups_of(params: PyTree, context: InitContext | None, where: str) -> tuple[surgery.ChannelGroup, ...]:
  if context is None or context.apply_fn is None or context.example_input is None:
    raise ValueError(
      f"{where} finds the channel groups from the forward pass: init needs an InitContext with "
      "apply_fn and example_input. Fix: pass pj.training.init_context(apply_fn, model_state, "
      "batches=[batch]) (the runner does)."
    )
  example = jax.tree.map(lambda a: a[:1], context.example_input)  # shapes only; one example
  return tuple(surgery.channel_groups(context.apply_fn, params, example))


def _mean_grads(params: PyTree, context: InitContext, where: str) -> PyTree:
  if context.loss_fn is None or not context.batches:
    raise ValueError(f"{where}: criterion 'taylor' needs InitContext.loss_fn and batches.")
  grads = [jax.grad(context.loss_fn)(params, b) for b in context.batches]
  return jax.tree.map(lambda *g: sum(g) / len(g), *grads)


def _scores(criterion, params, groups, context, key, tied, where):
  grads = _mean_grads(params, context, where) if criterion == "taylor" else None
  scores = structured.group_scores(params, groups, criterion, grads=grads, key=key)
  if not tied:  # a residual stream: several layers produce its channels; keep it whole
    scores = [
      None if sum(m.role == "out" for m in g.members) > 1 else s for s, g in zip(scores, groups, strict=True)
    ]
  return scores


def _full_masks(params: PyTree, groups, keep, roles=None) -> PyTree:
  if roles is not None:  # only these members: e.g. the filters alone, for soft pruning
    groups = [g._replace(members=tuple(m for m in g.members if m.role in roles)) for g in groups]
  masks = surgery.channel_masks(params, groups, keep, allow_collapse=True)
  return jax.tree.map(lambda m, p: jnp.broadcast_to(m, jnp.shape(p)), masks, params)


def _is_concrete(tree: PyTree) -> bool:
  return all(static_value(x) is not None for x in jax.tree.leaves(tree))


def gated_groups(groups, where: str) -> tuple[tuple[int, tuple[str, ...]], ...]:
  """Where channel gates go: ``(group index, member roles the gate scales)`` for each group one
  layer produces, after its BatchNorm (scale and shift) where it has one, else on the layer's own
  output (filters, bias). A residual stream, produced by several layers, is never gated.

  Args:
    groups: the network's channel groups (:func:`pruning_jax.surgery.channel_groups`).
    where: the caller's name, for the error.

  Returns:
    The gated groups, in group order.

  Raises:
    ValueError: no group is produced by a single layer.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"a": {"kernel": jnp.ones((4, 3))}, "b": {"kernel": jnp.ones((3, 2))}}
    >>> fn = lambda p, x: x @ p["a"]["kernel"] @ p["b"]["kernel"]
    >>> gated_groups(pj.surgery.channel_groups(fn, params, jnp.ones((1, 4))), "example")
    ((1, ('out', 'elementwise')),)
  """
  gated = []
  for i, g in enumerate(groups):
    if not g.prunable or sum(m.role == "out" for m in g.members) != 1:
      continue
    normed = any(m.role == "elementwise" and structured._BN_SCALE.search(m.path) for m in g.members)
    gated.append((i, ("elementwise",) if normed else ("out", "elementwise")))
  if not gated:
    raise ValueError(f"{where}: the network has no channel group a single layer produces: nothing to gate.")
  return tuple(gated)


def scale_gated(params: PyTree, groups, gated, gates: dict[str, jax.Array]) -> PyTree:
  """The params with each gated group's channels multiplied by its gate vector.

  ``g * BN(x) = (g * gamma) xhat + g * beta``: a gate after BatchNorm scales the BN's scale and
  bias; without one, ``g * (x W + b)`` scales the filters and bias (see :func:`gated_groups`).

  Args:
    params: the params.
    groups: the channel groups.
    gated: :func:`gated_groups`'s output.
    gates: ``{str(group index): (C,) gate values}`` for every gated group.

  Returns:
    The scaled params (the same structure and shapes).

  Example:
    >>> import jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"a": {"kernel": jnp.ones((4, 3))}, "b": {"kernel": jnp.ones((3, 2))}}
    >>> fn = lambda p, x: x @ p["a"]["kernel"] @ p["b"]["kernel"]
    >>> groups = pj.surgery.channel_groups(fn, params, jnp.ones((1, 4)))
    >>> out = scale_gated(params, groups, gated_groups(groups, "x"), {"1": jnp.array([0.0, 1.0, 2.0])})
    >>> out["a"]["kernel"][0].tolist()
    [0.0, 1.0, 2.0]
  """
  for roles in sorted({roles for _, roles in gated}):
    scales = {i: gates[str(i)] for i, r in gated if r == roles}
    params = surgery.scale_channels(params, groups, scales, roles=roles)
  return params


def _macs_selection(params, groups, scores, context, reduction, reference_macs, **kw):
  """``(keep, removed fraction)`` meeting a MACs reduction: exact and eager for concrete params,
  bisected under the trace otherwise (shapes do not depend on which)."""
  example = jax.tree.map(lambda a: a[:1], context.example_input)
  model = structured.macs_model(context.apply_fn, params, groups, example)
  kw["reference_macs"] = model.dense if reference_macs is None else int(reference_macs)
  # the scores, not the params: concrete params closed over by a trace (eval_shape, jit) give traced scores
  if _is_concrete(scores):
    t = structured.keep_for_macs(context.apply_fn, params, groups, scores, reduction, example, **kw)
    return t.keep, jnp.float32(t.amount)
  return structured.traced_keep_for_macs(model, scores, groups, reduction, **kw)


def _one_of(amount, macs_reduction, where):
  if (amount is None) == (macs_reduction is None):
    raise ValueError(f"{where}: give exactly one of amount= (channels) and macs_reduction= (MACs).")


def channel_pruning(
  criterion: str = "l1",
  *,
  amount: float | None = None,
  macs_reduction: float | None = None,
  reference_macs: int | None = None,
  scope: str = "global",
  normalize: str | None = None,
  tied: bool = True,
  round_to: int | None = None,
  rtol: float = 1e-3,
  allow_collapse: bool = False,
) -> Pruner:
  """Removes whole channels once, at ``init``, to a fraction of channels or a MACs reduction.

  Args:
    criterion: a criterion of :func:`pruning_jax.structured.group_scores` (``"l1"``, ``"l2"``,
      ``"bn_scale"``, ``"taylor"`` on the context's batches, ``"fpgm"``, ``"random"``).
    amount: fraction of the channels to remove (exactly ``round(amount * n)``).
    macs_reduction: instead of ``amount``: the fraction of MACs to remove, found by bisection
      (:func:`pruning_jax.structured.keep_for_macs`) within ``rtol``.
    reference_macs: the MACs ``macs_reduction`` is measured against (e.g. the standard model
      when pruning an expanded one); None: the pruned network's own dense MACs.
    scope: ``"global"`` (one ranking) or ``"group"`` (the same fraction of each group).
    normalize: per-group normalisation of the scores before a global ranking.
    tied: also prune groups several layers produce (residual streams); False keeps them whole
      (as Li et al. and Pruning from Scratch do for ResNets).
    round_to: round each group's kept width to a multiple of this (see
      :func:`pruning_jax.structured.select_channels`; 8 makes shrunk networks much faster on CPU).
    rtol: relative tolerance of ``macs_reduction``.
    allow_collapse: allow a group to lose every channel.

  Returns:
    A :class:`pruning_jax.Pruner` whose masks are fixed after ``init``; with
    ``InitContext.masks`` it scores the masked weights and keeps those masks too.

  Raises:
    ValueError: neither or both of ``amount`` and ``macs_reduction``; (at init) a context
      without ``apply_fn`` and ``example_input``, or what the selection raises.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"a": jnp.arange(8.0).reshape(1, 8), "b": jnp.ones((8, 2))}
    >>> ctx = pj.InitContext(apply_fn=lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"],
    ...                      example_input=jnp.ones((1, 1)))
    >>> pruner = pj.methods.channel_pruning("l1", amount=0.25)
    >>> pruner.masks(params, pruner.init(jax.random.key(0), params, ctx))["a"].tolist()
    [[False, False, True, True, True, True, True, True]]
  """
  where = "channel_pruning"
  _one_of(amount, macs_reduction, where)
  if amount is not None:
    validation.fraction(amount, f"{where}: amount", upper_open=False)

  def select(params, groups, scores, context):
    kw = {"scope": scope, "normalize": normalize, "round_to": round_to, "allow_collapse": allow_collapse}
    if amount is not None:
      return structured.select_channels(scores, groups, amount, **kw), jnp.float32(amount)
    return _macs_selection(params, groups, scores, context, macs_reduction, reference_macs, rtol=rtol, **kw)

  def init(key, params, context: InitContext | None = None):
    groups = _groups_of(params, context, where)
    start = None
    if context.masks is not None:
      masks_lib.check_masks(params, context.masks)
      start = context.masks
    scored = params if start is None else masks_lib.apply_masks(params, start)
    scores = _scores(criterion, scored, groups, context, key, tied, where)
    keep, found = select(scored, groups, scores, context)
    masks = _full_masks(params, groups, keep)
    if start is not None:
      masks = jax.tree.map(lambda a, b: a & b, masks, start)
    return PrunerState({}, ChannelBuffers(masks, Static(groups), jnp.asarray(True), found))

  def apply(params, state, *, key=None, train=True):
    del key, train
    return masks_lib.apply_masks(params, state.buffers.masks)

  def masks(params, state):
    del params
    return state.buffers.masks

  def finalize(params, state):
    return masks_lib.apply_masks(params, state.buffers.masks), state.buffers.masks

  return Pruner(init, apply, no_update, finalize, masks)


def soft_filter_pruning(
  amount: float | None = None,
  *,
  every_steps: int,
  macs_reduction: float | None = None,
  reference_macs: int | None = None,
  criterion: str = "l2",
  scope: str = "group",
  tied: bool = True,
  rtol: float = 1e-3,
) -> Pruner:
  """Soft filter pruning (He et al., IJCAI 2018): every ``every_steps`` steps the lowest-scoring
  channels are set to zero, and all weights go on training, so a zeroed filter may grow back.

  The step whose update selects (every ``every_steps``-th, counting from 1) holds masks over
  the filters alone (the members producing each channel, as the paper zeroes conv filters, not
  BatchNorm or the next layer's inputs, through which the filter's gradient flows back): the
  optimizer sets them to exactly zero (``zero_removed``); the next step trains every weight
  again. The regrown weights' optimizer moments restart at zero (the
  protocol's rule for any regrown weight), where the reference code keeps SGD's momentum
  buffer. ``finalize`` removes the channels its criterion ranks lowest on the final weights.

  Args:
    amount: fraction of channels removed (of each group with ``scope="group"``, as the paper's
      per-layer rate).
    every_steps: steps between selections (the runner's ``every_epochs=1`` is the paper's).
    macs_reduction: instead of ``amount``: the per-group rate whose removal cuts the MACs by
      this fraction (found at ``init``; needs ``scope="group"``, where the MACs do not depend
      on which channels go).
    reference_macs: what ``macs_reduction`` is measured against (None: the network's own).
    criterion: the channel score (the paper: ``"l2"``).
    scope: ``"group"`` (same fraction per group) or ``"global"``.
    tied: also prune residual streams (groups several layers produce).
    rtol: relative tolerance of ``macs_reduction``.

  Returns:
    A :class:`pruning_jax.Pruner` with ``zero_removed=True``.

  Raises:
    ValueError: neither or both of ``amount`` and ``macs_reduction``, an amount outside
      [0, 1), a MACs target with ``scope="global"``, ``every_steps`` < 1, or a criterion
      needing data.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"a": jnp.arange(8.0).reshape(1, 8), "b": jnp.ones((8, 2))}
    >>> ctx = pj.InitContext(apply_fn=lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"],
    ...                      example_input=jnp.ones((1, 1)))
    >>> pruner = pj.methods.soft_filter_pruning(0.5, every_steps=2)
    >>> state = pruner.init(jax.random.key(0), params, ctx)
    >>> [bool(pruner.masks(params, pruner.update(params, state, pj.StepInfo(jnp.int32(t))))["a"].all())
    ...  for t in (0, 1)]
    [True, False]
  """
  where = "soft_filter_pruning"
  _one_of(amount, macs_reduction, where)
  if amount is not None:
    validation.fraction(amount, f"{where}: amount")
  elif scope != "group":
    raise ValueError(
      f"{where}: macs_reduction needs scope='group' (a global ranking's MACs change with the weights "
      "at every selection)."
    )
  if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
    raise ValueError(f"{where}: every_steps must be an int >= 1, got {every_steps!r}.")
  if criterion in ("taylor", "random"):
    raise ValueError(
      f"{where}: criterion {criterion!r} needs data or a key at every selection; use a weight criterion."
    )

  def selection(params, groups, rate, roles=None):
    scores = _scores(criterion, params, groups, None, None, tied, where)
    keep = structured.select_channels(scores, groups, rate, scope=scope, allow_collapse=False)
    return _full_masks(params, groups, keep, roles)

  def init(key, params, context: InitContext | None = None):
    del key
    groups = _groups_of(params, context, where)
    rate = jnp.float32(amount) if amount is not None else None
    if rate is None:  # any scores: per group, only how many go changes the MACs
      scores = _scores("l1", params, groups, None, None, tied, where)
      _, rate = _macs_selection(
        params, groups, scores, context, macs_reduction, reference_macs, scope=scope, rtol=rtol
      )
    masks = jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
    return PrunerState({}, ChannelBuffers(masks, Static(groups), jnp.asarray(False), rate))

  def apply(params, state, *, key=None, train=True):
    del state, key, train
    return params  # zeroed filters are zero in the params themselves

  def update(params, state, info: StepInfo):
    due = (jnp.asarray(info.step) + 1) % every_steps == 0
    b = state.buffers
    masks = jax.lax.cond(
      due,
      lambda: selection(params, b.groups.value, b.amount, roles=("out",)),
      lambda: jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params),
    )
    return state._replace(buffers=b._replace(masks=masks, zeroing=due))

  def masks(params, state):
    del params
    return state.buffers.masks

  def finalize(params, state):
    final = selection(params, state.buffers.groups.value, state.buffers.amount)
    return masks_lib.apply_masks(params, final), final

  return Pruner(init, apply, update, finalize, masks, zero_removed=True)


__all__ = ["ChannelBuffers", "channel_pruning", "gated_groups", "scale_gated", "soft_filter_pruning"]

"""Structured pruning on channel groups: group scores, exact selection, a MACs target.

A channel's score sums what its group's members hold of it (:func:`group_scores`): the L1 or
L2 norm of the filters that produce it (Li et al. 2017), the ``|gamma|`` of its BatchNorms
(network slimming, Liu et al. 2017), the first-order Taylor term ``|g * w|`` (Molchanov et al.
2019), or its filter's distance to the others, whose sum is smallest at the geometric median
(FPGM, He et al. 2019). :func:`select_channels` removes exactly ``round(amount * n)`` of the
lowest scores, over all prunable channels at once or per group, and :func:`keep_for_macs` finds
the amount whose shrunk network cuts the MACs of a named reference by a target fraction.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from pruning_jax import surgery
  >>> params = {"a": jnp.array([[1.0, -3.0, 0.5, 2.0]]), "b": jnp.ones((4, 2))}
  >>> fn = lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"]
  >>> groups = surgery.channel_groups(fn, params, jnp.ones((1, 1)))
  >>> scores = group_scores(params, groups, "l1")
  >>> [s.tolist() for s in scores if s is not None]
  [[1.0, 3.0, 0.5, 2.0]]
  >>> keep = select_channels(scores, groups, 0.5)
  >>> {i: k.tolist() for i, k in keep.items()}
  {0: [False, True, False, True]}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pruning_jax import accounting, surgery, validation
from pruning_jax.masks import _n_remove, _normalize  # the unstructured path's exact counts
from pruning_jax.surgery import ChannelGroup, Member
from pruning_jax.thresholds import removal_keep_masks
from pruning_jax.tree import PyTree, leaves_with_paths, path_str, static_value

__all__ = [
  "CRITERIA",
  "MacsModel",
  "MacsTarget",
  "bisect_for_macs",
  "group_scores",
  "keep_for_macs",
  "macs_model",
  "select_channels",
  "traced_keep_for_macs",
]

_BN_SCALE = re.compile(r"(^|/)scale(/value)?$")  # Flax linen and NNX BatchNorm scales


def _rows(x: jax.Array, m: Member, channels: int) -> jax.Array:
  """``(channels, k)``: row c holds every entry of member ``m`` that belongs to channel c."""
  x = jnp.moveaxis(jnp.asarray(x), m.axis, 0)
  n = x.shape[0]
  x = x.reshape(n // (channels * m.inner), channels, m.inner, -1)
  return jnp.moveaxis(x, 1, 0).reshape(channels, -1)


def _l1(rows, _):
  return jnp.sum(jnp.abs(rows), axis=1)


def _sq(rows, _):
  return jnp.sum(jnp.square(rows), axis=1)


def _taylor(rows, grad_rows):
  return jnp.sum(jnp.abs(rows * grad_rows), axis=1)


def _fpgm(rows, _):
  # sum_j ||w_c - w_j||_2: smallest for the filters nearest the geometric median (the most
  # replaceable ones, pruned first)
  rows = rows.astype(jnp.float32)
  sq = jnp.sum(jnp.square(rows), axis=1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * rows @ rows.T
  return jnp.sum(jnp.sqrt(jnp.maximum(d2, 0.0)), axis=1)


def _out_weights(m: Member, ndim: int) -> bool:
  return m.role == "out"


def _bn_scales(m: Member, ndim: int) -> bool:
  return ndim == 1 and bool(_BN_SCALE.search(m.path))


class _Criterion(NamedTuple):
  per_member: Callable[[jax.Array, jax.Array | None], jax.Array]
  members: Callable[[Member, int], bool]  # default members that score
  finish: Callable[[jax.Array], jax.Array]  # of the sum over members
  needs_grads: bool


CRITERIA = {
  "l1": _Criterion(_l1, _out_weights, lambda s: s, False),
  "l2": _Criterion(_sq, _out_weights, jnp.sqrt, False),
  "bn_scale": _Criterion(_l1, _bn_scales, lambda s: s, False),
  "taylor": _Criterion(_taylor, lambda m, ndim: True, lambda s: s, True),
  "fpgm": _Criterion(_fpgm, _out_weights, lambda s: s, False),
}


def group_scores(
  tree: PyTree,
  groups: Sequence[ChannelGroup],
  criterion: str = "l1",
  *,
  grads: PyTree | None = None,
  key: jax.Array | None = None,
  members: Callable[[Member, int], bool] | None = None,
) -> list[jax.Array | None]:
  """One score per channel of every prunable group (None for fixed groups).

  Criteria (``CRITERIA``) and the members they read by default:

  - ``"l1"`` / ``"l2"``: the norm of the weights that produce the channel (members with role
    ``"out"``: a conv's filter, a dense layer's column; Li et al. 2017).
  - ``"bn_scale"``: ``sum |gamma|`` over the group's BatchNorm scales (1-d members whose path
    ends in ``scale``; network slimming). A group without one is an error.
  - ``"taylor"``: ``sum |g * w|`` over every member (needs ``grads``, the tree's gradients).
  - ``"fpgm"``: per producing weight, ``sum_j ||w_c - w_j||_2``, summed over them.
  - ``"random"``: U(0, 1) per channel from ``key`` (a random structure, the usual baseline).

  Args:
    tree: the pytree the groups were computed on.
    groups: from :func:`pruning_jax.surgery.channel_groups`.
    criterion: a key of ``CRITERIA``.
    grads: gradients with ``tree``'s structure (``"taylor"`` only).
    key: PRNG key (``"random"`` only).
    members: ``(member, leaf ndim) -> bool`` choosing the scoring members instead of the
      criterion's default (e.g. ``lambda m, nd: True`` for every member, Torch-Pruning's
      group-level norm).

  Returns:
    A list aligned with ``groups``: a float32 ``(channels,)`` array per prunable group.

  Raises:
    ValueError: an unknown criterion, missing or misshapen ``grads``, or a prunable group with
      no scoring member (named).

  Example:
    >>> import jax.numpy as jnp
    >>> from pruning_jax import surgery
    >>> params = {"w": jnp.array([[3.0, 4.0], [0.0, 1.0]]), "v": jnp.ones((2, 1))}
    >>> groups = surgery.channel_groups(lambda p, x: x @ p["w"] @ p["v"], params, jnp.ones((1, 2)))
    >>> [s.tolist() for s in group_scores(params, groups, "l2") if s is not None]
    [[3.0, 4.123105525970459]]
  """
  if criterion == "random":
    validation.prng_key(key, "group_scores: key (criterion 'random')")
    return [
      jax.random.uniform(jax.random.fold_in(key, i), (g.channels,)) if g.prunable else None
      for i, g in enumerate(groups)
    ]
  if criterion not in CRITERIA:
    raise ValueError(
      f"group_scores: unknown criterion {criterion!r}; expected one of {sorted([*CRITERIA, 'random'])}."
    )
  crit = CRITERIA[criterion]
  chooses = members or crit.members
  leaves = {path_str(p): x for p, x in leaves_with_paths(tree)}
  grad_leaves = None
  if crit.needs_grads:
    if grads is None:
      raise ValueError(f"group_scores: {criterion!r} needs grads=, the gradients of the loss w.r.t. tree.")
    grad_leaves = {path_str(p): x for p, x in leaves_with_paths(grads)}
  out: list[jax.Array | None] = []
  for i, g in enumerate(groups):
    if not g.prunable:
      out.append(None)
      continue
    total = None
    for m in g.members:
      if m.path not in leaves:
        raise ValueError(
          f"group_scores: group {i} has the member {m.path}, which this tree lacks. Fix: compute the "
          "groups with channel_groups on this tree."
        )
      x = leaves[m.path]
      if not chooses(m, np.ndim(x)):
        continue
      grad_rows = None
      if grad_leaves is not None:
        gx = grad_leaves.get(m.path)
        if gx is None or np.shape(gx) != np.shape(x):
          raise ValueError(
            f"group_scores: grads lacks {m.path} of shape {np.shape(x)} (got "
            f"{None if gx is None else np.shape(gx)}). Fix: pass the gradients of the same tree."
          )
        grad_rows = _rows(gx, m, g.channels)
      s = crit.per_member(_rows(x, m, g.channels), grad_rows).astype(jnp.float32)
      total = s if total is None else total + s
    if total is None:
      raise ValueError(
        f"group_scores: no member of group {i} scores under {criterion!r} ({g.describe()}). Fix: "
        "pick another criterion, or pass members= to choose the scoring members."
      )
    out.append(crit.finish(total))
  return out


SCOPES = ("global", "group")


def select_channels(
  scores: Sequence[jax.Array | None],
  groups: Sequence[ChannelGroup],
  amount: float,
  *,
  scope: str = "global",
  normalize: str | None = None,
  round_to: int | None = None,
  allow_collapse: bool = False,
) -> dict[int, np.ndarray]:
  """Keep vectors that remove exactly the lowest-scoring channels.

  Args:
    scores: from :func:`group_scores`; None for fixed groups and for any group to keep whole.
    groups: the groups.
    amount: fraction in [0, 1] of the channels to remove: ``round(amount * n)`` of all ``n``
      prunable channels (``scope="global"``), or of each group's (``"group"``).
    scope: ``"global"`` (one ranking of all channels) or ``"group"`` (the same fraction per
      group).
    normalize: divide each group's scores by their ``"l1"``, ``"l2"``, ``"max"`` or ``"mean"``
      before a global ranking (None: raw scores).
    round_to: then round each group's kept count to the nearest multiple of this (at least
      one multiple, at most the group; its best channels are kept): XLA's CPU convolutions run
      far faster on widths that are multiples of 8. The removed total is then no longer
      exactly ``round(amount * n)``.
    allow_collapse: allow a group to lose every channel (it disconnects the network).

  Returns:
    ``{group index: bool (channels,) keep vector}`` (NumPy when concrete, traced arrays under
    ``jit``) for the prunable groups, for
    :func:`pruning_jax.surgery.shrink` or :func:`pruning_jax.surgery.channel_masks`.

  Raises:
    ValueError: an amount outside [0, 1], an unknown scope or normalisation, scores that do not
      fit the groups, or a group removed entirely without ``allow_collapse`` (named).

  Example:
    >>> import numpy as np
    >>> from pruning_jax.surgery import ChannelGroup, Member
    >>> groups = [ChannelGroup(3, (Member("a", 1, 1),), True), ChannelGroup(2, (Member("b", 1, 1),), True)]
    >>> keep = select_channels([np.array([1.0, 5.0, 2.0]), np.array([4.0, 3.0])], groups, 0.4)
    >>> {i: k.tolist() for i, k in keep.items()}
    {0: [False, True, False], 1: [True, True]}
  """
  validation.fraction(amount, "select_channels: amount", upper_open=False, traced=True)
  if scope not in SCOPES:
    raise ValueError(f"select_channels: scope must be one of {SCOPES}, got {scope!r}.")
  if normalize is not None and normalize not in ("l1", "l2", "max", "mean"):
    raise ValueError(
      f"select_channels: normalize must be None, 'l1', 'l2', 'max' or 'mean', got {normalize!r}."
    )
  if len(scores) != len(groups):
    raise ValueError(f"select_channels: {len(scores)} scores for {len(groups)} groups.")
  idx = [i for i, g in enumerate(groups) if g.prunable and scores[i] is not None]
  for i in idx:
    if np.shape(scores[i]) != (groups[i].channels,):
      raise ValueError(
        f"select_channels: scores[{i}] must have shape ({groups[i].channels},) for group {i} "
        f"({groups[i].describe()}), got {np.shape(scores[i])}."
      )
  if not idx:
    return {}
  units = [jnp.asarray(scores[i], jnp.float32) for i in idx]
  if scope == "global":
    units = [_normalize(u, normalize) for u in units]
    total = sum(groups[i].channels for i in idx)
    kept = removal_keep_masks(units, [_n_remove(amount, total)])
  else:
    n_remove = [_n_remove(amount, groups[i].channels) for i in idx]
    kept = removal_keep_masks(units, jnp.stack(n_remove), range(len(idx)))
  if round_to is not None:
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
      raise ValueError(f"select_channels: round_to must be an int >= 1 or None, got {round_to!r}.")
    sizes = jnp.asarray([groups[i].channels for i in idx], jnp.int32)
    counts = jnp.stack([jnp.sum(k, dtype=jnp.int32) for k in kept])
    rounded = jnp.maximum(round_to, ((counts + round_to // 2) // round_to) * round_to)
    target = jnp.where(counts > 0, jnp.minimum(rounded, sizes), 0)
    kept = removal_keep_masks(units, sizes - target, range(len(idx)))
  concrete = [static_value(k) for k in kept]
  traced = any(k is None for k in concrete)
  keep = {i: (k if traced else np.asarray(c)) for i, k, c in zip(idx, kept, concrete, strict=True)}
  message = (
    f"select_channels: removing {amount} of the channels empties a group, which disconnects the "
    "network (layer collapse). Fix: a smaller amount, normalize= or scope='group', or allow_collapse=True."
  )
  if traced:
    if not allow_collapse:
      validation.check_traced(jnp.all(jnp.stack([jnp.any(k) for k in keep.values()])), message)
    return keep
  gone = [i for i, k in keep.items() if not k.any()]
  if gone and not allow_collapse:
    raise ValueError(
      message.replace("empties a group", f"empties groups {gone} (first: {groups[gone[0]].describe()})")
    )
  return keep


def traced_keep_for_macs(
  model: MacsModel,
  scores: Sequence[jax.Array | None],
  groups: Sequence[ChannelGroup],
  reduction: float,
  *,
  reference_macs: int,
  scope: str = "global",
  normalize: str | None = None,
  round_to: int | None = None,
  rtol: float = 1e-3,
  iters: int = 30,
  allow_collapse: bool = False,
) -> tuple[dict[int, jax.Array], jax.Array]:
  """:func:`keep_for_macs` for traced scores (inside ``jit``, e.g. a Pruner's ``init``).

  Bisects the removed fraction ``iters`` times and keeps whichever of the two fractions that
  bracket the reduction comes nearer; a result outside ``rtol`` stops the computation at run
  time.

  Args:
    model: the network's :class:`MacsModel`.
    scores: channel scores (may be traced).
    groups: the groups.
    reduction: the target MACs reduction in (0, 1).
    reference_macs: the MACs the reduction is measured against.
    scope: as :func:`select_channels`.
    normalize: as :func:`select_channels`.
    round_to: as :func:`select_channels`.
    rtol: relative tolerance on the reduction.
    iters: bisection steps (30 resolves any channel count below 10^9).
    allow_collapse: as :func:`select_channels`.

  Returns:
    ``(keep vectors, removed fraction)``.

  Raises:
    ValueError: a reduction outside (0, 1) or a non-positive reference; at run time, a result
      outside ``rtol`` or a collapse.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from pruning_jax import surgery
    >>> params = {"a": jnp.ones((8, 100)), "b": jnp.ones((100, 8))}
    >>> fn = lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"]
    >>> x = jnp.ones((1, 8))
    >>> groups = surgery.channel_groups(fn, params, x)
    >>> model = macs_model(fn, params, groups, x)
    >>> @jax.jit
    ... def kept(s):
    ...   keep, _ = traced_keep_for_macs(model, [None, s, None], groups, 0.3, reference_macs=1600)
    ...   return keep[1].sum()
    >>> int(kept(jnp.arange(100.0)))
    70
  """
  _check_target(reduction, reference_macs, "traced_keep_for_macs")
  ref = jnp.float32(int(reference_macs))

  def achieved(amount, collapse_ok=True):
    keep = select_channels(
      scores, groups, amount, scope=scope, normalize=normalize, round_to=round_to, allow_collapse=collapse_ok
    )
    return keep, 1.0 - model(keep) / ref

  def body(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    reached = achieved(mid)[1] >= reduction
    return jnp.where(reached, lo, mid), jnp.where(reached, mid, hi)

  lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.float32(0.0), jnp.float32(1.0)))
  # the last fraction below the target and the first at or above it: the nearer one
  below = jnp.abs(achieved(lo)[1] - reduction) < jnp.abs(achieved(hi)[1] - reduction)
  amount = jnp.where(below, lo, hi)
  keep, r = achieved(amount, allow_collapse)
  validation.check_traced(
    jnp.abs(r - reduction) <= rtol * reduction,
    f"traced_keep_for_macs: no removed fraction reaches a MACs reduction within rtol={rtol} of "
    f"{reduction} against reference_macs={reference_macs}. Fix: a larger rtol, or a reachable target.",
  )
  return keep, amount


def _check_target(reduction, reference_macs, where: str) -> None:
  validation.scalar(reduction, f"{where}: reduction")
  if not 0.0 < float(reduction) < 1.0:
    raise ValueError(f"{where}: reduction must be in (0, 1), got {reduction}.")
  if int(reference_macs) <= 0:
    raise ValueError(f"{where}: reference_macs must be positive, got {reference_macs}.")


class MacsTarget(NamedTuple):
  """What :func:`keep_for_macs` found.

  Attributes:
    keep: the keep vectors (as :func:`select_channels`).
    amount: the fraction of channels removed.
    macs: MACs of the shrunk network.
    reduction: ``1 - macs / reference_macs``.
  """

  keep: dict[int, np.ndarray]
  amount: float
  macs: int
  reduction: float


def _ones(tree: PyTree) -> PyTree:
  # NumPy ones: concrete even when ``tree`` is traced (shapes are all counting needs)
  return jax.tree.map(lambda x: np.ones(np.shape(x), np.dtype(jnp.result_type(x))), tree)


def _shrunk_macs(fn, tree, groups, keep, inputs) -> int:
  """MACs of the network with ``keep`` applied: the masked network's effective MACs on a tree of
  ones, which the shrunk network's dense MACs equal (no weight is zero by chance)."""
  ones = _ones(tree)
  with jax.ensure_compile_time_eval():
    masks = jax.tree.map(np.asarray, surgery.channel_masks(ones, groups, keep, allow_collapse=True))
    return accounting.count_flops(fn, ones, *inputs, masks=masks).effective_macs


class MacsModel(NamedTuple):
  """MACs of a network as a function of its groups' keep vectors, without running it.

  Each counted layer's MACs are its dense MACs times the kept fraction of every channel axis of
  its weight; :func:`macs_model` checks this against :func:`pruning_jax.count_flops` when it
  builds one. Call it with concrete keep vectors (an exact int) or traced ones (a float32
  scalar, e.g. inside a jitted Pruner).

  Attributes:
    layers: ``(weight leaf path, dense MACs, ((group index, channels), ...))`` per layer.
    dense: the network's dense MACs.
  """

  layers: tuple[tuple[str, int, tuple[tuple[int, int], ...]], ...]
  dense: int

  def __call__(self, keep: Mapping[int, Any]) -> int | jax.Array:
    """MACs with ``keep`` (``{group index: bool vector}``; groups left out keep everything)."""
    concrete = all(static_value(v) is not None for v in keep.values())
    if concrete:
      kept = {i: int(np.sum(static_value(v))) for i, v in keep.items()}
      total = 0
      for _, dense, axes in self.layers:
        num, den = dense, 1
        for i, channels in axes:
          if i in kept:
            num, den = num * kept[i], den * channels
        total += num // den
      return total
    frac = {i: jnp.mean(jnp.asarray(v, jnp.float32)) for i, v in keep.items()}
    total = jnp.float32(0.0)
    for _, dense, axes in self.layers:
      term = jnp.float32(dense)
      for i, _ in axes:
        if i in frac:
          term = term * frac[i]
      total = total + term
    return total


def macs_model(
  fn: Callable[..., Any], tree: PyTree, groups: Sequence[ChannelGroup], *inputs: Any
) -> MacsModel:
  """The :class:`MacsModel` of ``fn(tree, *inputs)`` (``tree`` may be traced: shapes suffice).

  Args:
    fn: ``(tree, *inputs) -> outputs``, as for the groups.
    tree: the network's tree.
    groups: its groups.
    *inputs: example inputs (a batch of 1 gives per-example MACs).

  Returns:
    The model, checked against a full count of the network with every other channel removed.

  Raises:
    ValueError: a layer whose weight is not one whole leaf of ``tree`` (e.g. the product of two
      activations, or a weight assembled from several leaves), whose MACs the model cannot
      follow; or a network whose counted MACs disagree with the model (named).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from pruning_jax import surgery
    >>> params = {"a": jnp.ones((8, 10)), "b": jnp.ones((10, 2))}
    >>> fn = lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"]
    >>> x = jnp.ones((1, 8))
    >>> model = macs_model(fn, params, surgery.channel_groups(fn, params, x), x)
    >>> model.dense, model({1: jnp.arange(10) < 5})
    (100, 50)
  """
  ones = _ones(tree)
  with jax.ensure_compile_time_eval():
    report = accounting.count_flops(fn, ones, *inputs)
  paths = {path_str(p) for p, _ in leaves_with_paths(tree)}
  axes: dict[str, list[tuple[int, int]]] = {}
  for i, g in enumerate(groups):
    for m in g.members:
      axes.setdefault(m.path, []).append((i, g.channels))
  layers = []
  for layer in report.layers:
    if layer.path not in paths or layer.effective_macs != layer.macs:
      raise ValueError(
        f"macs_model: a {layer.primitive} of {layer.macs} MACs has no single weight leaf (its weight "
        f"is {layer.path!r}), so its MACs under a shrink cannot be modelled. Fix: count each candidate "
        "with pruning_jax.count_flops on the shrunk network instead."
      )
    layers.append((layer.path, int(layer.macs), tuple(axes.get(layer.path, ()))))
  model = MacsModel(tuple(layers), int(report.macs))
  probe = {i: np.arange(g.channels) % 2 == 0 for i, g in enumerate(groups) if g.prunable}
  want = _shrunk_macs(fn, tree, groups, probe, inputs)
  if model(probe) != want:
    raise ValueError(
      f"macs_model: counting a shrunk copy gives {want} MACs, the per-layer model {model(probe)}: some "
      "layer's MACs depend on channels other than its weight's. Fix: count candidates with count_flops."
    )
  return model


def keep_for_macs(
  fn: Callable[..., Any],
  tree: PyTree,
  groups: Sequence[ChannelGroup],
  scores: Sequence[jax.Array | None],
  reduction: float,
  *inputs: Any,
  reference_macs: int,
  scope: str = "global",
  normalize: str | None = None,
  round_to: int | None = None,
  rtol: float = 1e-3,
  max_iter: int = 40,
  allow_collapse: bool = False,
) -> MacsTarget:
  """Bisects the removed fraction until the shrunk network has ``reduction`` fewer MACs than
  the reference: ``|1 - macs / reference_macs - reduction| <= rtol * reduction``.

  Args:
    fn: ``(tree, *inputs) -> outputs``, as for the groups.
    tree: the (wide) network's tree.
    groups: its groups.
    scores: channel scores (:func:`group_scores`).
    reduction: the target MACs reduction in (0, 1).
    *inputs: example inputs (a batch of 1 gives per-example MACs).
    reference_macs: the MACs the reduction is measured against (the unpruned standard model,
      which may differ from ``tree``'s, e.g. an expanded network's standard width).
    scope: as :func:`select_channels`.
    normalize: as :func:`select_channels`.
    round_to: as :func:`select_channels`.
    rtol: relative tolerance on the reduction.
    max_iter: bisection steps at most.
    allow_collapse: as :func:`select_channels`.

  Returns:
    A :class:`MacsTarget`.

  Raises:
    ValueError: a reduction outside (0, 1), a non-positive reference, a target the prunable
      channels cannot reach, or none within ``rtol`` after ``max_iter`` steps (the closest is
      named).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from pruning_jax import surgery
    >>> params = {"a": jnp.ones((8, 100)), "b": jnp.ones((100, 8))}
    >>> fn = lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"]
    >>> x = jnp.ones((1, 8))
    >>> groups = surgery.channel_groups(fn, params, x)
    >>> scores = [None if not g.prunable else jnp.arange(100.0) for g in groups]
    >>> t = keep_for_macs(fn, params, groups, scores, 0.3, x, reference_macs=1600)
    >>> t.macs, round(t.reduction, 3), int(t.keep[1].sum())
    (1120, 0.3, 70)
  """
  _check_target(reduction, reference_macs, "keep_for_macs")
  try:
    count = macs_model(fn, tree, groups, *inputs)
  except ValueError:  # a network the per-layer model cannot follow: count every candidate
    count = lambda keep: _shrunk_macs(fn, tree, groups, keep, inputs)  # noqa: E731
  return bisect_for_macs(
    count,
    scores,
    groups,
    reduction,
    reference_macs=reference_macs,
    scope=scope,
    normalize=normalize,
    round_to=round_to,
    rtol=rtol,
    max_iter=max_iter,
    allow_collapse=allow_collapse,
    where="keep_for_macs",
  )


def bisect_for_macs(
  count: Callable[[Mapping[int, Any]], int],
  scores: Sequence[jax.Array | None],
  groups: Sequence[ChannelGroup],
  reduction: float,
  *,
  reference_macs: int,
  scope: str = "global",
  normalize: str | None = None,
  round_to: int | None = None,
  rtol: float = 1e-3,
  max_iter: int = 40,
  allow_collapse: bool = False,
  where: str = "bisect_for_macs",
) -> MacsTarget:
  """:func:`keep_for_macs` on a MACs counter: a :class:`MacsModel` built once (a Pruner keeps
  it in its state and bisects again on learned scores) or any ``keep -> int``.

  Args:
    count: ``{group index: bool keep vector} -> MACs`` (e.g. :func:`macs_model`'s result).
    scores: channel scores (concrete).
    groups: the groups.
    reduction: the target MACs reduction in (0, 1).
    reference_macs: the MACs the reduction is measured against.
    scope: as :func:`select_channels`.
    normalize: as :func:`select_channels`.
    round_to: as :func:`select_channels`.
    rtol: relative tolerance on the reduction.
    max_iter: bisection steps at most.
    allow_collapse: as :func:`select_channels`.
    where: the name errors start with.

  Returns:
    A :class:`MacsTarget`.

  Raises:
    ValueError: as :func:`keep_for_macs`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from pruning_jax import surgery
    >>> params = {"a": jnp.ones((8, 100)), "b": jnp.ones((100, 8))}
    >>> fn = lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"]
    >>> x = jnp.ones((1, 8))
    >>> groups = surgery.channel_groups(fn, params, x)
    >>> model = macs_model(fn, params, groups, x)
    >>> t = bisect_for_macs(model, [None, jnp.arange(100.0), None], groups, 0.5, reference_macs=1600)
    >>> t.macs, int(t.keep[1].sum())
    (800, 50)
  """
  _check_target(reduction, reference_macs, where)

  def evaluate(amount):
    keep = select_channels(
      scores, groups, amount, scope=scope, normalize=normalize, round_to=round_to, allow_collapse=True
    )
    macs = count(keep)
    return keep, macs, 1.0 - macs / int(reference_macs)

  def close(r):
    return abs(r - reduction) <= rtol * reduction

  keep, macs, r = evaluate(0.0)
  best = (0.0, keep, macs, r) if close(r) else None
  if best is None and r > reduction:
    raise ValueError(
      f"{where}: the unpruned tree already reduces the MACs by {r:.4f} > {reduction} against "
      f"reference_macs={reference_macs}. Fix: a larger reduction, or check the reference."
    )
  if best is None:
    keep, macs, r = evaluate(1.0)
    if r < reduction and not close(r):
      raise ValueError(
        f"{where}: removing every prunable channel reduces the MACs by only {r:.4f} < "
        f"{reduction}. Fix: a smaller reduction, or check reference_macs ({reference_macs})."
      )
  lo, hi, nearest = 0.0, 1.0, None
  for _ in range(max_iter if best is None else 0):
    mid = 0.5 * (lo + hi)
    keep, macs, r = evaluate(mid)
    if nearest is None or abs(r - reduction) < abs(nearest[3] - reduction):
      nearest = (mid, keep, macs, r)
    if close(r):
      best = nearest
      break
    lo, hi = (mid, hi) if r < reduction else (lo, mid)
  if best is None:
    raise ValueError(
      f"{where}: no removed fraction within rtol={rtol} of the reduction {reduction} after "
      f"{max_iter} steps; the closest, {nearest[0]:.6f}, reduces by {nearest[3]:.6f}. Fix: a larger "
      "rtol (channels are discrete), or max_iter."
    )
  amount, keep, macs, r = best
  if not allow_collapse:
    select_channels(scores, groups, amount, scope=scope, normalize=normalize, round_to=round_to)  # a collapse
  return MacsTarget(keep, float(amount), int(macs), float(r))

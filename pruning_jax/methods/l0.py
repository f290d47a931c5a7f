"""Hard-concrete L0 gates (Louizos, Welling & Kingma, ICLR 2018), per weight or per channel.

Each gate ``j`` has a log-odds ``log_alpha_j``; training multiplies its weights by a sample

    z = min(1, max(0, sigmoid((log u - log(1 - u) + log_alpha) / beta) (zeta - gamma) + gamma)),

``u ~ U(0, 1)``, stretch ``(gamma, zeta) = (-0.1, 1.1)``, temperature ``beta = 2/3``, and the
loss gains the expected L0 norm

    lambda * sum_j P(z_j != 0) = lambda * sum_j sigmoid(log_alpha_j - beta log(-gamma / zeta)),

added through ``Pruner.penalty`` (its gradient reaches the log-odds alone). Weights and gates train
together. The test-time gate is deterministic, ``min(1, max(0, sigmoid(log_alpha) (zeta - gamma) +
gamma))``: it is exactly 0 for ``log_alpha <= log(-gamma / zeta)``, and may lie strictly inside
(0, 1) otherwise, so ``finalize`` folds it into the weights and the masks are ``gate > 0``.

``structure="channel"`` gates the channel groups a single layer produces (the groups of
:func:`pruning_jax.surgery.channel_groups`, gated after their BatchNorm as in
:func:`pruning_jax.methods.pruning_from_scratch`), so a gate at 0 removes a whole channel from
every member of its group and the runner's ``shrink`` stage removes it physically.

Differences from the reference code (AMLab-Amsterdam/L0_regularization), documented: the penalty
counts gates (``lambda`` per gate, the paper's formula), where the reference weights each
structured gate by the number of weights it controls and divides by the training-set size N
(``weight = lambda_ref / N`` is its per-weight scale); the reference's gate-weighted L2 term is
left to the optimizer's weight decay.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4)}
  >>> pruner = pj.methods.l0_gates(1e-3, droprate_init=0.5)
  >>> state = pruner.init(jax.random.key(0), params)
  >>> state.learned["log_alpha"]["w"].shape, state.learned["log_alpha"]["b"].shape
  ((4, 4), ())
  >>> int(pruner.masks(params, state)["w"].sum())  # log_alpha ~ 0: test gates 0.5, all kept
  16
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax import transforms, validation
from pruning_jax.estimators import hard_concrete, hard_concrete_l0, hard_concrete_mean
from pruning_jax.methods.channel import _full_masks, _groups_of, gated_groups, scale_gated
from pruning_jax.pruner import InitContext, Pruner, PrunerState, no_update
from pruning_jax.tree import PyTree, Static, split_key_like

STRUCTURES = ("weight", "channel")


class ChannelGateBuffers(NamedTuple):
  """Static buffers of the channel variant of :func:`l0_gates`.

  Attributes:
    groups: the channel groups (``tuple[ChannelGroup, ...]``).
    gated: ``(group index, member roles the gate scales)`` per gated group.
  """

  groups: Static
  gated: Static


def _gate_leaves(learned: PyTree) -> list[jax.Array]:
  """The log-odds leaves that are gates (0-d placeholders mark unselected params)."""
  return [a for a in jax.tree.leaves(learned["log_alpha"]) if a.ndim > 0]


def l0_gates(
  weight: float,
  *,
  structure: str = "weight",
  droprate_init: float = 0.5,
  beta: float = 2.0 / 3.0,
  gamma: float = -0.1,
  zeta: float = 1.1,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """Hard-concrete gates with the expected-L0 penalty.

  Args:
    weight: lambda >= 0, per gate: the loss gains ``lambda * sum_j P(z_j != 0)``.
    structure: ``"weight"`` (one gate per weight of the selected leaves) or ``"channel"`` (one
      per channel of each group a single layer produces; needs an :class:`InitContext` with
      ``apply_fn`` and ``example_input``).
    droprate_init: the initial drop rate d: log-odds start at ``N(log(1 - d) - log d, 0.01^2)``
      (the reference: 0.5, or 0.3 for its WideResNets).
    beta: the temperature (2/3).
    gamma: the stretch's lower end (-0.1).
    zeta: the stretch's upper end (1.1).
    selection: the gated leaves of ``structure="weight"`` (default: conv and dense kernels).

  Returns:
    A :class:`pruning_jax.Pruner` with ``learned = {"log_alpha": ...}`` (per weight: the params'
    structure, a 0-d zero on unselected leaves; per channel: ``{str(group index): (C,)}``), its
    ``penalty`` and ``metrics``: ``l0_expected`` (the mean of ``P(z != 0)`` over gates, the
    penalty's density) and ``gate_density`` (the fraction of test-time gates above 0).

  Raises:
    ValueError: lambda < 0, an unknown structure, a drop rate outside (0, 1), ``beta <= 0`` or
      not ``gamma < 0 < 1 < zeta``; at init (channel), a context without ``apply_fn`` and
      ``example_input``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.ones((3, 3))}
    >>> pruner = pj.methods.l0_gates(0.1)
    >>> state = pruner.init(jax.random.key(0), params)
    >>> sample = pruner.apply(params, state, key=jax.random.key(1), train=True)["w"]
    >>> bool(jnp.all((sample >= 0) & (sample <= 1)))
    True
  """
  where = f"l0_gates(structure={structure!r})"
  validation.scalar(weight, f"{where}: weight")
  if weight < 0:
    raise ValueError(f"{where}: weight (lambda) must be >= 0, got {weight}.")
  if structure not in STRUCTURES:
    raise ValueError(f"l0_gates: structure={structure!r} is unknown; expected one of {STRUCTURES}.")
  if not 0.0 < droprate_init < 1.0:
    raise ValueError(f"{where}: droprate_init must be in (0, 1), got {droprate_init}.")
  validation.positive(beta, f"{where}: beta")
  if not gamma < 0 < 1 < zeta:
    raise ValueError(f"{where}: the stretch needs gamma < 0 and zeta > 1, got gamma={gamma}, zeta={zeta}.")
  if structure == "channel" and selection is not None:
    raise ValueError(
      f"{where}: selection= picks leaves for per-weight gates; channel gates go on every group a "
      "single layer produces. Fix: drop selection=, or use structure='weight'."
    )
  loc = math.log(1.0 - droprate_init) - math.log(droprate_init)

  def l0(tree):  # the optimizer's {"params", "learned"} tree
    return weight * sum(
      jnp.sum(hard_concrete_l0(a, beta, gamma, zeta)) for a in _gate_leaves(tree["learned"])
    )

  penalty = transforms.add_penalty(lambda tree, step: l0(tree))

  def sample(key, log_alpha, train):
    if train:
      return hard_concrete(key, log_alpha, beta, gamma, zeta)
    return hard_concrete_mean(log_alpha, gamma, zeta)

  def need_key(key, train):
    if train and key is None:
      raise ValueError(
        f"{where}.apply: training samples the gates and needs key=, a fresh PRNG key per step, "
        "e.g. jax.random.fold_in(key, step)."
      )

  def metrics(params, state):
    del params
    gates = _gate_leaves(state.learned)
    n = sum(a.size for a in gates)
    p = sum(jnp.sum(hard_concrete_l0(a, beta, gamma, zeta)) for a in gates)
    kept = sum(jnp.sum(hard_concrete_mean(a, gamma, zeta) > 0) for a in gates)
    return {"l0_expected": p / n, "gate_density": kept / n}

  if structure == "weight":

    def init(key, params, context: InitContext | None = None):
      del context
      sel = sel_lib.resolve(selection, params)
      keys = split_key_like(key, params)
      log_alpha = jax.tree.map(
        lambda p, on, k: (
          loc + 1e-2 * jax.random.normal(k, jnp.shape(p), jnp.float32) if on else jnp.zeros((), jnp.float32)
        ),
        params,
        sel,
        keys,
      )
      return PrunerState({"log_alpha": log_alpha}, {})

    def gated(params, state, key, train):
      keys = split_key_like(key, params)
      return jax.tree.map(
        lambda p, a, k: p if a.ndim == 0 else p * sample(k, a, train).astype(p.dtype),
        params,
        state.learned["log_alpha"],
        keys,
      )

    def apply(params, state, *, key=None, train=True):
      need_key(key, train)
      return gated(params, state, jax.random.key(0) if key is None else key, train)

    def masks(params, state):
      return jax.tree.map(
        lambda p, a: jnp.asarray(True) if a.ndim == 0 else hard_concrete_mean(a, gamma, zeta) > 0,
        params,
        state.learned["log_alpha"],
      )

    def finalize(params, state):
      return gated(params, state, jax.random.key(0), False), masks(params, state)

    return Pruner(init, apply, no_update, finalize, masks, penalty=penalty, metrics=metrics)

  def init_channels(key, params, context: InitContext | None = None):
    groups = _groups_of(params, context, where)
    gated = gated_groups(groups, where)
    keys = jax.random.split(key, len(gated))
    log_alpha = {
      str(i): loc + 1e-2 * jax.random.normal(k, (groups[i].channels,), jnp.float32)
      for (i, _), k in zip(gated, keys, strict=True)
    }
    return PrunerState({"log_alpha": log_alpha}, ChannelGateBuffers(Static(groups), Static(gated)))

  def scaled(params, state, key, train):
    b = state.buffers
    names = sorted(state.learned["log_alpha"])
    keys = dict(zip(names, jax.random.split(key, len(names)), strict=True))
    gates = {n: sample(keys[n], a, train) for n, a in state.learned["log_alpha"].items()}
    return scale_gated(params, b.groups.value, b.gated.value, gates)

  def apply_channels(params, state, *, key=None, train=True):
    need_key(key, train)
    return scaled(params, state, jax.random.key(0) if key is None else key, train)

  def masks_channels(params, state):
    b = state.buffers
    keep = {
      i: hard_concrete_mean(state.learned["log_alpha"][str(i)], gamma, zeta) > 0 for i, _ in b.gated.value
    }
    return _full_masks(params, b.groups.value, keep)

  def finalize_channels(params, state):
    final = masks_channels(params, state)
    return masks_lib.apply_masks(scaled(params, state, jax.random.key(0), False), final), final

  return Pruner(
    init_channels,
    apply_channels,
    no_update,
    finalize_channels,
    masks_channels,
    penalty=penalty,
    metrics=metrics,
  )


__all__ = ["STRUCTURES", "ChannelGateBuffers", "l0_gates"]

"""Pruning from Scratch (Wang et al., AAAI 2020): channel gates learned on random weights.

An expanded network keeps its random weights frozen; a gate vector ``g``, initialised to 1,
multiplies each gated layer's channels after BatchNorm and before the nonlinearity. Only the
gates train, on

    L = CE + lambda * (mean_j |g_j| - r) ** 2,

the mean over every gate of the network, each step projected back onto ``[0, 1]``. The pruned
structure ranks all gates globally (no per-layer normalisation) and bisects the kept fraction
until ``1 - MACs(pruned) / MACs(standard) = p``, against the standard (not expanded) model; that
structure is then shrunk and trained from scratch (the runner's ``shrink`` + ``reinit`` stage).

Gates are a reparametrization: ``g * BN(x) = (g * gamma) xhat + g * beta``, so ``apply``
scales the BatchNorm scale and bias of each gated group
(:func:`pruning_jax.surgery.scale_channels`) and the model's code is untouched (a layer without
BatchNorm gets ``g * (x W + b)``: its filters and bias are scaled). Which layers are gated
follows the paper from the channel groups: every group one layer produces (every conv-BN-ReLU
of a VGG; the inner channel of a CIFAR ResNet block, after ``bn1``), never a residual stream
several layers produce.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> from pruning_jax import models
  >>> model = models.vgg11(widths=(8, 8, 8, 8, 8, 8, 8, 8))
  >>> x = jnp.ones((1, 32, 32, 3))
  >>> v = model.init(jax.random.key(0), x)
  >>> def fn(p, x):
  ...   return model.apply({**v, "params": p}, x)
  >>> ctx = pj.InitContext(apply_fn=fn, example_input=x)
  >>> pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=pj.count_flops(fn, v["params"], x).macs)
  >>> state = pruner.init(jax.random.key(1), v["params"], ctx)
  >>> len(state.learned["gates"]), float(pruner.metrics(v["params"], state)["gate_mean"])
  (8, 1.0)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax import masks as masks_lib
from pruning_jax import structured, transforms, validation
from pruning_jax.methods.channel import _full_masks, _groups_of, _is_concrete, gated_groups, scale_gated
from pruning_jax.pruner import InitContext, Pruner, PrunerState, no_update
from pruning_jax.tree import Static


class GateBuffers(NamedTuple):
  """What :func:`pruning_from_scratch` keeps besides its gates (all static).

  Attributes:
    groups: the channel groups (``tuple[ChannelGroup, ...]``).
    gated: ``(group index, member roles the gate scales)`` per gated group.
    macs: the network's :class:`pruning_jax.structured.MacsModel`.
    reference_macs: the MACs the reduction is measured against.
  """

  groups: Static
  gated: Static
  macs: Static
  reference_macs: Static


def pruning_from_scratch(
  macs_reduction: float,
  *,
  reference_macs: int,
  weight: float = 0.5,
  target_ratio: float = 0.2,
  rtol: float = 1e-3,
  max_iter: int = 40,
  round_to: int | None = None,
) -> Pruner:
  """Gate learning on frozen random weights, and the MACs-targeted structure the gates give.

  Train it with the weights frozen (``optax.set_to_zero()``) and Adam(0.01) on the learned
  gates, BatchNorm in train mode (the paper's recipe); the pruner adds the penalty and the
  clamp itself. ``finalize`` returns the gated network with the channels outside the structure
  removed (masks over every member), ready for a ``shrink`` + ``reinit`` stage.

  The reference stops its bisection after 10 steps wherever it is; this one bisects until the
  reduction is within ``rtol`` (or raises, naming the closest).

  Args:
    macs_reduction: p, the fraction of the reference's MACs to remove, in (0, 1).
    reference_macs: MACs per example of the standard (not expanded) network, e.g.
      ``pj.count_flops(...).macs``.
    weight: lambda (0.5 on CIFAR).
    target_ratio: r, the mean gate value the penalty pulls towards (0.2 on CIFAR).
    rtol: relative tolerance of the reduction.
    max_iter: bisection steps at most.
    round_to: round each kept width to a multiple of this (None: the paper's exact counts).

  Returns:
    A :class:`pruning_jax.Pruner` with ``learned = {"gates": {group index: (C,) float32}}``,
    its ``penalty``, ``constraint`` (the clamp) and ``metrics`` (``gate_mean``,
    ``gate_nonzero``: the fraction of gates not exactly 0, which the paper's checkpoint rule
    compares with r).

  Raises:
    ValueError: a reduction outside (0, 1), a non-positive reference, lambda < 0 or r outside
      [0, 1]; at init, a context without ``apply_fn`` and ``example_input``, or a network with
      no group a single layer produces.

  Example:
    >>> import jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=10**6)
    >>> pruner.constraint is not None and pruner.penalty is not None
    True
  """
  where = "pruning_from_scratch"
  structured._check_target(macs_reduction, reference_macs, where)
  validation.scalar(weight, f"{where}: weight")
  if weight < 0:
    raise ValueError(f"{where}: weight (lambda) must be >= 0, got {weight}.")

  def over_gates(tree):  # the optimizer's {"params", "learned"} tree: the gates alone
    return {
      "params": jax.tree.map(lambda _: False, tree["params"]),
      "learned": jax.tree.map(lambda _: True, tree["learned"]),
    }

  penalty = transforms.mean_gate_penalty(weight, target_ratio, selection=over_gates)
  clamp = transforms.clip_to_range(0.0, 1.0, selection=over_gates)

  def init(key, params, context: InitContext | None = None):
    del key
    groups = _groups_of(params, context, where)
    gated = gated_groups(groups, where)
    example = jax.tree.map(lambda a: a[:1], context.example_input)
    model = structured.macs_model(context.apply_fn, params, groups, example)
    gates = {str(i): jnp.ones((groups[i].channels,), jnp.float32) for i, _ in gated}
    buffers = GateBuffers(Static(groups), Static(gated), Static(model), Static(int(reference_macs)))
    return PrunerState({"gates": gates}, buffers)

  def gated_params(params, state):
    b = state.buffers
    return scale_gated(params, b.groups.value, b.gated.value, state.learned["gates"])

  def apply(params, state, *, key=None, train=True):
    del key, train
    return gated_params(params, state)

  def masks(params, state):
    b = state.buffers
    keep = {i: state.learned["gates"][str(i)] != 0 for i, _ in b.gated.value}
    return _full_masks(params, b.groups.value, keep)

  def structure(state):
    """The keep vectors of the MACs target: the global top-k of the gates."""
    b = state.buffers
    groups, gates = b.groups.value, state.learned["gates"]
    scores = [gates.get(str(i)) for i in range(len(groups))]
    kw = {"reference_macs": b.reference_macs.value, "scope": "global", "round_to": round_to, "rtol": rtol}
    if _is_concrete(scores):
      return structured.bisect_for_macs(
        b.macs.value, scores, groups, macs_reduction, max_iter=max_iter, where=where, **kw
      ).keep
    return structured.traced_keep_for_macs(b.macs.value, scores, groups, macs_reduction, **kw)[0]

  def finalize(params, state):
    final = _full_masks(params, state.buffers.groups.value, structure(state))
    return masks_lib.apply_masks(gated_params(params, state), final), final

  def metrics(params, state):
    del params
    g = jnp.concatenate([v.reshape(-1) for v in jax.tree.leaves(state.learned["gates"])])
    return {"gate_mean": jnp.mean(jnp.abs(g)), "gate_nonzero": jnp.mean(g != 0)}

  return Pruner(init, apply, no_update, finalize, masks, penalty=penalty, metrics=metrics, constraint=clamp)


__all__ = ["GateBuffers", "pruning_from_scratch"]

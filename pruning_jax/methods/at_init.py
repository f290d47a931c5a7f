"""Pruning at initialization: SNIP, GraSP, SynFlow and random masks, fixed before training.

Each scores the selected weights at ``init`` (SNIP and GraSP on ``InitContext.batches``,
SynFlow on an all-ones input with no data) and keeps exactly ``round((1 - s) N)`` of them with
the toolbox's exact global (or per-layer) selection; the masks then never change. SynFlow
prunes in ``rounds`` steps (100 in the paper), keeping the fraction ``d ** ((e + 1) / rounds)``
of the weights after round ``e`` (``d = 1 - s``) and rescoring the masked network each time.

The reference (Synaptic-Flow) removes ``floor(s N)`` weights and every weight tied at the
threshold; here exactly ``round(s N)`` go, ties broken deterministically (later weights first).
A weight already removed (by ``InitContext.masks`` or an earlier round) stays removed.

``metrics`` reports ``collapsed_layers``: how many selected leaves lost every weight (layer
collapse, which these methods are prone to at extreme sparsity).

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"a": jax.random.normal(jax.random.key(0), (8, 16)), "b": jnp.ones((16, 4))}
  >>> ctx = pj.InitContext(apply_fn=lambda p, x: jax.nn.relu(x @ p["a"]) @ p["b"],
  ...                      example_input=jnp.ones((2, 8)))
  >>> pruner = pj.methods.synflow(0.75, rounds=10)
  >>> state = pruner.init(jax.random.key(1), params, ctx)
  >>> masks = pruner.masks(params, state)
  >>> int(pj.count_kept(masks)[0]), int(pruner.metrics(params, state)["collapsed_layers"])
  (48, 0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax import criteria, validation
from pruning_jax import distributions as dist_lib
from pruning_jax import masks as masks_lib
from pruning_jax import selection as sel_lib
from pruning_jax.pruner import InitContext, Pruner, PrunerState, no_update
from pruning_jax.tree import PyTree

# (key, masked params, context) -> scores (higher = keep)
InitScore = Callable[[jax.Array, PyTree, InitContext], PyTree]


class InitBuffers(NamedTuple):
  """The buffers of the pruning-at-initialization Pruners.

  Attributes:
    masks: bool per selected leaf (the params' structure), 0-d True elsewhere.
  """

  masks: PyTree


def collapsed_layers(masks: PyTree) -> jax.Array:
  """How many leaves of a mask tree lost every weight (layer collapse).

  Args:
    masks: a mask pytree (0-d leaves are unselected and never count).

  Returns:
    (), int32: the number of leaves whose mask is all False.

  Example:
    >>> import jax.numpy as jnp
    >>> int(collapsed_layers({"a": jnp.zeros((2, 2), bool), "b": jnp.ones(3, bool), "c": jnp.asarray(True)}))
    1
  """
  return sum(
    (jnp.logical_not(jnp.any(m)).astype(jnp.int32) for m in jax.tree.leaves(masks) if jnp.ndim(m) > 0),
    jnp.int32(0),
  )


def fixed_mask_pruner(init) -> Pruner:
  """The Pruner of masks chosen by ``init`` (into ``InitBuffers``) and fixed from then on.

  Args:
    init: ``(key, params, context=None) -> PrunerState`` with ``InitBuffers`` as its buffers.

  Returns:
    A :class:`pruning_jax.Pruner` that applies those masks, never changes them, and reports
    ``collapsed_layers``.

  Example:
    >>> import jax.numpy as jnp
    >>> from pruning_jax.pruner import PrunerState
    >>> chosen = InitBuffers({"w": jnp.array([True, False])})
    >>> p = fixed_mask_pruner(lambda key, params, context=None: PrunerState({}, chosen))
    >>> p.finalize({"w": jnp.ones(2)}, p.init(None, None))[0]["w"].tolist()
    [1.0, 0.0]
  """

  def apply(params, state, *, key=None, train=True):
    del key, train
    return masks_lib.apply_masks(params, state.buffers.masks)

  def masks(params, state):
    del params
    return state.buffers.masks

  def finalize(params, state):
    return masks_lib.apply_masks(params, state.buffers.masks), state.buffers.masks

  def metrics(params, state):
    del params
    return {"collapsed_layers": collapsed_layers(state.buffers.masks)}

  return Pruner(init, apply, no_update, finalize, masks, metrics=metrics)


def _need(context: InitContext | None, fields: tuple[str, ...], where: str) -> InitContext:
  def absent(value):
    return value is None or (isinstance(value, (tuple, list)) and not value)

  missing = [f for f in fields if context is None or absent(getattr(context, f))]
  if missing:
    raise ValueError(
      f"{where} scores at init from the InitContext's {', '.join(fields)}; it has no {', '.join(missing)}. "
      "Fix: pass pj.training.init_context(apply_fn, model_state, batches=[batch, ...]) (the runner does)."
    )
  return context


def at_init(
  score: InitScore,
  sparsity: float,
  *,
  rounds: int = 1,
  distribution: str = "global",
  selection: sel_lib.SelectionLike = None,
  x64: bool = False,
  shuffle: bool = False,
  where: str = "at_init",
) -> Pruner:
  """A Pruner that fixes its masks at ``init`` from ``score``, in ``rounds`` exponential steps.

  Args:
    score: ``(key, masked params, context) -> scores`` (higher = keep).
    sparsity: the final removed fraction of the selected weights, in [0, 1).
    rounds: scoring rounds; round ``e`` keeps ``(1 - sparsity) ** ((e + 1) / rounds)``.
    distribution: ``"global"`` (one ranking), ``"uniform"`` or ``"erk"`` (per-leaf fractions
      from :mod:`pruning_jax.distributions`, each leaf ranked on its own).
    selection: the prunable leaves (default: conv and dense kernels).
    x64: score and select in float64 (``jax.enable_x64``), for scores that underflow float32.
    shuffle: permute each leaf's mask at random after selecting it (Frankle et al. 2021's test
      of whether a method chooses more than per-layer densities: same density per layer, the
      positions random).
    where: the name errors start with.

  Returns:
    A :class:`pruning_jax.Pruner` with fixed masks and a ``collapsed_layers`` metric.

  Raises:
    ValueError: a sparsity outside [0, 1), ``rounds < 1``, an unknown distribution, or a
      per-leaf distribution with several rounds.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.arange(1.0, 9.0).reshape(2, 4)}
    >>> pruner = pj.methods.at_init(lambda key, p, ctx: pj.criteria.magnitude(p), 0.5)
    >>> pruner.masks(params, pruner.init(jax.random.key(0), params))["w"].tolist()
    [[False, False, False, False], [True, True, True, True]]
  """
  sparsity = validation.fraction(sparsity, f"{where}: sparsity", what="sparsity (removed fraction)")
  if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
    raise ValueError(f"{where}: rounds must be an int >= 1, got {rounds!r}.")
  if distribution not in dist_lib.DISTRIBUTIONS:
    raise ValueError(
      f"{where}: distribution={distribution!r} is unknown; expected one of {dist_lib.DISTRIBUTIONS}."
    )
  if distribution != "global" and rounds > 1:
    raise ValueError(f"{where}: rounds={rounds} prunes on one global ranking; use distribution='global'.")
  density = 1.0 - sparsity

  def init(key, params, context: InitContext | None = None):
    with jax.enable_x64(True) if x64 else contextlib.nullcontext():
      sel = sel_lib.resolve(selection, params)
      start = masks_lib.init_masks(params, sel)
      if context is not None and context.masks is not None:
        masks_lib.check_masks(params, context.masks)
        start = jax.tree.map(lambda a, b: a & b, start, context.masks)

      def prune_to(masks, removed, k):
        scores = score(k, masks_lib.apply_masks(params, masks), context)
        # removed weights rank below every kept one, so each round's mask lies inside the last
        scores = jax.tree.map(lambda s, m: jnp.where(m, s, -jnp.inf) if jnp.ndim(m) else s, scores, masks)
        if distribution == "global":  # removed may be traced (the rounds' loop)
          fractions, scope = removed, "global"
        else:
          fractions, scope = dist_lib.resolve(distribution, params, removed, selection=sel)
        return masks_lib.masks_from_scores(scores, fractions, selection=sel, scope=scope)

      keys = jax.random.split(key, rounds)

      def body(e, masks):
        removed = 1.0 - density ** ((e + 1.0) / rounds)
        return prune_to(masks, removed, keys[e])

      masks = jax.lax.fori_loop(0, rounds - 1, body, start) if rounds > 1 else start
      masks = prune_to(masks, sparsity, keys[rounds - 1])  # the last round: exactly round(s N)
      if shuffle:
        masks = masks_lib.shuffle_masks(jax.random.fold_in(key, rounds), masks)
    return PrunerState({}, InitBuffers(masks))

  return fixed_mask_pruner(init)


def snip(sparsity: float, *, shuffle: bool = False, selection: sel_lib.SelectionLike = None) -> Pruner:
  """SNIP (Lee et al., ICLR 2019): keep the weights of highest connection sensitivity
  ``|w * g|`` on the context's batches, one-shot, global.

  Args:
    sparsity: removed fraction in [0, 1).
    shuffle: permute each layer's mask at random (see :func:`at_init`).
    selection: the prunable leaves (default: conv and dense kernels).

  Returns:
    A :class:`pruning_jax.Pruner`; ``init`` needs ``InitContext.loss_fn`` and ``batches``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.array([[1.0, 2.0], [3.0, -4.0]])}
    >>> ctx = pj.InitContext(loss_fn=lambda p, b: jnp.sum(b @ p["w"]), batches=[jnp.ones((1, 2))])
    >>> pj.methods.snip(0.5).init(jax.random.key(0), params, ctx).buffers.masks["w"].tolist()
    [[False, False], [True, True]]
  """
  where = "snip"

  def score(key, params, context):
    ctx = _need(context, ("loss_fn", "batches"), where)
    return criteria.connection_sensitivity(ctx.loss_fn, params, ctx.batches)

  return at_init(score, sparsity, selection=selection, shuffle=shuffle, where=where)


def grasp(
  sparsity: float,
  *,
  temperature: float = 200.0,
  shuffle: bool = False,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """GraSP (Wang et al., ICLR 2020): remove the weights whose removal least reduces the gradient
  flow, the highest ``-w * (H g)``, one-shot, global; the logits are divided by
  ``temperature`` (200 in the reference) for ``g`` and ``H g``.

  Args:
    sparsity: removed fraction in [0, 1).
    temperature: the logit temperature; 1 uses the plain loss.
    shuffle: permute each layer's mask at random (see :func:`at_init`).
    selection: the prunable leaves (default: conv and dense kernels).

  Returns:
    A :class:`pruning_jax.Pruner`; ``init`` needs ``InitContext.loss_fn`` (taking
    ``temperature=`` unless it is 1) and ``batches``.

  Raises:
    ValueError: a non-positive temperature.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> pruner = pj.methods.grasp(0.9)
    >>> pruner.metrics is not None
    True
  """
  where = "grasp"
  validation.scalar(temperature, f"{where}: temperature")
  if temperature <= 0:
    raise ValueError(f"{where}: temperature must be positive, got {temperature}.")

  def score(key, params, context):
    ctx = _need(context, ("loss_fn", "batches"), where)
    loss = ctx.loss_fn
    if temperature != 1.0:

      def loss(p, b):
        try:
          return ctx.loss_fn(p, b, temperature=temperature)
        except TypeError as e:
          raise ValueError(
            f"{where}: temperature={temperature} needs an InitContext.loss_fn taking temperature= "
            "(pj.training.init_context builds one). Fix: build the context with init_context, or "
            "pass temperature=1.0."
          ) from e

    return criteria.gradient_flow(loss, params, ctx.batches)

  return at_init(score, sparsity, selection=selection, shuffle=shuffle, where=where)


def synflow(
  sparsity: float,
  *,
  rounds: int = 100,
  x64: bool = True,
  shuffle: bool = False,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """SynFlow (Tanaka et al., NeurIPS 2020): data-free iterative synaptic flow pruning, ``rounds``
  rounds on the exponential schedule, each rescoring ``|theta * dR/dtheta|`` of the masked
  network on an all-ones input.

  Args:
    sparsity: final removed fraction in [0, 1).
    rounds: scoring rounds (100 in the paper).
    x64: compute the flow in float64 (the paper's advice against underflow; the reference uses
      float32).
    shuffle: permute each layer's mask at random (see :func:`at_init`).
    selection: the prunable leaves (default: conv and dense kernels).

  Returns:
    A :class:`pruning_jax.Pruner`; ``init`` needs ``InitContext.apply_fn`` and ``example_input``
    (BatchNorm is in evaluation mode there).

  Example:
    >>> import pruning_jax as pj
    >>> pj.methods.synflow(0.9, rounds=100).zero_removed
    False
  """
  where = "synflow"
  dtype = jnp.float64 if x64 else jnp.float32

  def score(key, params, context):
    ctx = _need(context, ("apply_fn", "example_input"), where)
    return criteria.synaptic_flow(ctx.apply_fn, params, ctx.example_input, dtype=dtype)

  return at_init(score, sparsity, rounds=rounds, selection=selection, x64=x64, shuffle=shuffle, where=where)


def random_pruning(
  sparsity: float, *, distribution: str = "uniform", selection: sel_lib.SelectionLike = None
) -> Pruner:
  """Random masks at init: the same fraction of every layer (``"uniform"``), Erdos-Renyi-Kernel
  per-layer fractions (``"erk"``), or one global random ranking (``"global"``).

  Args:
    sparsity: removed fraction in [0, 1).
    distribution: ``"uniform"``, ``"erk"`` or ``"global"``.
    selection: the prunable leaves (default: conv and dense kernels).

  Returns:
    A :class:`pruning_jax.Pruner` (its key draws the mask).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"a": jnp.ones((10, 10)), "b": jnp.ones((10, 30))}
    >>> m = pj.methods.random_pruning(0.5).init(jax.random.key(0), params).buffers.masks
    >>> int(m["a"].sum()), int(m["b"].sum())
    (50, 150)
  """
  return at_init(
    lambda key, params, context: criteria.random(key, params),
    sparsity,
    distribution=distribution,
    selection=selection,
    where="random_pruning",
  )


__all__ = [
  "InitBuffers",
  "at_init",
  "collapsed_layers",
  "fixed_mask_pruner",
  "grasp",
  "random_pruning",
  "snip",
  "synflow",
]

"""The algorithm interface: a Pruner is a NamedTuple of pure functions (optax style).

A pruning method is everything that differs between methods: which mask variables it keeps,
how the forward pass sees the weights, how masks change without gradients, and how the final
subnetwork is extracted. The training step (:mod:`pruning_jax.training`) only calls these
functions, so it has no method branches.

State is split in two so the trainer knows what to differentiate:

* ``learned``: floating pytree learned by gradient with its own optax transform (scores,
  logits, gates, temperatures, rescales); ``{}`` for methods without learned mask variables.
* ``buffers``: everything ``update`` changes without gradients (masks, counters, accumulators).

The protocol, step by step (``t`` counts optimizer steps from 0):

1. ``state_0 = init(key, params, context)``: masks are valid from here on, so step 0 already
   trains only the weights the method keeps. ``context`` (:class:`InitContext`) carries what a
   data-dependent method needs (a loss, a few batches, an example input, the masks handed over
   by a previous stage); methods that need none ignore it.
2. Step ``t`` runs the forward pass on ``apply(params_t, state_t, key=..., train=True)``, takes
   the gradient of the loss with respect to those weights (dense, also at removed positions),
   and calls ``state_{t+1} = update(params_t, state_t, info)`` with that gradient in
   ``info`` (:class:`StepInfo`).
3. The optimizer then moves only the weights kept by ``masks(params_t, state_{t+1})``: a weight
   removed by this update receives no update from this step, and a weight regrown by it gets
   fresh optimizer moments (:func:`pruning_jax.transforms.reset_regrown`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jnp.arange(1.0, 11.0).reshape(2, 5)}
  >>> pruner = pj.methods.magnitude_pruning(0.5)
  >>> state = pruner.init(jax.random.key(0), params)  # masks valid before any step
  >>> pruner.masks(params, state)["w"].sum().item()
  5
  >>> state = pruner.update(params, state, pj.StepInfo(step=jnp.int32(0)))
  >>> pruner.finalize(params, state)[0]["w"][0].tolist()
  [0.0, 0.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import optax

from pruning_jax.tree import PyTree


class PrunerState(NamedTuple):
  """A Pruner's state, split by how it changes.

  Attributes:
    learned: floating pytree trained by gradient with its own optax transform (scores,
      logits, gates, temperatures, rescales); ``{}`` for methods without learned variables.
      Not Flax's "variables": these belong to the pruning method, not the model.
    buffers: what ``Pruner.update`` changes without gradients (masks, counters).
  """

  learned: PyTree
  buffers: PyTree


class InitContext(NamedTuple):
  """What ``Pruner.init`` may use besides the params; every field is optional.

  Attributes:
    loss_fn: ``(weights, batch) -> scalar`` loss of the network whose forward pass sees
      ``weights`` (in evaluation mode: BatchNorm uses its running statistics), e.g. for SNIP's
      connection sensitivity or GraSP's Hessian-gradient product; the one
      :func:`pruning_jax.training.init_context` builds also takes ``temperature=`` (dividing
      the logits first, as GraSP does).
    apply_fn: ``(weights, inputs) -> outputs`` in evaluation mode (SynFlow's data-free score).
    batches: a few training batches, in the layout ``loss_fn`` takes.
    example_input: one input batch of the model's input shape (shapes and FLOPs).
    masks: the masks handed over by a previous stage (lottery-ticket rounds, fine-tuning after
      a prune), or None: a method continues from them instead of starting dense.
  """

  loss_fn: Callable[[PyTree, Any], jax.Array] | None = None
  apply_fn: Callable[[PyTree, Any], Any] | None = None
  batches: Sequence[Any] = ()
  example_input: Any = None
  masks: PyTree | None = None


class StepInfo(NamedTuple):
  """What ``Pruner.update`` sees of one training step.

  Attributes:
    step: (), int32: the step being taken (0-based); the returned state is that of step + 1.
    key: a fresh PRNG key for this update (independent of the forward pass's samples), e.g.
      for SET's random regrowth; None where the caller has none.
    grads: gradient of the loss with respect to the weights the forward pass saw (the output
      of ``Pruner.apply``), with the params' structure: dense, also at removed positions (RigL
      grows from it), or None where no gradient was taken.
    loss: (), the step's loss, or None.
    batch: the step's batch, or None.
  """

  step: jax.Array
  key: jax.Array | None = None
  grads: PyTree | None = None
  loss: jax.Array | None = None
  batch: Any = None


def _default_labels(learned: PyTree) -> PyTree:
  return jax.tree.map(lambda _: "learned", learned)


def _no_metrics(params: PyTree, state: PrunerState) -> dict[str, jax.Array]:
  del params, state
  return {}


class Pruner(NamedTuple):
  """Pure functions of a pruning method.

  Attributes:
    init: ``(key, params, context=None) -> PrunerState`` with valid masks (see the module
      docstring); ``context`` is an :class:`InitContext` or None.
    apply: ``(params, state, *, key, train) -> params`` the forward pass sees (masked, sampled,
      reparametrized). ``key`` is a fresh PRNG key per step.
    update: ``(params, state, info) -> state``: non-gradient changes (schedules, regrowth),
      called once per step with the params the step started from and a :class:`StepInfo`;
      its masks are the ones the optimizer step respects.
    finalize: ``(params, state) -> (params, masks)``: the deterministic extracted subnetwork:
      params with removed weights at zero (and any rescale folded in) and its bool masks.
    masks: ``(params, state) -> masks``: the current hard masks (for ``keep_masked``, progress
      metrics and accounting); all-kept for methods without a mask.
    labels: ``learned -> pytree of str`` naming the optax transform of each learned variable
      (for ``optax.partition``); every leaf ``"learned"`` by default.
    penalty: an optax transform over the optimizer's ``{"params", "learned"}`` tree that adds
      the method's regulariser gradient before the optimizers (e.g. a budget term), or None.
    metrics: ``(params, state) -> dict`` of scalars the train step reports beside the loss
      (e.g. the soft cost against its budget).
    constraint: an optax transform over ``{"params", "learned"}`` applied after the optimizers
      and ``keep_masked``, projecting the step onto the method's feasible set (gates clamped to
      [0, 1], :func:`pruning_jax.transforms.clip_to_range`), or None.
    zero_removed: True: the optimizer step that removes a weight also sets it to exactly 0, so
      a weight regrown later starts from 0 (RigL, SET); False: a removed weight keeps its last
      value, unseen by the forward pass (a learned mask may bring it back as it was).
    update_due: host-side ``step -> bool``: False where ``update`` returns its state unchanged
      (RigL between its drop-and-grow steps), so a training loop may run a step compiled
      without it (``make_train_step(..., update=False)``) and get identical results; None: it
      may change the state at any step.
  """

  init: Callable[..., PrunerState]
  apply: Callable[..., PyTree]
  update: Callable[[PyTree, PrunerState, StepInfo], PrunerState]
  finalize: Callable[[PyTree, PrunerState], tuple[PyTree, PyTree]]
  masks: Callable[[PyTree, PrunerState], PyTree]
  labels: Callable[[PyTree], PyTree] = _default_labels
  penalty: optax.GradientTransformation | None = None
  metrics: Callable[[PyTree, PrunerState], dict[str, jax.Array]] = _no_metrics
  constraint: optax.GradientTransformation | None = None
  zero_removed: bool = False
  update_due: Callable[[int], bool] | None = None


def no_update(params: PyTree, state: PrunerState, info: StepInfo) -> PrunerState:
  """``Pruner.update`` for methods whose masks change only by gradient (or never).

  Args:
    params: the params (unused).
    state: the pruner state, returned as it is.
    info: the step record (unused).

  Returns:
    ``state``.

  Example:
    >>> import jax.numpy as jnp
    >>> state = PrunerState({}, {"count": jnp.int32(3)})
    >>> no_update({}, state, StepInfo(step=jnp.int32(0))) is state
    True
  """
  del params, info
  return state


__all__ = ["InitContext", "Pruner", "PrunerState", "StepInfo", "no_update"]

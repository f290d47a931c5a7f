"""The algorithm interface: a Pruner is a NamedTuple of pure functions (optax style).

A pruning method is everything that differs between methods: which mask variables it keeps,
how the forward pass sees the weights, how masks change without gradients, and how the final
subnetwork is extracted. The training loop (:mod:`pruning_jax.training`) only calls these
functions, so it has no method branches.

State is split in two so the trainer knows what to differentiate:

* ``variables``: floating pytree learned by gradient with its own optax transform (scores,
  logits, gates, temperatures, rescales); ``{}`` for methods without learned mask variables.
* ``buffers``: everything ``update`` changes without gradients (masks, counters, accumulators).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

from pruning_jax.tree import PyTree


class PrunerState(NamedTuple):
  variables: PyTree  # learned by gradient (their own optax transform)
  buffers: PyTree  # changed by Pruner.update only


class Pruner(NamedTuple):
  """Pure functions of a pruning method.

  Attributes:
    init: ``(key, params) -> PrunerState``.
    apply: ``(params, state, *, key, train) -> params`` the forward pass sees (masked, sampled,
      reparametrized). ``key`` is a fresh PRNG key per step (``fold_in(key, step)``).
    update: ``(params, state, grads, step) -> state``: non-gradient changes (schedules, regrowth),
      called after the optimizer step with the updated params and that step's gradients.
    finalize: ``(params, state) -> (params, masks)``: the deterministic extracted subnetwork:
      params with removed weights at zero (and any rescale folded in) and its bool masks.
    masks: ``(params, state) -> masks``: the current hard masks (for ``keep_masked``, progress
      metrics and accounting); all-kept for methods without a mask.
    labels: ``variables -> pytree of str`` naming the optax transform of each learned variable
      (for ``optax.multi_transform``); every leaf ``"variables"`` by default.
    penalty: an optax transform over the optimizer's ``{"params", "variables"}`` tree that adds
      the method's regulariser gradient before the optimizers (e.g. a budget term), or None.
    metrics: ``(params, state) -> dict`` of scalars the train step reports beside the loss
      (e.g. the soft cost against its budget).
  """

  init: Callable[[jax.Array, PyTree], PrunerState]
  apply: Callable[..., PyTree]
  update: Callable[[PyTree, PrunerState, PyTree, jax.Array], PrunerState]
  finalize: Callable[[PyTree, PrunerState], tuple[PyTree, PyTree]]
  masks: Callable[[PyTree, PrunerState], PyTree]
  labels: Callable[[PyTree], PyTree] = lambda variables: jax.tree.map(lambda _: "variables", variables)
  penalty: optax.GradientTransformation | None = None
  metrics: Callable[[PyTree, PrunerState], dict[str, jax.Array]] = lambda params, state: {}


def no_update(params: PyTree, state: PrunerState, grads: PyTree, step: Any) -> PrunerState:
  """``Pruner.update`` for methods whose masks change only by gradient (or never)."""
  del params, grads, step
  return state

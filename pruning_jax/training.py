"""Pure builders of jitted train and eval steps for any (model, Pruner, optax transform).

The optimizer sees one tree ``{"params": params, "variables": pruner_state.variables}``:
weights and learned mask variables get separate transforms through ``optax.multi_transform``
(frozen weights: ``optax.set_to_zero()``), and ``keep_masked`` runs last with the pruner's
current masks, so pruned weights never move. Nothing here branches on the method.

Example:
  >>> import flax.linen as nn, jax, jax.numpy as jnp, optax
  >>> import pruning_jax as pj
  >>> model = nn.Dense(3)
  >>> x = jnp.ones((4, 5)); y = jnp.array([0, 1, 2, 0])
  >>> pruner = pj.methods.magnitude(0.5)
  >>> tx = pj.training.optimizer(optax.sgd(0.1), pruner=pruner)
  >>> state = pj.training.init_train_state(jax.random.key(0), model.init(jax.random.key(1), x), pruner, tx)
  >>> step = jax.jit(pj.training.make_train_step(pj.training.linen_apply(model), pruner, tx))
  >>> state, metrics = step(state, {"image": x, "label": y})
  >>> sorted(metrics)
  ['accuracy', 'loss', 'sparsity']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pruning_jax import masks as masks_lib
from pruning_jax.pruner import Pruner, PrunerState
from pruning_jax.transforms import keep_masked
from pruning_jax.tree import PyTree

# (params, model_state, x, *, train) -> (logits, new model_state)
ApplyFn = Callable[..., tuple[jax.Array, PyTree]]


class TrainState(NamedTuple):
  params: PyTree  # model weights (frozen or trained, as the optimizer says)
  pruner_state: PrunerState  # learned mask variables + buffers
  opt_state: optax.OptState  # over {"params", "variables"}
  model_state: PyTree  # non-trained collections, e.g. {"batch_stats": ...}; {} without
  step: jax.Array  # (), int32
  key: jax.Array  # PRNG key; step t uses fold_in(key, t)


def linen_apply(model: Any) -> ApplyFn:
  """``ApplyFn`` of a Flax linen module whose ``__call__`` takes ``train`` when it has state."""

  def apply(params, model_state, x, *, train):
    variables = {"params": params, **model_state}
    if not model_state:
      return model.apply(variables, x), model_state
    if train:
      return model.apply(variables, x, train=True, mutable=list(model_state))
    return model.apply(variables, x, train=False), model_state

  return apply


def optimizer(
  weights: optax.GradientTransformation,
  variables: optax.GradientTransformation | Mapping[str, optax.GradientTransformation] | None = None,
  *,
  pruner: Pruner,
) -> optax.GradientTransformationExtraArgs:
  """The optimizer over ``{"params", "variables"}``: the pruner's penalty (if any), then the
  per-label transforms, then ``keep_masked``.

  Args:
    weights: transform of the model weights (``optax.set_to_zero()`` to freeze them).
    variables: transform of the learned mask variables, or a mapping from the pruner's labels
      (``Pruner.labels``) to transforms; None freezes them.
    pruner: the method (for its labels).
  """
  txs: dict[str, optax.GradientTransformation] = {"weights": weights}
  if isinstance(variables, Mapping):
    txs.update(variables)
  else:
    txs["variables"] = variables if variables is not None else optax.set_to_zero()
  if "weights" in txs and txs["weights"] is not weights:
    raise ValueError("'weights' is reserved for the model weights' transform; rename that label.")

  def labels(tree):
    var_labels = pruner.labels(tree["variables"])
    missing = sorted(set(jax.tree.leaves(var_labels)) - set(txs))
    if missing:
      raise ValueError(
        f"the pruner labels variables {missing} but the optimizer has transforms only for "
        f"{sorted(txs)}. Fix: pass variables={{label: transform}} covering every label, e.g. "
        f"{{'variables': optax.sgd(...), {missing[0]!r}: optax.sgd(...)}}."
      )
    return {"params": jax.tree.map(lambda _: "weights", tree["params"]), "variables": var_labels}

  steps = [optax.multi_transform(txs, labels), keep_masked()]
  # the method's regulariser sees the whole tree (its cost may couple weights and variables)
  return optax.chain(*([pruner.penalty] if pruner.penalty is not None else []), *steps)


def init_train_state(
  key: jax.Array, model_variables: Mapping[str, PyTree], pruner: Pruner, tx: optax.GradientTransformation
) -> TrainState:
  """The initial state from ``model.init(...)`` output (``{"params": ..., other collections}``)."""
  if "params" not in model_variables:
    raise ValueError(
      f"model_variables must hold a 'params' collection, found {sorted(model_variables)}. Fix: pass "
      "the dict returned by model.init(key, x)."
    )
  params = model_variables["params"]
  model_state = {k: v for k, v in model_variables.items() if k != "params"}
  k_pruner, k_run = jax.random.split(key)
  pstate = pruner.init(k_pruner, params)
  opt_state = tx.init({"params": params, "variables": pstate.variables})
  return TrainState(params, pstate, opt_state, model_state, jnp.zeros((), jnp.int32), k_run)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _kept_all(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda _: jnp.asarray(True), tree)


def _sparsity(masks: PyTree) -> jax.Array:
  if all(jnp.ndim(m) == 0 for m in jax.tree.leaves(masks)):
    return jnp.zeros((), jnp.float32)
  return masks_lib.sparsity(masks).astype(jnp.float32)


def make_train_step(
  apply_fn: ApplyFn,
  pruner: Pruner,
  tx: optax.GradientTransformation,
  loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = cross_entropy,
) -> Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
  """``(state, batch) -> (state, metrics)``, pure (wrap it in ``jax.jit``).

  ``batch`` holds ``"image"`` and ``"label"``. The step's key is ``fold_in(state.key, step)``,
  handed to ``pruner.apply`` (fresh Gumbel/Bernoulli samples every step).
  """

  def step(state: TrainState, batch):
    key = jax.random.fold_in(state.key, state.step)
    pstate = state.pruner_state

    def objective(params, variables):
      seen = pruner.apply(params, pstate._replace(variables=variables), key=key, train=True)
      logits, model_state = apply_fn(seen, state.model_state, batch["image"], train=True)
      return loss_fn(logits, batch["label"]), (logits, model_state)

    (loss, (logits, model_state)), (g_params, g_vars) = jax.value_and_grad(
      objective, argnums=(0, 1), has_aux=True
    )(state.params, pstate.variables)
    tree = {"params": state.params, "variables": pstate.variables}
    masks = {"params": pruner.masks(state.params, pstate), "variables": _kept_all(pstate.variables)}
    updates, opt_state = tx.update(
      {"params": g_params, "variables": g_vars}, state.opt_state, tree, masks=masks
    )
    new = optax.apply_updates(tree, updates)
    pstate = pruner.update(new["params"], pstate._replace(variables=new["variables"]), g_params, state.step)
    metrics = {
      "loss": loss,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
      "sparsity": _sparsity(pruner.masks(new["params"], pstate)),
      **pruner.metrics(new["params"], pstate),
    }
    return TrainState(new["params"], pstate, opt_state, model_state, state.step + 1, state.key), metrics

  return step


def evaluated_sparsity(pruner: Pruner, state: TrainState, *, finalized: bool = False) -> jax.Array:
  """Sparsity of the network that ``make_eval_step(..., finalized=finalized)`` evaluates: the
  extracted subnetwork's masks, or the training-time masks (for methods such as reparam, which
  remove nothing before ``finalize``, the two differ)."""
  if finalized:
    _, masks = pruner.finalize(state.params, state.pruner_state)
  else:
    masks = pruner.masks(state.params, state.pruner_state)
  return _sparsity(masks)


def make_eval_step(
  apply_fn: ApplyFn,
  pruner: Pruner,
  *,
  finalized: bool = False,
) -> Callable[..., dict[str, jax.Array]]:
  """``(state, batch, key) -> sums`` of loss, correct predictions and examples.

  ``batch`` may carry ``"valid"`` (bool per example) for padded final batches. With
  ``finalized=True`` the deterministic extracted subnetwork (``pruner.finalize``) is evaluated,
  otherwise the forward pass the method trains with (``train=False``; stochastic methods sample
  with ``key``).
  """

  def step(state: TrainState, batch, key):
    if finalized:
      params, _ = pruner.finalize(state.params, state.pruner_state)
    else:
      params = pruner.apply(state.params, state.pruner_state, key=key, train=False)
    logits, _ = apply_fn(params, state.model_state, batch["image"], train=False)
    valid = batch.get("valid", jnp.ones(logits.shape[0], bool))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]) & valid
    return {
      "loss_sum": jnp.sum(jnp.where(valid, losses, 0.0)),
      "correct": jnp.sum(correct, dtype=jnp.int32),
      "count": jnp.sum(valid, dtype=jnp.int32),
    }

  return step


def data_parallel(mesh: jax.sharding.Mesh, axis: str = "data"):
  """``(replicate, shard_batch)`` for data-parallel training on ``mesh``: the train state (params,
  masks, pruner and optimizer state) is replicated, the batch is split along ``axis``; the jitted
  step then runs on every device and XLA inserts the gradient all-reduce."""
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))

  def replicate(tree):
    return jax.device_put(tree, replicated)

  def shard_batch(batch):
    return jax.device_put(batch, split)

  return replicate, shard_batch

"""Pure builders of jitted train and eval steps for any (model, Pruner, optax transform, task).

The optimizer sees one tree ``{"params": params, "learned": pruner_state.learned}``:
weights and learned mask variables get separate transforms through ``optax.partition``
(frozen weights: ``optax.set_to_zero()``), the weights' transform restarts the moments of
regrown weights (``reset_regrown``), and ``keep_masked`` runs last with the pruner's masks, so
removed weights never move. Nothing here branches on the method.

A :class:`Task` says what a batch is and what is minimised: ``classification()`` reads
``batch["image"]`` and ``batch["label"]``; any other loop (a language model, a regression)
passes its own ``Task``.

Example:
  >>> import flax.linen as nn, jax, jax.numpy as jnp, optax
  >>> import pruning_jax as pj
  >>> model = nn.Dense(3)
  >>> x = jnp.ones((4, 5)); y = jnp.array([0, 1, 2, 0])
  >>> pruner = pj.methods.magnitude_pruning(0.5)
  >>> tx = pj.training.optimizer(optax.sgd(0.1), pruner=pruner)
  >>> state = pj.training.init_train_state(jax.random.key(0), model.init(jax.random.key(1), x), pruner, tx)
  >>> step = jax.jit(pj.training.make_train_step(pj.training.linen_apply(model), pruner, tx))
  >>> state, metrics = step(state, {"image": x, "label": y})
  >>> sorted(metrics)
  ['accuracy', 'loss', 'sparsity']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pruning_jax import masks as masks_lib
from pruning_jax.pruner import InitContext, Pruner, PrunerState, StepInfo
from pruning_jax.transforms import keep_masked, reset_regrown
from pruning_jax.tree import PyTree

# (params, model_state, x, *, train) -> (outputs, new model_state)
ApplyFn = Callable[..., tuple[Any, PyTree]]
Batch = Any


class TrainState(NamedTuple):
  """Everything one training step reads and returns.

  Attributes:
    params: model weights (frozen or trained, as the optimizer says).
    pruner_state: the :class:`pruning_jax.PrunerState` (learned mask variables + buffers).
    opt_state: the optimizer state over ``{"params", "learned"}``.
    model_state: non-trained collections, e.g. ``{"batch_stats": ...}``; ``{}`` without.
    step: (), int32.
    key: PRNG key; step t uses ``fold_in(key, t)``.
  """

  params: PyTree
  pruner_state: PrunerState
  opt_state: optax.OptState
  model_state: PyTree
  step: jax.Array
  key: jax.Array


class Task(NamedTuple):
  """What a batch holds and what the step minimises.

  Attributes:
    inputs: ``batch -> x`` handed to the model.
    per_example: ``(outputs, batch) -> {name: (B,) array}``; the train step minimises the
      mean of ``"loss"`` and reports the mean of every entry; the eval step sums them.
    valid: ``batch -> (B,) bool`` or None: which examples count (padded final eval batches).
  """

  inputs: Callable[[Batch], Any]
  per_example: Callable[[Any, Batch], dict[str, jax.Array]]
  valid: Callable[[Batch], jax.Array | None] = lambda batch: None


def classification(image: str = "image", label: str = "label", valid: str = "valid") -> Task:
  """Softmax cross-entropy on integer labels, with accuracy; batches are mappings.

  Args:
    image: the batch key of the inputs.
    label: the batch key of the integer labels.
    valid: the optional batch key of a per-example bool (padded evaluation batches).

  Returns:
    A :class:`Task`.

  Example:
    >>> import jax.numpy as jnp
    >>> task = classification()
    >>> out = task.per_example(jnp.array([[2.0, 0.0], [0.0, 2.0]]), {"label": jnp.array([0, 0])})
    >>> out["accuracy"].tolist()
    [1.0, 0.0]
  """

  def per_example(logits, batch):
    labels = batch[label]
    return {
      "loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
      "accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32),
    }

  def is_valid(batch):
    return batch.get(valid) if isinstance(batch, Mapping) else None

  return Task(lambda batch: batch[image], per_example, is_valid)


def linen_apply(model: Any) -> ApplyFn:
  """``ApplyFn`` of a Flax linen module whose ``__call__`` takes ``train`` when it has state.

  Args:
    model: a ``flax.linen.Module``; with non-param collections (``batch_stats``) its
      ``__call__`` must accept ``train=``.

  Returns:
    ``(params, model_state, x, *, train) -> (outputs, model_state)``.

  Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> model = nn.Dense(2)
    >>> params = model.init(jax.random.key(0), jnp.ones((1, 3)))["params"]
    >>> linen_apply(model)(params, {}, jnp.ones((1, 3)), train=True)[0].shape
    (1, 2)
  """

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
  learned: optax.GradientTransformation | Mapping[str, optax.GradientTransformation] | None = None,
  *,
  pruner: Pruner,
) -> optax.GradientTransformationExtraArgs:
  """The optimizer over ``{"params", "learned"}``: the pruner's penalty (if any), then the
  per-label transforms (the weights' one restarting regrown weights' moments), then
  ``keep_masked``, then the pruner's constraint (if any).

  Args:
    weights: transform of the model weights (``optax.set_to_zero()`` to freeze them).
    learned: transform of the learned mask variables, or a mapping from the pruner's labels
      (``Pruner.labels``) to transforms; None freezes them.
    pruner: the method (its labels, penalty and ``zero_removed``).

  Returns:
    A transform whose ``update`` takes ``masks=`` and ``grown=`` (trees over
    ``{"params", "learned"}``), as :func:`make_train_step` passes them.

  Raises:
    ValueError: a mapping that uses the reserved label ``"weights"`` or misses a label the
      pruner uses (at ``init``).

  Example:
    >>> import optax
    >>> import pruning_jax as pj
    >>> pruner = pj.methods.aslp(smart_rescale=True)
    >>> tx = optimizer(optax.set_to_zero(), {"learned": optax.sgd(50.0), "rescale": optax.sgd(1e-3)},
    ...                pruner=pruner)
  """
  txs: dict[str, optax.GradientTransformation] = {"weights": reset_regrown(weights)}
  if isinstance(learned, Mapping):
    if "weights" in learned:
      raise ValueError("'weights' is reserved for the model weights' transform; rename that label.")
    txs.update(learned)
  else:
    txs["learned"] = learned if learned is not None else optax.set_to_zero()

  def labels(tree):
    var_labels = pruner.labels(tree["learned"])
    missing = sorted(set(jax.tree.leaves(var_labels)) - set(txs))
    if missing:
      raise ValueError(
        f"the pruner labels learned variables {missing} but the optimizer has transforms only for "
        f"{sorted(txs)}. Fix: pass learned={{label: transform}} covering every label, e.g. "
        f"{{'learned': optax.sgd(...), {missing[0]!r}: optax.sgd(...)}}."
      )
    return {"params": jax.tree.map(lambda _: "weights", tree["params"]), "learned": var_labels}

  steps = [
    optax.partition(txs, labels, mask_compatible_extra_args=True),
    keep_masked(zero_removed=pruner.zero_removed),
  ]
  # the method's regulariser sees the whole tree (its cost may couple weights and variables);
  # its constraint sees the finished step, so the params land inside the feasible set
  penalty = [pruner.penalty] if pruner.penalty is not None else []
  constraint = [pruner.constraint] if pruner.constraint is not None else []
  return optax.chain(*penalty, *steps, *constraint)


def init_train_state(
  key: jax.Array,
  model_variables: Mapping[str, PyTree],
  pruner: Pruner,
  tx: optax.GradientTransformation,
  context: InitContext | None = None,
) -> TrainState:
  """The initial state from ``model.init(...)`` output (``{"params": ..., other collections}``).

  Args:
    key: PRNG key of the run (the pruner's init key and the per-step keys derive from it).
    model_variables: ``{"params": ..., **other collections}``.
    pruner: the method; its ``init`` gets ``context`` (see :func:`init_context`).
    tx: the optimizer (e.g. :func:`optimizer`).
    context: what data-dependent methods need at init, or None.

  Returns:
    A :class:`TrainState` at step 0 whose masks are already the method's.

  Raises:
    ValueError: ``model_variables`` without a ``"params"`` collection.

  Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp, optax
    >>> import pruning_jax as pj
    >>> v = nn.Dense(4).init(jax.random.key(0), jnp.ones((1, 8)))
    >>> pruner = pj.methods.magnitude_pruning(0.75)
    >>> s = init_train_state(jax.random.key(1), v, pruner, optimizer(optax.sgd(0.1), pruner=pruner))
    >>> int(pj.count_kept(pruner.masks(s.params, s.pruner_state))[0])
    8
  """
  if "params" not in model_variables:
    raise ValueError(
      f"model_variables must hold a 'params' collection, found {sorted(model_variables)}. Fix: pass "
      "the dict returned by model.init(key, x)."
    )
  params = model_variables["params"]
  model_state = {k: v for k, v in model_variables.items() if k != "params"}
  k_pruner, k_run = jax.random.split(key)
  pstate = pruner.init(k_pruner, params, context)
  opt_state = tx.init({"params": params, "learned": pstate.learned})
  return TrainState(params, pstate, opt_state, model_state, jnp.zeros((), jnp.int32), k_run)


def init_context(
  apply_fn: ApplyFn,
  model_state: PyTree,
  task: Task | None = None,
  batches: Sequence[Batch] = (),
  *,
  masks: PyTree | None = None,
) -> InitContext:
  """The :class:`InitContext` of a model: its evaluation-mode loss and forward function.

  Args:
    apply_fn: the model's :data:`ApplyFn`.
    model_state: its non-param collections (used in evaluation mode, never updated).
    task: what a batch is (default :func:`classification`).
    batches: a few training batches for data-dependent scores.
    masks: masks handed over from a previous stage, or None.

  Returns:
    An :class:`InitContext` whose ``loss_fn(weights, batch, temperature=1.0)`` is the task's
    mean loss (on the outputs divided by ``temperature``).

  Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> model = nn.Dense(2)
    >>> params = model.init(jax.random.key(0), jnp.ones((1, 3)))["params"]
    >>> batch = {"image": jnp.ones((4, 3)), "label": jnp.zeros(4, jnp.int32)}
    >>> ctx = init_context(linen_apply(model), {}, batches=[batch])
    >>> ctx.loss_fn(params, batch).shape, ctx.example_input.shape
    ((), (4, 3))
  """
  task = task or classification()

  def forward(weights, x):
    return apply_fn(weights, model_state, x, train=False)[0]

  def loss_fn(weights, batch, temperature=1.0):
    # a temperature divides the outputs (logits) first: GraSP scores on tempered logits
    outputs = jax.tree.map(lambda o: o / temperature, forward(weights, task.inputs(batch)))
    return _mean(task.per_example(outputs, batch)["loss"], task.valid(batch))

  example = task.inputs(batches[0]) if batches else None
  return InitContext(loss_fn, forward, tuple(batches), example, masks)


def _mean(x: jax.Array, valid: jax.Array | None) -> jax.Array:
  if valid is None:
    return jnp.mean(x)
  return jnp.sum(jnp.where(valid, x, 0)) / jnp.maximum(jnp.sum(valid), 1)


def _kept_all(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda _: jnp.asarray(True), tree)


def _sparsity(masks: PyTree) -> jax.Array:
  if all(jnp.ndim(m) == 0 for m in jax.tree.leaves(masks)):
    return jnp.zeros((), jnp.float32)
  return masks_lib.sparsity(masks).astype(jnp.float32)


def _grown(new: PyTree, old: PyTree) -> PyTree:
  return jax.tree.map(lambda n, o: jnp.logical_and(n, jnp.logical_not(o)), new, old)


def make_train_step(
  apply_fn: ApplyFn,
  pruner: Pruner,
  tx: optax.GradientTransformation,
  task: Task | None = None,
  *,
  update: bool = True,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """``(state, batch) -> (state, metrics)``, pure (wrap it in ``jax.jit``).

  One step: the forward pass on ``pruner.apply(params, ...)`` with the key
  ``fold_in(state.key, step)``; the gradient with respect to the weights it saw (dense at
  removed positions) is carried back to the params and the mask variables through ``apply``'s
  VJP; ``pruner.update`` gets a :class:`StepInfo`; the optimizer moves only what the updated
  masks keep and restarts the moments of what they regrew.

  Args:
    apply_fn: ``(params, model_state, x, *, train) -> (outputs, model_state)``.
    pruner: the method.
    tx: the optimizer over ``{"params", "learned"}`` (:func:`optimizer`).
    task: batch layout and loss (default :func:`classification`).
    update: False builds the step without ``pruner.update``, for the steps where
      ``pruner.update_due(step)`` is False (identical results there; e.g. RigL's update runs
      under ``lax.cond``, whose branch reads every gradient and costs the ordinary steps of a
      CPU ~10%; :func:`train_step_for` picks the program per step).

  Returns:
    The step function. Its metrics: the mean of every per-example entry of the task, the
    sparsity of the masks the step trained with, and the pruner's metrics.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import pruning_jax as pj
    >>> def apply(p, s, x, *, train): return x @ p["w"], s
    >>> task = Task(lambda b: b["x"], lambda out, b: {"loss": jnp.sum((out - b["y"]) ** 2, -1)})
    >>> pruner = pj.methods.magnitude_pruning(0.5)
    >>> tx = optimizer(optax.sgd(0.1), pruner=pruner)
    >>> params = {"w": jnp.arange(1.0, 5.0).reshape(2, 2)}
    >>> state = init_train_state(jax.random.key(0), {"params": params}, pruner, tx)
    >>> state, m = jax.jit(make_train_step(apply, pruner, tx, task))(
    ...   state, {"x": jnp.ones((3, 2)), "y": jnp.zeros((3, 2))})
    >>> state.params["w"][0].tolist()  # the removed half never moves
    [1.0, 2.0]
  """
  task = task or classification()

  def step(state: TrainState, batch):
    key = jax.random.fold_in(state.key, state.step)
    k_apply, k_update = jax.random.split(key)
    pstate = state.pruner_state
    masks_before = pruner.masks(state.params, pstate)

    def see(params, learned):
      return pruner.apply(params, pstate._replace(learned=learned), key=k_apply, train=True)

    seen, see_vjp = jax.vjp(see, state.params, pstate.learned)

    def objective(weights):
      outputs, model_state = apply_fn(weights, state.model_state, task.inputs(batch), train=True)
      per_example = task.per_example(outputs, batch)
      valid = task.valid(batch)
      means = {k: _mean(v, valid) for k, v in per_example.items()}
      return means["loss"], (means, model_state)

    (loss, (means, model_state)), g_seen = jax.value_and_grad(objective, has_aux=True)(seen)
    g_params, g_vars = see_vjp(g_seen)
    if update:
      pstate = pruner.update(state.params, pstate, StepInfo(state.step, k_update, g_seen, loss, batch))
    masks_after = pruner.masks(state.params, pstate)
    tree = {"params": state.params, "learned": pstate.learned}
    kept_vars = _kept_all(pstate.learned)
    updates, opt_state = tx.update(
      {"params": g_params, "learned": g_vars},
      state.opt_state,
      tree,
      masks={"params": masks_after, "learned": kept_vars},
      grown={
        "params": _grown(masks_after, masks_before),
        "learned": jax.tree.map(jnp.logical_not, kept_vars),
      },
    )
    new = optax.apply_updates(tree, updates)
    pstate = pstate._replace(learned=new["learned"])
    metrics = {
      **means,
      "sparsity": _sparsity(masks_before),
      **pruner.metrics(new["params"], pstate),
    }
    return TrainState(new["params"], pstate, opt_state, model_state, state.step + 1, state.key), metrics

  return step


def train_step_for(
  apply_fn: ApplyFn,
  pruner: Pruner,
  tx: optax.GradientTransformation,
  task: Task | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """A jitted train step that runs the program without ``pruner.update`` on the steps where
  ``pruner.update_due`` says the update changes nothing (one host-side integer test per step),
  and the full one elsewhere; with ``update_due=None``, just the full program.

  Args:
    apply_fn: ``(params, model_state, x, *, train) -> (outputs, model_state)``.
    pruner: the method.
    tx: the optimizer (:func:`optimizer`).
    task: batch layout and loss.

  Returns:
    ``(state, batch, t=None) -> (state, metrics)``, giving exactly what
    ``jax.jit(make_train_step(...))`` gives; ``t`` is ``state.step`` as a host int, if the loop
    counts steps itself (else it is read from the state, which waits for the previous step).

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import pruning_jax as pj
    >>> def apply(p, s, x, *, train): return x @ p["w"], s
    >>> pruner = pj.methods.rigl(0.5, end_step=10, every_steps=5, distribution="uniform")
    >>> tx = optimizer(optax.sgd(0.1), pruner=pruner)
    >>> state = init_train_state(jax.random.key(0), {"params": {"w": jnp.ones((4, 2))}}, pruner, tx)
    >>> step = train_step_for(apply, pruner, tx)
    >>> batch = {"image": jnp.ones((3, 4)), "label": jnp.zeros(3, jnp.int32)}
    >>> for _ in range(5):
    ...   state, m = step(state, batch)
    >>> int(m["updates"])  # the fifth step (t = 4) ran the update
    1
  """
  full = jax.jit(make_train_step(apply_fn, pruner, tx, task))
  if pruner.update_due is None:
    return lambda state, batch, t=None: full(state, batch)
  skip = jax.jit(make_train_step(apply_fn, pruner, tx, task, update=False))  # compiled on first use

  def step(state: TrainState, batch, t: int | None = None):
    t = int(state.step) if t is None else t  # a host counter avoids waiting for the last step
    return (full if pruner.update_due(t) else skip)(state, batch)

  return step


def evaluated_sparsity(pruner: Pruner, state: TrainState, *, finalized: bool = False) -> jax.Array:
  """Sparsity of the network that ``make_eval_step(..., finalized=finalized)`` evaluates.

  Args:
    pruner: the method.
    state: the train state.
    finalized: the extracted subnetwork's masks, or the training-time masks (for methods such
      as reparam, which remove nothing before ``finalize``, the two differ).

  Returns:
    (), float32: removed fraction of the prunable weights.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import pruning_jax as pj
    >>> pruner = pj.methods.magnitude_pruning(0.5)
    >>> tx = optimizer(optax.sgd(0.1), pruner=pruner)
    >>> s = init_train_state(jax.random.key(0), {"params": {"w": jnp.ones((2, 2))}}, pruner, tx)
    >>> float(evaluated_sparsity(pruner, s))
    0.5
  """
  if finalized:
    _, masks = pruner.finalize(state.params, state.pruner_state)
  else:
    masks = pruner.masks(state.params, state.pruner_state)
  return _sparsity(masks)


def make_eval_step(
  apply_fn: ApplyFn,
  pruner: Pruner,
  task: Task | None = None,
  *,
  finalized: bool = False,
) -> Callable[..., dict[str, jax.Array]]:
  """``(state, batch, key) -> sums`` of every per-example entry of the task, and ``count``.

  Args:
    apply_fn: the model's :data:`ApplyFn` (called with ``train=False``).
    pruner: the method.
    task: batch layout and loss (default :func:`classification`); ``task.valid`` excludes
      padded examples.
    finalized: evaluate the deterministic extracted subnetwork (``pruner.finalize``), or the
      forward pass the method trains with (``train=False``; stochastic methods sample with
      ``key``).

  Returns:
    The eval step; divide each sum by ``count`` for the mean.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import pruning_jax as pj
    >>> def apply(p, s, x, *, train): return x @ p["w"], s
    >>> pruner = pj.methods.dense()
    >>> s = init_train_state(jax.random.key(0), {"params": {"w": jnp.eye(2)}}, pruner,
    ...                      optimizer(optax.sgd(0.1), pruner=pruner))
    >>> batch = {"image": jnp.eye(2), "label": jnp.array([0, 0]), "valid": jnp.array([True, False])}
    >>> out = make_eval_step(apply, pruner)(s, batch, jax.random.key(1))
    >>> int(out["count"]), float(out["accuracy"])
    (1, 1.0)
  """
  task = task or classification()

  def step(state: TrainState, batch, key):
    if finalized:
      params, _ = pruner.finalize(state.params, state.pruner_state)
    else:
      params = pruner.apply(state.params, state.pruner_state, key=key, train=False)
    outputs, _ = apply_fn(params, state.model_state, task.inputs(batch), train=False)
    per_example = task.per_example(outputs, batch)
    n = jax.tree.leaves(per_example)[0].shape[0]
    valid = task.valid(batch)
    valid = jnp.ones(n, bool) if valid is None else valid
    sums = {k: jnp.sum(jnp.where(valid, v, 0).astype(jnp.float32)) for k, v in per_example.items()}
    return {**sums, "count": jnp.sum(valid, dtype=jnp.int32)}

  return step


def data_parallel(mesh: jax.sharding.Mesh, axis: str = "data"):
  """``(replicate, shard_batch)`` for data-parallel training on ``mesh``.

  The train state (params, masks, pruner and optimizer state) is replicated, the batch is split
  along ``axis``; the jitted step then runs on every device and XLA inserts the gradient
  all-reduce.

  Args:
    mesh: the device mesh.
    axis: the mesh axis the batch is split over.

  Returns:
    ``(replicate(tree), shard_batch(batch))``, each a ``jax.device_put``.

  Example:
    >>> import jax, numpy as np
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> replicate, shard_batch = data_parallel(mesh)
    >>> shard_batch(np.zeros((4, 2))).sharding.spec[0]
    'data'
  """
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))

  def replicate(tree):
    return jax.device_put(tree, replicated)

  def shard_batch(batch):
    return jax.device_put(batch, split)

  return replicate, shard_batch


class Sharded(NamedTuple):
  """A sharded train state and the step that keeps it so (:func:`sharded`).

  Attributes:
    state: the initial :class:`TrainState`, each leaf on its sharding.
    shardings: a ``NamedSharding`` per leaf of ``state`` (a ``TrainState`` of shardings).
    step: the jitted ``(state, batch) -> (state, metrics)`` with those in- and out-shardings.
  """

  state: TrainState
  shardings: TrainState  # a NamedSharding per leaf of ``state``
  step: Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]


def sharded(
  key: jax.Array,
  model_variables: Mapping[str, PyTree],
  pruner: Pruner,
  tx: optax.GradientTransformation,
  apply_fn: ApplyFn,
  param_shardings: PyTree,
  batch_sharding: jax.sharding.Sharding,
  *,
  context: InitContext | None = None,
  task: Task | None = None,
  update: bool = True,
) -> Sharded:
  """Fully sharded training: the initial state and a jitted step, every sharding derived from
  the params' own (:func:`pruning_jax.sharding.shardings_like`).

  Masks, scores, logits, buffers and optimizer moments of a weight take that weight's
  sharding; counters and per-layer scalars are replicated. The state is built inside ``jit``
  directly onto those shardings (no replicated copy first), and the step's inputs and outputs
  keep them, so FSDP or FSDP x tensor parallelism over a mesh needs no partition spec for
  any pruner state.

  Args:
    key: PRNG key of the run.
    model_variables: ``{"params": ..., **other collections}`` (e.g. ``model.init(...)``).
    pruner: the method.
    tx: the optimizer (:func:`optimizer`).
    apply_fn: the model's :data:`ApplyFn`.
    param_shardings: a ``NamedSharding`` per param (e.g. :func:`pruning_jax.sharding.fsdp`).
    batch_sharding: where batches go (e.g. split over the data axis).
    context: the pruner's :class:`pruning_jax.InitContext`, if it needs one.
    task: the loss (default: classification).
    update: run ``pruner.update`` in the step (see :func:`make_train_step`).

  Returns:
    A :class:`Sharded` ``(state, shardings, step)``; ``step(state, batch)`` is jitted.

  Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp, numpy as np, optax
    >>> import pruning_jax as pj
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> model = nn.Dense(4)
    >>> v = model.init(jax.random.key(0), jnp.ones((1, 8)))
    >>> pruner = pj.methods.magnitude_pruning(0.5)
    >>> tx = optimizer(optax.sgd(0.1), pruner=pruner)
    >>> param_shardings = pj.sharding.fsdp(v["params"], mesh, min_elements=1)
    >>> batches = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    >>> run = sharded(jax.random.key(1), v, pruner, tx, linen_apply(model), param_shardings, batches)
    >>> run.shardings.pruner_state.buffers.masks["kernel"].spec
    P('data',)
  """
  from pruning_jax import sharding as sharding_lib  # sharding is a leaf module; keep imports one-way

  def init(k, v):
    return init_train_state(k, v, pruner, tx, context)

  shapes = jax.eval_shape(init, key, model_variables)
  shardings = sharding_lib.shardings_like(shapes, model_variables["params"], param_shardings)
  state = jax.jit(init, out_shardings=shardings)(key, model_variables)
  step = jax.jit(
    make_train_step(apply_fn, pruner, tx, task, update=update),
    in_shardings=(shardings, batch_sharding),
    out_shardings=(shardings, None),
  )
  return Sharded(state, shardings, step)


__all__ = [
  "ApplyFn",
  "Sharded",
  "Task",
  "TrainState",
  "classification",
  "data_parallel",
  "evaluated_sparsity",
  "sharded",
  "train_step_for",
  "init_context",
  "init_train_state",
  "linen_apply",
  "make_eval_step",
  "make_train_step",
  "optimizer",
]

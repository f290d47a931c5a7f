"""The Pruner protocol: every method factory in ``pruning_jax.methods`` (found automatically)
meets the same contract on the pytrees users have, and the three findings that motivated
protocol v2 stay fixed."""

from __future__ import annotations

import inspect
from typing import NamedTuple

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import pruning_jax as pj
from pruning_jax import training

# Values for the required arguments of a factory, by parameter name: a new factory whose required
# arguments are all named here is covered without touching this file.
REQUIRED = {
  "sparsity": 0.5,
  "budget_weight": 1.0,
  "score_fn": lambda params, grads: pj.criteria.magnitude(params),
  "estimator": lambda key, m: pj.hard_threshold_ste(m),
  "score": lambda key, params, context: pj.criteria.magnitude(params),
  "amount": 0.25,
  "every_steps": 2,
  "weight": 1e-3,
  "end_step": 2,  # the contract's 3 steps: one drop-and-grow (every_steps) while updates run
  "grow": "gradient",
}
# factories with one of several ways to say how much to prune, none required
CHOICES = {
  "channel_pruning": {"amount": 0.25},
  "soft_filter_pruning": {"amount": 0.25},
  # the test MLPs have 80 MACs per example, 10 per hidden channel: 2 of the 8 are 25%
  "pruning_from_scratch": {"macs_reduction": 0.25, "reference_macs": 80},
  "rigl": {"every_steps": 1},
  "set_training": {"every_steps": 1},
  "dynamic_sparse": {"every_steps": 1},
}


def factories():
  out = []
  for name in pj.methods.__all__:
    fn = getattr(pj.methods, name)
    if inspect.isfunction(fn) and inspect.signature(fn).return_annotation in ("Pruner", pj.Pruner):
      out.append(name)
  return out


def build(name):
  fn = getattr(pj.methods, name)
  kwargs = dict(CHOICES.get(name, {}))
  for p in inspect.signature(fn).parameters.values():
    required = p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    if required and p.name not in kwargs:
      assert p.name in REQUIRED, f"add a value for {name}'s required argument {p.name!r} to REQUIRED"
      kwargs[p.name] = REQUIRED[p.name]
  return fn(**kwargs)


def test_every_factory_is_found():
  assert {"dense", "magnitude_pruning", "aslp", "edge_popup", "supermask", "reparam"} <= set(factories())


class Layer(NamedTuple):
  kernel: jax.Array
  bias: jax.Array


class _Linen(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(nn.relu(nn.Dense(8)(x)))


def linen_model(key):
  model = _Linen()
  params = model.init(key, jnp.zeros((1, 6)))["params"]
  return params, lambda p, s, x, *, train: (model.apply({"params": p}, x), s)


def nnx_model(key):
  seed = int(jax.random.randint(key, (), 0, 1000))
  model = nnx.Sequential(
    nnx.Linear(6, 8, rngs=nnx.Rngs(seed)), nnx.relu, nnx.Linear(8, 4, rngs=nnx.Rngs(seed + 1))
  )
  graphdef, params = nnx.split(model, nnx.Param)
  return params, lambda p, s, x, *, train: (nnx.merge(graphdef, p)(x), s)


def equinox_model(key):
  params, static = eqx.partition(eqx.nn.MLP(6, 4, 8, 1, key=key), eqx.is_inexact_array)
  return params, lambda p, s, x, *, train: (jax.vmap(eqx.combine(p, static))(x), s)


def tuple_model(key):
  k1, k2 = jax.random.split(key)
  params = (
    Layer(jax.random.normal(k1, (6, 8)) / 2, jnp.zeros(8)),
    [Layer(jax.random.normal(k2, (8, 4)) / 2, jnp.zeros(4))],
  )

  def apply(p, s, x, *, train):
    (a, [b]) = p
    return jax.nn.relu(x @ a.kernel + a.bias) @ b.kernel + b.bias, s

  return params, apply


MODELS = {"linen": linen_model, "nnx": nnx_model, "equinox": equinox_model, "tuples": tuple_model}


def _batch(i):
  x = jax.random.normal(jax.random.key(100 + i), (16, 6))
  return {"image": x, "label": jnp.arange(16) % 4}


def _moved(before, after, keep, *, to_zero_ok=False):
  """Whether any weight outside ``keep`` changed (or, with ``to_zero_ok``, changed to non-zero)."""
  out = []
  for b, a, m in zip(jax.tree.leaves(before), jax.tree.leaves(after), jax.tree.leaves(keep), strict=True):
    if np.ndim(m) == 0:
      continue
    a, b, removed = np.asarray(a), np.asarray(b), ~np.broadcast_to(np.asarray(m), np.shape(a))
    changed = (a != b) & ~((a == 0) if to_zero_ok else np.zeros_like(removed))
    out.append(bool(np.any(changed & removed)))
  return any(out)


@pytest.mark.parametrize("tree", sorted(MODELS))
@pytest.mark.parametrize("name", factories())
def test_contract(name, tree):
  """init -> jitted steps -> update -> finalize: masks valid from init, no removed weight ever
  moves (step 0 included), finalize deterministic and removing what it reports."""
  pruner = build(name)
  params, apply_fn = MODELS[tree](jax.random.key(0))
  tx = training.optimizer(optax.sgd(0.05, momentum=0.9), optax.sgd(0.1), pruner=pruner)
  context = training.init_context(apply_fn, {}, batches=[_batch(0)])
  state = training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx, context)
  pj.check_masks(params, pruner.masks(state.params, state.pruner_state))
  step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
  for i in range(3):
    before = state
    state, metrics = step(state, _batch(i))
    assert np.isfinite(float(metrics["loss"]))
    # the masks the optimizer respected are those of the updated pruner state: what they remove
    # (everything removed at the step's start, unless the update regrew it) did not move
    # (learned variables as the step found them: the optimizer moves them after the update)
    keep = pruner.masks(before.params, before.pruner_state._replace(buffers=state.pruner_state.buffers))
    assert not _moved(before.params, state.params, keep, to_zero_ok=pruner.zero_removed), (
      f"{name} on {tree}: a removed weight moved at step {i}"
    )
  evaluate = jax.jit(training.make_eval_step(apply_fn, pruner, finalized=True))
  out = evaluate(state, _batch(9), jax.random.key(3))
  assert int(out["count"]) == 16
  (p1, m1), (p2, m2) = (
    pruner.finalize(state.params, state.pruner_state),
    pruner.finalize(state.params, state.pruner_state),
  )
  chex.assert_trees_all_equal(p1, p2)
  chex.assert_trees_all_equal(m1, m2)
  pj.check_masks(p1, m1)
  for p, m in zip(jax.tree.leaves(p1), jax.tree.leaves(m1), strict=True):
    assert not np.any(np.where(np.broadcast_to(np.asarray(m), p.shape), 0.0, np.asarray(p)))


def test_step_zero_trains_no_removed_weight():
  """Finding 1: masks are valid from init, so the first step already holds the pruned weights."""
  params, apply_fn = tuple_model(jax.random.key(0))
  pruner = pj.methods.magnitude_pruning(0.9)
  tx = training.optimizer(optax.sgd(0.1), pruner=pruner)
  state = training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx)
  masks = pruner.masks(state.params, state.pruner_state)
  assert int(pj.count_kept(masks)[0]) == 80 - round(0.9 * 80)
  new, metrics = jax.jit(training.make_train_step(apply_fn, pruner, tx))(state, _batch(0))
  for b, a, m in zip(
    jax.tree.leaves(params), jax.tree.leaves(new.params), jax.tree.leaves(masks), strict=True
  ):
    if np.ndim(m):
      np.testing.assert_array_equal(np.asarray(a)[~np.asarray(m)], np.asarray(b)[~np.asarray(m)])
      assert np.any(np.asarray(a)[np.asarray(m)] != np.asarray(b)[np.asarray(m)])
  assert float(metrics["sparsity"]) == pytest.approx(1 - 8 / 80)


class Seen(NamedTuple):
  grads: object
  key: jax.Array


def _recording(base: pj.Pruner) -> pj.Pruner:
  """``base`` whose update stores the StepInfo's gradient and key in its buffers."""

  def init(key, params, context=None):
    st = base.init(key, params, context)
    zeros = jax.tree.map(jnp.zeros_like, params)
    return st._replace(buffers=(st.buffers, Seen(zeros, jax.random.key_data(jax.random.key(0)))))

  def update(params, state, info):
    inner = base.update(params, state._replace(buffers=state.buffers[0]), info)
    return inner._replace(buffers=(inner.buffers, Seen(info.grads, jax.random.key_data(info.key))))

  def unwrap(f):
    return lambda params, state, *a, **k: f(params, state._replace(buffers=state.buffers[0]), *a, **k)

  return base._replace(
    init=init,
    update=update,
    apply=unwrap(base.apply),
    masks=unwrap(base.masks),
    finalize=unwrap(base.finalize),
  )


def test_update_sees_the_dense_gradient_of_the_weights_the_forward_pass_saw_and_a_fresh_key():
  """Finding 2: the gradient is taken w.r.t. the masked weights, so it is non-zero at removed
  positions (RigL grows from it), and every step's update gets its own key (SET)."""
  params, apply_fn = tuple_model(jax.random.key(0))
  pruner = _recording(pj.methods.magnitude_pruning(0.75))
  tx = training.optimizer(optax.sgd(0.1), pruner=pruner)
  state = training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx)
  masks = pruner.masks(state.params, state.pruner_state)
  step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
  batch = _batch(0)
  new, _ = step(state, batch)
  seen = pj.apply_masks(params, masks)
  want = jax.grad(lambda w: training.init_context(apply_fn, {}).loss_fn(w, batch))(seen)
  got = new.pruner_state.buffers[1].grads
  # train and eval apply are the same here (no BN), so the loss is the one the step took
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)
  kernel_removed = ~np.asarray(masks[0].kernel)
  # zero only where the ReLU is off for every example; the raw-params gradient is 0 everywhere
  assert np.mean(np.asarray(got[0].kernel)[kernel_removed] != 0) > 0.5
  newer, _ = step(new, batch)
  k1, k2 = new.pruner_state.buffers[1].key, newer.pruner_state.buffers[1].key
  assert not np.array_equal(np.asarray(k1), np.asarray(k2))


def _snip_like(sparsity):
  """A data-dependent init: connection sensitivity |w * dL/dw| on the context's batches."""

  def init(key, params, context=None):
    if context is None or context.loss_fn is None or not context.batches:
      raise ValueError("this pruner needs InitContext(loss_fn=..., batches=...)")
    g = jax.grad(context.loss_fn)(params, context.batches[0])
    masks = pj.masks_from_scores(pj.criteria.saliency(params, g), sparsity, scope="global")
    return pj.PrunerState({}, masks)

  base = pj.methods.dense()
  return base._replace(
    init=init,
    apply=lambda params, state, **kw: pj.apply_masks(params, state.buffers),
    masks=lambda params, state: state.buffers,
    finalize=lambda params, state: (pj.apply_masks(params, state.buffers), state.buffers),
  )


def test_init_gets_a_context_with_the_loss_and_batches():
  """Finding 3: data-dependent methods (SNIP, GraSP) score at init from the context, with no
  priming update (zero gradients made SNIP's masks purely positional)."""
  params, apply_fn = tuple_model(jax.random.key(0))
  pruner = _snip_like(0.5)
  tx = training.optimizer(optax.sgd(0.1), pruner=pruner)
  ctx = training.init_context(apply_fn, {}, batches=[_batch(0)])
  state = training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx, ctx)
  masks = state.pruner_state.buffers
  g = jax.grad(ctx.loss_fn)(params, _batch(0))
  scores = np.concatenate(
    [
      np.abs(np.asarray(w * gw)).ravel()
      for w, gw in ((params[0].kernel, g[0].kernel), (params[1][0].kernel, g[1][0].kernel))
    ]
  )
  kept = np.concatenate([np.asarray(masks[0].kernel).ravel(), np.asarray(masks[1][0].kernel).ravel()])
  assert kept.sum() == 40 and scores[kept].min() >= scores[~kept].max()
  # positional masks (the old priming with zero gradients) would keep the first 40 units
  assert not np.array_equal(kept, np.arange(80) < 40)
  with pytest.raises(ValueError, match="needs InitContext"):
    training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx)

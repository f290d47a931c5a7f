"""Pruning from Scratch: gates after BN and before ReLU, only gates train, the penalty and its
gradient, the clamp, the MACs-targeted global structure."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning_jax as pj
from pruning_jax import models, surgery, training

WIDTHS = (10, 12, 12, 16, 16, 16, 16, 16)  # a VGG-11 "expanded" over STANDARD
STANDARD = (8, 8, 10, 10, 12, 12, 12, 12)


def _setup(widths=WIDTHS, n=8):
  m = models.vgg11(widths=widths, bn_scale_init=0.5)
  x = jax.random.normal(jax.random.key(1), (n, 32, 32, 3))
  v = jax.jit(m.init)(jax.random.key(0), x)
  apply_fn = training.linen_apply(m)
  batch = {"image": x, "label": jnp.arange(n) % 10}
  ctx = training.init_context(apply_fn, {"batch_stats": v["batch_stats"]}, batches=[batch])
  return m, v, apply_fn, ctx, batch


def _reference_macs(standard=STANDARD):
  m = models.vgg11(widths=standard)
  x = jnp.zeros((1, 32, 32, 3))
  return pj.count_flops(lambda v, x: m.apply(v, x), m.init(jax.random.key(0), x), x).macs


def _random_gates(state, key):
  gates = state.learned["gates"]
  keys = jax.random.split(key, len(gates))
  new = {k: jax.random.uniform(kk, g.shape) for (k, g), kk in zip(sorted(gates.items()), keys, strict=True)}
  return state._replace(learned={"gates": new})


@pytest.mark.parametrize("train", [pytest.param(False, marks=pytest.mark.slow), True])
def test_the_gate_multiplies_each_batchnorm_output_before_the_relu(train):
  m, v, apply_fn, ctx, batch = _setup()
  pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=_reference_macs())
  state = _random_gates(pruner.init(jax.random.key(0), v["params"], ctx), jax.random.key(5))
  groups = state.buffers.groups.value
  # each BatchNorm module's gate, read off the groups: the one whose members hold its scale
  gate_of = {}
  for i, _ in state.buffers.gated.value:
    (bn,) = {mm.path.split("/")[0] for mm in groups[i].members if mm.path.endswith("scale")}
    gate_of[bn] = state.learned["gates"][str(i)]
  assert len(gate_of) == 8  # every conv-BN-ReLU of the VGG

  def gate_after_bn(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
      return out * gate_of[context.module.name]
    return out

  with nn.intercept_methods(gate_after_bn):
    want = m.apply(v, batch["image"], train=train, mutable=["batch_stats"] if train else False)
  seen = {**v, "params": pruner.apply(v["params"], state, key=None, train=train)}
  got = m.apply(seen, batch["image"], train=train, mutable=["batch_stats"] if train else False)
  chex.assert_trees_all_close(got, want, rtol=2e-5, atol=2e-5)  # outputs, and batch statistics in train mode


def test_only_the_gates_train_and_batchnorm_statistics_update():
  m, v, apply_fn, ctx, batch = _setup()
  pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=_reference_macs())
  tx = training.optimizer(optax.set_to_zero(), optax.adam(0.01), pruner=pruner)
  state = training.init_train_state(jax.random.key(1), v, pruner, tx, ctx)
  step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
  new = state
  for _ in range(3):
    new, metrics = step(new, batch)
  jax.tree.map(np.testing.assert_array_equal, new.params, v["params"])  # weights and BN affine
  moved = [bool(np.any(np.asarray(a) != 1.0)) for a in jax.tree.leaves(new.pruner_state.learned)]
  assert all(moved)
  assert any(
    bool(np.any(np.asarray(a) != np.asarray(b)))
    for a, b in zip(jax.tree.leaves(new.model_state), jax.tree.leaves(v["batch_stats"]), strict=True)
  )
  assert {"gate_mean", "gate_nonzero"} <= set(metrics)


def test_the_penalty_is_lambda_times_the_squared_gap_of_the_mean_gate_and_its_gradient():
  m, v, apply_fn, ctx, batch = _setup()
  lam, r = 0.5, 0.2
  pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=_reference_macs(), weight=lam, target_ratio=r)
  state = _random_gates(pruner.init(jax.random.key(0), v["params"], ctx), jax.random.key(3))
  gates = state.learned["gates"]
  tree = {"params": v["params"], "learned": state.learned}
  zeros = jax.tree.map(jnp.zeros_like, tree)
  u, _ = jax.jit(pruner.penalty.update)(zeros, pruner.penalty.init(tree), tree)

  def loss(g):
    flat = jnp.concatenate([x for x in jax.tree.leaves(g)])
    return lam * (jnp.mean(jnp.abs(flat)) - r) ** 2

  want = jax.grad(loss)(gates)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9), u["learned"]["gates"], want
  )
  flat = np.concatenate([np.asarray(x) for x in jax.tree.leaves(gates)])
  n = flat.size
  closed = 2 * lam * (np.abs(flat).mean() - r) * np.sign(flat) / n  # the formula's derivative
  got = np.concatenate([np.asarray(x) for x in jax.tree.leaves(u["learned"]["gates"])])
  np.testing.assert_allclose(got, closed, rtol=1e-5, atol=1e-9)
  assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(u["params"]))  # weights: no penalty


@settings(max_examples=25, deadline=None)
@given(
  start=st.lists(st.floats(0.0, 1.0, width=32), min_size=4, max_size=4),
  grad=st.lists(st.floats(-1e3, 1e3, width=32), min_size=4, max_size=4),
  lr=st.sampled_from([1e-3, 0.5, 10.0]),
)
def test_the_clamp_keeps_every_gate_in_the_unit_interval(start, grad, lr):
  pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=100)
  tx = training.optimizer(optax.set_to_zero(), optax.sgd(lr), pruner=pruner)
  tree = {"params": {"w": jnp.ones(2)}, "learned": {"gates": {"0": jnp.asarray(start, jnp.float32)}}}
  grads = {"params": {"w": jnp.zeros(2)}, "learned": {"gates": {"0": jnp.asarray(grad, jnp.float32)}}}
  masks = {"params": {"w": jnp.ones(2, bool)}, "learned": {"gates": {"0": jnp.ones(4, bool)}}}
  grown = jax.tree.map(jnp.logical_not, masks)
  u, _ = jax.jit(tx.update)(grads, tx.init(tree), tree, masks=masks, grown=grown)
  g = np.asarray(optax.apply_updates(tree, u)["learned"]["gates"]["0"])
  assert np.all((g >= 0) & (g <= 1)), g
  g0 = np.asarray(start, np.float32)
  # d/dg of lambda (mean|g| - r)^2 with sign(0) = 0, the subgradient PyTorch's abs takes too
  penalty = 2 * 0.5 * (np.abs(g0).mean() - 0.2) * np.sign(g0) / g0.size
  want = np.clip(g0 - lr * (np.asarray(grad, np.float32) + penalty), 0, 1)
  np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


def test_the_structure_is_the_global_top_gates_at_the_macs_target_of_the_standard_model():
  # wide enough that one channel of the 32x32 layers moves the MACs by < 2%
  m, v, apply_fn, ctx, batch = _setup(widths=(40, 48, 48, 48, 48, 48, 48, 48))
  ref = _reference_macs(standard=(32, 32, 40, 40, 40, 40, 40, 40))
  pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=ref, rtol=5e-2)
  state = _random_gates(pruner.init(jax.random.key(0), v["params"], ctx), jax.random.key(4))
  x1 = batch["image"][:1]
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x1)
  count = state.buffers.macs.value  # the per-layer MACs model; checked against count_flops below
  for jit in (False, True):
    fin = jax.jit(pruner.finalize) if jit else pruner.finalize
    params, masks = fin(v["params"], state)
    keep = surgery.keep_from_masks(v, groups, {"params": masks})
    assert abs(1 - count(keep) / ref - 0.5) <= 5e-2 * 0.5, (jit, count(keep), ref)
    # one global ranking, no per-layer normalisation: every kept gate >= every removed one
    kept, removed = [], []
    for i, _ in state.buffers.gated.value:
      g = np.asarray(state.learned["gates"][str(i)])
      kept += g[keep[i]].tolist()
      removed += g[~keep[i]].tolist()
    assert removed and min(kept) >= max(removed)
  # the shrunk, gated network has those MACs and computes what the masked, gated one does
  small, v_small = surgery.shrink_module(m, {**v, "params": params}, groups, keep, x1)
  assert pj.count_flops(small.apply, v_small, x1).macs == count(keep)
  np.testing.assert_allclose(
    small.apply(v_small, batch["image"]),
    m.apply({**v, "params": params}, batch["image"]),
    atol=1e-4,
    rtol=1e-4,
  )


@pytest.mark.slow  # make test time; residual streams stay whole in test_channel_methods (tied=False, fast)
def test_residual_streams_stay_whole_and_only_inner_channels_are_gated():
  m = models.resnet20(blocks_per_stage=(2, 1, 1))
  x = jnp.zeros((2, 32, 32, 3))
  v = m.init(jax.random.key(0), x)
  ctx = training.init_context(
    training.linen_apply(m),
    {"batch_stats": v["batch_stats"]},
    batches=[{"image": x, "label": jnp.zeros(2, jnp.int32)}],
  )
  pruner = pj.methods.pruning_from_scratch(0.3, reference_macs=10**6)
  state = pruner.init(jax.random.key(0), v["params"], ctx)
  groups = state.buffers.groups.value
  gated = [groups[i] for i, _ in state.buffers.gated.value]
  assert len(gated) == 4  # one inner channel per block
  for b, g in enumerate(gated):  # the gate is after bn1 of block b
    scales = [mm.path for mm in g.members if mm.path.endswith("scale")]
    assert scales == [f"BasicBlock_{b}/BatchNorm_0/scale"], scales
    assert sum(mm.role == "out" for mm in g.members) == 1


def test_bad_arguments_name_themselves():
  with pytest.raises(ValueError, match=r"pruning_from_scratch: reduction must be in \(0, 1\)"):
    pj.methods.pruning_from_scratch(1.0, reference_macs=10)
  with pytest.raises(ValueError, match="pruning_from_scratch: reference_macs must be positive"):
    pj.methods.pruning_from_scratch(0.5, reference_macs=0)
  with pytest.raises(ValueError, match=r"weight \(lambda\) must be >= 0"):
    pj.methods.pruning_from_scratch(0.5, reference_macs=10, weight=-1.0)
  with pytest.raises(ValueError, match="target_ratio"):
    pj.methods.pruning_from_scratch(0.5, reference_macs=10, target_ratio=1.5)
  pruner = pj.methods.pruning_from_scratch(0.5, reference_macs=10)
  with pytest.raises(ValueError, match="init needs an InitContext with apply_fn and example_input"):
    pruner.init(jax.random.key(0), {"w": jnp.ones((2, 2))}, None)

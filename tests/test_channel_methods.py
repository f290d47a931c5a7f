"""The channel Pruners: whole channels removed in every member, the MACs target under jit,
soft filter pruning's zero-and-regrow cycle."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import pruning_jax as pj
from pruning_jax import models, structured, surgery, training


def _setup(model, shape):
  x = jax.random.normal(jax.random.key(1), shape)
  v = jax.jit(model.init)(jax.random.key(0), x)
  apply_fn = training.linen_apply(model)
  batch = {"image": x, "label": jnp.arange(shape[0]) % 10}
  state = {k: a for k, a in v.items() if k != "params"}
  return v, apply_fn, training.init_context(apply_fn, state, batches=[batch]), batch


# every criterion in the slow suite (make test time): each criterion's scores are checked in
# test_structured (fast), and a one-shot channel prune shrinks and agrees in test_l0's channel
# gates and test_train's shrink stage (fast)
SLOW_CRITERIA = [
  pytest.param(c, marks=pytest.mark.slow) for c in ("l1", "taylor", "bn_scale", "fpgm", "random")
]


@pytest.mark.parametrize("criterion", SLOW_CRITERIA)
def test_one_shot_removes_whole_channels_and_the_shrunk_network_agrees(criterion):
  m = models.vgg11(widths=(8, 8, 12, 12, 16, 16, 16, 16))
  v, apply_fn, ctx, batch = _setup(m, (4, 32, 32, 3))
  pruner = pj.methods.channel_pruning(criterion, amount=0.3, scope="group")
  state = pruner.init(jax.random.key(2), v["params"], ctx)
  masks = pruner.masks(v["params"], state)
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, batch["image"][:1])
  keep = surgery.keep_from_masks(v, groups, {"params": masks})
  for i, k in keep.items():  # round(0.3 * n) of each group, and masks zero every member entry
    assert int((~k).sum()) == round(0.3 * groups[i].channels)
  assert sum(int((~k).sum()) for k in keep.values()) == sum(
    round(0.3 * g.channels) for g in groups if g.prunable
  )
  params, _ = pruner.finalize(v["params"], state)
  masked = {**v, "params": params}
  small, v_small = surgery.shrink_module(m, masked, groups, keep, batch["image"][:1])
  np.testing.assert_allclose(
    small.apply(v_small, batch["image"]), m.apply(masked, batch["image"]), atol=1e-4, rtol=1e-4
  )


def test_the_macs_target_is_met_eagerly_and_under_jit():
  m = models.LeNet5(conv_widths=(12, 32), dense_widths=(64, 48))
  v, apply_fn, ctx, batch = _setup(m, (2, 28, 28, 1))
  x1 = batch["image"][:1]
  reference = pj.count_flops(lambda v, x: m.apply(v, x), v, x1).macs
  pruner = pj.methods.channel_pruning("l2", macs_reduction=0.4, normalize="max", rtol=2e-2)
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x1)

  def reduction(state):
    keep = surgery.keep_from_masks(v, groups, {"params": pruner.masks(v["params"], state)})
    small, v_small = surgery.shrink_module(m, v, groups, keep, x1)
    return 1 - pj.count_flops(lambda v, x: small.apply(v, x), v_small, x1).macs / reference

  eager = pruner.init(jax.random.key(0), v["params"], ctx)
  assert abs(reduction(eager) - 0.4) <= 2e-2 * 0.4
  traced = jax.jit(lambda p: pruner.init(jax.random.key(0), p, ctx))(v["params"])
  assert abs(reduction(traced) - 0.4) <= 2e-2 * 0.4
  shapes = jax.eval_shape(lambda p: pruner.init(jax.random.key(0), p, ctx), v["params"])
  assert jax.tree.structure(shapes) == jax.tree.structure(eager)


def test_a_reference_model_sets_the_target_of_an_expanded_network():
  wide = models.LeNet300100(widths=(60, 40))
  v, apply_fn, ctx, batch = _setup(wide, (2, 28, 28, 1))
  standard = pj.count_flops(
    lambda p, x: models.LeNet300100(widths=(30, 20)).apply(p, x),
    jax.jit(models.LeNet300100(widths=(30, 20)).init)(jax.random.key(0), batch["image"][:1]),
    batch["image"][:1],
  ).macs
  pruner = pj.methods.channel_pruning(
    "l1", macs_reduction=0.5, reference_macs=standard, scope="group", rtol=5e-2
  )
  masks = pruner.masks(v["params"], pruner.init(jax.random.key(0), v["params"], ctx))
  macs = pj.count_flops(
    lambda p, x: wide.apply({"params": p}, x), v["params"], batch["image"][:1], masks=masks
  )
  assert abs(1 - macs.effective_macs / standard - 0.5) <= 5e-2 * 0.5  # a hidden unit is ~3% of the MACs


def test_tied_false_keeps_residual_streams_whole():
  m = models.resnet20(stage_widths=(4, 8, 8), blocks_per_stage=(1, 1, 1))
  v, apply_fn, ctx, batch = _setup(m, (2, 16, 16, 3))
  pruner = pj.methods.channel_pruning("l1", amount=0.5, scope="group", tied=False)
  masks = pruner.masks(v["params"], pruner.init(jax.random.key(0), v["params"], ctx))
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, batch["image"][:1])
  keep = surgery.keep_from_masks(v, groups, {"params": masks})
  for i, k in keep.items():
    tied = sum(mem.role == "out" for mem in groups[i].members) > 1
    assert k.all() == tied, groups[i].describe()


def test_channel_pruning_says_what_it_needs():
  with pytest.raises(ValueError, match="exactly one of amount= .* and macs_reduction="):
    pj.methods.channel_pruning("l1")
  with pytest.raises(ValueError, match="init needs an InitContext with apply_fn and example_input"):
    pj.methods.channel_pruning("l1", amount=0.5).init(jax.random.key(0), {"w": jnp.ones((2, 2))})
  with pytest.raises(ValueError, match="every_steps must be an int >= 1"):
    pj.methods.soft_filter_pruning(0.3, every_steps=0)


def test_soft_filter_pruning_zeroes_filters_that_then_train_again():
  m = models.vgg11(widths=(8, 8, 8, 8, 8, 8, 8, 8))  # BatchNorm in train mode: gradients reach zero filters
  v, apply_fn, ctx, batch = _setup(m, (8, 32, 32, 3))
  pruner = pj.methods.soft_filter_pruning(0.25, every_steps=3)
  tx = training.optimizer(optax.sgd(0.05, momentum=0.9), pruner=pruner)
  state = training.init_train_state(jax.random.key(0), v, pruner, tx, ctx)
  step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
  kernel = lambda s: np.asarray(s.params["Conv3x3_0"]["kernel"])  # noqa: E731
  for _ in range(3):
    state, _ = step(state, batch)
  zeroed = ~kernel(state).any(axis=(0, 1, 2))
  assert zeroed.sum() == 2  # round(0.25 * 8) filters of the first conv are exactly zero
  assert np.asarray(state.params["BatchNorm_0"]["scale"])[zeroed].all()  # the filters alone
  state, _ = step(state, batch)  # an ordinary step: every weight trains, the zeroed ones too
  assert kernel(state)[..., zeroed].any()
  params, masks = pruner.finalize(state.params, state.pruner_state)
  fn = lambda p, x: m.apply({"params": p, "batch_stats": v["batch_stats"]}, x)  # noqa: E731
  groups = surgery.channel_groups(fn, params, batch["image"][:1])
  keep = surgery.keep_from_masks(params, groups, masks)
  assert all(int((~k).sum()) == round(0.25 * groups[i].channels) for i, k in keep.items())
  # the final selection is the lowest-L2 quarter of each layer on the final weights
  scores = structured.group_scores(state.params, groups, "l2")
  want = structured.select_channels(scores, groups, 0.25, scope="group")
  assert all(np.array_equal(keep[i], want[i]) for i in want)


@pytest.mark.slow  # make test time; the eager/jit MACs target test stays fast
def test_soft_filter_pruning_finds_the_per_layer_rate_of_a_macs_target():
  m = models.resnet20(blocks_per_stage=(1, 1, 1))
  v, apply_fn, ctx, batch = _setup(m, (2, 32, 32, 3))
  # a per-group rate moves whole channels of every block at once: coarse steps
  pruner = pj.methods.soft_filter_pruning(every_steps=1, macs_reduction=0.3, tied=False, rtol=5e-2)
  state = pruner.init(jax.random.key(0), v["params"], ctx)
  _, masks = pruner.finalize(v["params"], state)
  x1 = batch["image"][:1]
  dense = pj.count_flops(lambda v, x: m.apply(v, x), v, x1)
  masked = pj.count_flops(lambda v, x: m.apply(v, x), {**v, "params": pj.apply_masks(v["params"], masks)}, x1)
  assert abs(1 - masked.effective_macs / dense.macs - 0.3) <= 5e-2 * 0.3
  assert 0 < float(state.buffers.amount) < 1
  traced = jax.jit(lambda p: pruner.init(jax.random.key(0), p, ctx))(v["params"])  # as a resume builds it
  assert abs(float(traced.buffers.amount) - float(state.buffers.amount)) < 0.05
  # a resume's template closes over concrete params inside eval_shape: the scores are traced there
  shapes = jax.eval_shape(lambda: pruner.init(jax.random.key(0), v["params"], ctx))
  assert shapes.buffers.amount.shape == () and shapes.buffers.amount.dtype == jnp.float32
  with pytest.raises(ValueError, match="macs_reduction needs scope='group'"):
    pj.methods.soft_filter_pruning(every_steps=1, macs_reduction=0.3, scope="global")


def test_penalized_adds_the_l1_gradient_of_the_selected_params_only():
  m = models.vgg11(widths=(4, 4, 4, 4, 4, 4, 4, 4))
  v, apply_fn, ctx, batch = _setup(m, (2, 32, 32, 3))
  pruner = pj.methods.penalized(1e-2, selection=r"scale$")
  tx = training.optimizer(optax.sgd(1.0), pruner=pruner)
  state = training.init_train_state(jax.random.key(0), v, pruner, tx, ctx)
  zero = jax.tree.map(jnp.zeros_like, {"params": state.params, "learned": {}})
  updates, _ = pruner.penalty.update(zero, pruner.penalty.init(zero), {"params": state.params, "learned": {}})
  for path, u in jax.tree_util.tree_flatten_with_path(updates["params"])[0]:
    p = surgery.path_str(path)
    want = 1e-2 * np.sign(np.asarray(_leaf(state.params, p))) if p.endswith("scale") else 0.0
    np.testing.assert_allclose(np.asarray(u), np.broadcast_to(want, u.shape), rtol=1e-6)
  with pytest.raises(ValueError, match="penalty='l0' is unknown"):
    pj.methods.penalized(1e-2, penalty="l0")


def _leaf(tree, path):
  return dict((surgery.path_str(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0])[path]

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pruning_jax as pj


class SmallConvNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), padding="SAME")(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Conv(16, (3, 3), padding="SAME", feature_group_count=2)(x))
    x = nn.Conv(16, (1, 1), strides=2)(x)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(10)(nn.relu(nn.Dense(32)(x)))


def _setup(batch=1):
  model = SmallConvNet()
  x = jax.ShapeDtypeStruct((batch, 16, 16, 3), jnp.float32)
  params = model.init(jax.random.key(0), jnp.zeros(x.shape))["params"]
  return model, params, x


def _hand_macs(batch):
  return batch * (
    16 * 16 * 8 * (3 * 3 * 3)  # conv0: out positions x out ch x (kh kw cin)
    + 8 * 8 * 16 * (3 * 3 * 4)  # grouped conv: cin per group = 8 / 2
    + 4 * 4 * 16 * 16  # 1x1 stride 2
    + 256 * 32
    + 32 * 10
  )


@pytest.mark.parametrize("batch", [1, 3])
def test_dense_macs_match_hand_count(batch):
  model, params, x = _setup(batch)
  r = pj.count_flops(lambda p, x: model.apply({"params": p}, x), params, x)
  assert r.macs == _hand_macs(batch) and r.effective_macs == r.macs and r.flops == 2 * r.macs
  # Dense(10) is constructed before Dense(32) in the expression, so Flax names it Dense_0:
  # execution order, not names, says which layer is first.
  assert [layer.path for layer in r.layers] == [
    "Conv_0/kernel",
    "Conv_1/kernel",
    "Conv_2/kernel",
    "Dense_1/kernel",
    "Dense_0/kernel",
  ]
  assert r.uncounted == [] and r.speedup == 1.0


def test_masked_macs_skip_zeros_per_layer():
  model, params, x = _setup()
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.75)
  r = pj.count_flops(lambda p, x: model.apply({"params": p}, x), params, x, masks=masks)
  positions = {
    "Conv_0/kernel": 16 * 16,
    "Conv_1/kernel": 8 * 8,
    "Conv_2/kernel": 4 * 4,
    "Dense_0/kernel": 1,
    "Dense_1/kernel": 1,
  }
  for layer in r.layers:
    nnz = int(np.asarray(masks[layer.path.split("/")[0]]["kernel"]).sum())
    assert layer.effective_macs == nnz * positions[layer.path]
  assert r.speedup == pytest.approx(r.macs / r.effective_macs)
  # the same count when the model applies the mask itself
  r2 = pj.count_flops(lambda p, x: model.apply({"params": pj.apply_masks(p, masks)}, x), params, x)
  assert r2.effective_macs == r.effective_macs


def test_param_counts_and_order():
  model, params, x = _setup()
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.5, scope="global")
  counts = pj.count_params(params, masks)
  total = sum(v.size for v in jax.tree.leaves(params))
  kernels = sum(v.size for v in jax.tree.leaves(params) if v.ndim > 1)
  biases = total - kernels
  assert counts.total == total
  nonzero_biases = sum(int(jnp.count_nonzero(v)) for v in jax.tree.leaves(params) if v.ndim == 1)
  assert counts.nonzero == kernels - round(0.5 * kernels) + nonzero_biases
  assert counts.compression_ratio == pytest.approx(total / counts.nonzero)
  assert biases > 0
  order = pj.param_use_order(lambda p, x: model.apply({"params": p}, x), params, x)
  assert order == ["Conv_0/kernel", "Conv_1/kernel", "Conv_2/kernel", "Dense_1/kernel", "Dense_0/kernel"]
  sel = pj.exclude_last(pj.select(params), order=order)
  assert not sel["Dense_0"]["kernel"] and sel["Dense_1"]["kernel"]
  table = pj.accounting.param_table(params, masks)
  assert sum(t[2] for t in table) == total


def test_equinox_and_weight_on_lhs():
  mlp = eqx.nn.MLP(6, 4, 8, 1, key=jax.random.key(0))  # weights (out, in): W @ x
  params, static = eqx.partition(mlp, eqx.is_array)
  r = pj.count_flops(lambda p, x: eqx.combine(p, static)(x), params, jax.ShapeDtypeStruct((6,), jnp.float32))
  assert r.macs == 6 * 8 + 8 * 4
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.5)
  r = pj.count_flops(
    lambda p, x: eqx.combine(p, static)(x), params, jax.ShapeDtypeStruct((6,), jnp.float32), masks=masks
  )
  assert r.effective_macs == 24 + 16
  assert [layer.path for layer in r.layers] == ["layers/0/weight", "layers/1/weight"]


def test_control_flow_is_reported_not_hidden():
  def f(p, x):
    return jax.lax.scan(lambda c, _: (c @ p["w"], None), x, None, length=3)[0]

  r = pj.count_flops(f, {"w": jnp.ones((4, 4))}, jnp.ones((1, 4)))
  assert r.uncounted == ["scan"]


def test_a_conv_computed_as_patches_times_a_matrix_counts_the_conv_macs():
  from pruning_jax.models import Conv3x3

  x = jnp.ones((1, 4, 4, 3))
  direct, patches = Conv3x3(5, patches_below=0), Conv3x3(5, patches_below=4)
  params = direct.init(jax.random.key(0), x)
  params = jax.tree.map(lambda p: p.at[..., 0].set(0.0), params)  # output channel 0 removed
  a = pj.count_flops(lambda p, x: direct.apply(p, x), params, x)
  b = pj.count_flops(lambda p, x: patches.apply(p, x), params, x)
  assert a.macs == b.macs == 4 * 4 * 9 * 3 * 5
  assert a.effective_macs == b.effective_macs == 4 * 4 * 9 * 3 * 4
  assert [layer.path for layer in b.layers] == ["params/kernel"]  # the one-hot patch gather is not a layer


@pytest.mark.parametrize("name", ["lenet5", pytest.param("resnet20", marks=pytest.mark.slow), "grouped"])
def test_effective_macs_from_per_weight_costs_equals_count_flops_under_jit(name):
  from pruning_jax import models

  kw = {"blocks_per_stage": (1, 1, 1), "stage_widths": (4, 8, 8)} if name == "resnet20" else {}
  model = SmallConvNet() if name == "grouped" else models.get_model(name, **kw)
  shape = {"lenet5": (2, 28, 28, 1), "grouped": (2, 16, 16, 3)}.get(name, (2, 32, 32, 3))
  x = jnp.ones(shape)
  v = model.init(jax.random.key(0), x)
  fn = lambda p, x: model.apply({**v, "params": p}, x)  # noqa: E731
  params = v["params"]
  wm = pj.accounting.macs_per_weight(fn, params, x)
  assert wm.dense == pj.count_flops(fn, params, x).macs
  keys = iter(jax.random.split(jax.random.key(1), 100))
  masks = jax.tree.map(
    lambda p: jax.random.uniform(next(keys), p.shape) < 0.3 if p.ndim > 1 else jnp.asarray(True), params
  )
  want = pj.count_flops(fn, params, x, masks=masks).effective_macs
  got = jax.jit(lambda m: pj.accounting.effective_macs(m, wm))(masks)
  assert float(got) == pytest.approx(want, rel=1e-6)

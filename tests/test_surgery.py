"""Channel dependency groups from the jaxpr, against hand-written expectations."""

import jax
import jax.numpy as jnp
import pytest

from pruning_jax import models, surgery


def _groups(fn, tree, *inputs):
  return {
    (g.channels, g.prunable, frozenset((m.path, m.axis, m.inner) for m in g.members))
    for g in surgery.channel_groups(fn, tree, *inputs)
  }


def test_an_mlp_couples_each_hidden_width_and_fixes_inputs_and_classes():
  params = {"a": jnp.ones((4, 8)), "b": jnp.ones(8), "c": jnp.ones((8, 3)), "d": jnp.ones(3)}

  def fn(p, x):
    return jax.nn.relu(x @ p["a"] + p["b"]) @ p["c"] + p["d"]

  assert _groups(fn, params, jnp.ones((2, 4))) == {
    (4, False, frozenset({("a", 0, 1)})),
    (8, True, frozenset({("a", 1, 1), ("b", 0, 1), ("c", 0, 1)})),
    (3, False, frozenset({("c", 1, 1), ("d", 0, 1)})),
  }


def test_a_flatten_of_channels_first_maps_gives_each_channel_a_block_of_rows():
  # (N, C=3, H=2, W=2) flattened: channel c owns rows 4c .. 4c + 3, i.e. (i // 4) % 3 == c
  params = {"conv": jnp.ones((3, 5, 1, 1)), "dense": jnp.ones((12, 2))}

  def fn(p, x):
    y = jax.lax.conv_general_dilated(x, p["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "OIHW", "NCHW"))
    return y.reshape(y.shape[0], -1) @ p["dense"]

  groups = _groups(fn, params, jnp.ones((1, 2, 2, 5)))
  assert (3, True, frozenset({("conv", 0, 1), ("dense", 0, 4)})) in groups


def test_conv2_groups():
  m = models.conv2(conv_widths=(8, 16), dense_widths=(32,))
  x = jnp.ones((2, 32, 32, 3))
  v = m.init(jax.random.key(0), x)
  p = "params/"
  assert _groups(lambda v, x: m.apply(v, x), v, x) == {
    (3, False, frozenset({(p + "Conv3x3_0/kernel", 2, 1)})),
    (
      8,
      True,
      frozenset(
        {(p + "Conv3x3_0/kernel", 3, 1), (p + "Conv3x3_0/bias", 0, 1), (p + "Conv3x3_1/kernel", 2, 1)}
      ),
    ),
    (
      16,
      True,
      frozenset({(p + "Conv3x3_1/kernel", 3, 1), (p + "Conv3x3_1/bias", 0, 1), (p + "Dense_0/kernel", 0, 1)}),
    ),
    (
      32,
      True,
      frozenset({(p + "Dense_0/kernel", 1, 1), (p + "Dense_0/bias", 0, 1), (p + "Dense_1/kernel", 0, 1)}),
    ),
    (10, False, frozenset({(p + "Dense_1/kernel", 1, 1), (p + "Dense_1/bias", 0, 1)})),
  }


def test_residual_adds_tie_the_stream_and_batchnorm_statistics_join_their_channels():
  m = models.resnet20(stage_widths=(4, 8, 16), blocks_per_stage=(1, 1, 1))
  x = jnp.ones((2, 32, 32, 3))
  v = m.init(jax.random.key(0), x)
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x)
  by_member = {(mem.path, mem.axis): g for g in groups for mem in g.members}
  stem = by_member[("params/Conv3x3_0/kernel", 3)]
  # the stem's output channels run through block 0's residual add
  for member in [
    ("params/BatchNorm_0/scale", 0),
    ("batch_stats/BatchNorm_0/mean", 0),
    ("batch_stats/BatchNorm_0/var", 0),
    ("params/BasicBlock_0/Conv3x3_1/kernel", 3),
    ("params/BasicBlock_0/BatchNorm_1/bias", 0),
    ("params/BasicBlock_0/Conv3x3_0/kernel", 2),
    ("params/BasicBlock_1/Conv_0/kernel", 2),
  ]:
    assert by_member[member] is stem, member
  inner = by_member[("params/BasicBlock_0/Conv3x3_0/kernel", 3)]
  assert inner is not stem and inner.prunable and inner.channels == 4
  assert {(mm.path, mm.axis) for mm in inner.members} == {
    ("params/BasicBlock_0/Conv3x3_0/kernel", 3),
    ("params/BasicBlock_0/BatchNorm_0/scale", 0),
    ("params/BasicBlock_0/BatchNorm_0/bias", 0),
    ("batch_stats/BasicBlock_0/BatchNorm_0/mean", 0),
    ("batch_stats/BasicBlock_0/BatchNorm_0/var", 0),
    ("params/BasicBlock_0/Conv3x3_1/kernel", 2),
  }
  assert not by_member[("params/Dense_0/kernel", 1)].prunable


def test_an_op_the_tracer_does_not_know_is_named():
  params = {"a": jnp.ones((4, 8)), "b": jnp.ones((8, 2))}
  with pytest.raises(ValueError, match="primitive 'cumsum' is not supported"):
    surgery.channel_groups(lambda p, x: jnp.cumsum(x @ p["a"], axis=-1) @ p["b"], params, jnp.ones((1, 4)))


def test_a_reshape_that_splits_channels_is_refused():
  params = {"a": jnp.ones((4, 8)), "b": jnp.ones((4, 2))}
  with pytest.raises(ValueError, match="splits a channel axis"):
    surgery.channel_groups(lambda p, x: (x @ p["a"]).reshape(1, 2, 4) @ p["b"], params, jnp.ones((1, 4)))


def test_vgg_groups_each_conv_with_its_batchnorm_and_the_next_conv_also_on_the_patch_path():
  # maps of 4 px or less take Conv3x3's patches-times-kernel-matrix path: (C, kh, kw) merged
  widths = (4, 8, 8, 8, 8, 8, 8, 8)
  m = models.vgg11(widths=widths)
  x = jnp.ones((2, 32, 32, 3))
  v = m.init(jax.random.key(0), x)
  expected = set()
  for i, w in enumerate(widths):
    members = {(f"params/Conv3x3_{i}/kernel", 3, 1)}
    members |= {(f"params/BatchNorm_{i}/{k}", 0, 1) for k in ("scale", "bias")}
    members |= {(f"batch_stats/BatchNorm_{i}/{k}", 0, 1) for k in ("mean", "var")}
    members.add(
      (f"params/Conv3x3_{i + 1}/kernel", 2, 1) if i + 1 < len(widths) else ("params/Dense_0/kernel", 0, 1)
    )
    expected.add((w, True, frozenset(members)))
  expected.add((3, False, frozenset({("params/Conv3x3_0/kernel", 2, 1)})))
  expected.add((10, False, frozenset({("params/Dense_0/kernel", 1, 1), ("params/Dense_0/bias", 0, 1)})))
  assert _groups(lambda v, x: m.apply(v, x), v, x) == expected


def test_an_equinox_cnn_with_channels_first_maps():
  import equinox as eqx

  keys = jax.random.split(jax.random.key(0), 3)

  class CNN(eqx.Module):
    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d
    d: eqx.nn.Linear

    def __init__(self):
      self.c1 = eqx.nn.Conv2d(3, 6, 3, padding=1, key=keys[0])
      self.c2 = eqx.nn.Conv2d(6, 5, 3, padding=1, key=keys[1])
      self.d = eqx.nn.Linear(5 * 8 * 8, 4, key=keys[2])

    def __call__(self, x):
      x = jax.nn.relu(self.c2(jax.nn.relu(self.c1(x))))
      return self.d(x.reshape(-1))

  params, static = eqx.partition(CNN(), eqx.is_array)
  groups = _groups(lambda p, x: jax.vmap(eqx.combine(p, static))(x), params, jnp.ones((2, 3, 8, 8)))
  assert groups == {
    (6, True, frozenset({("c1/weight", 0, 1), ("c1/bias", 0, 1), ("c2/weight", 1, 1)})),
    (3, False, frozenset({("c1/weight", 1, 1)})),
    # channel c of the (5, 8, 8) map owns the 64 columns 64c .. 64c + 63 of the linear weight
    (5, True, frozenset({("c2/weight", 0, 1), ("c2/bias", 0, 1), ("d/weight", 1, 64)})),
    (4, False, frozenset({("d/weight", 0, 1), ("d/bias", 0, 1)})),
  }


def test_a_loop_is_refused_rather_than_read_as_one_call():
  params = {"a": jnp.ones((4, 4))}

  def fn(p, x):
    return jax.lax.scan(lambda c, _: (c @ p["a"], None), x, None, length=3)[0]

  with pytest.raises(ValueError, match="primitive 'scan' is not supported"):
    surgery.channel_groups(fn, params, jnp.ones((1, 4)))

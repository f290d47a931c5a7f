"""Channel dependency groups from the jaxpr, against hand-written expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pruning_jax as pj
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


def test_a_reshape_that_splits_channels_keeps_them_whole():
  params = {"a": jnp.ones((4, 8)), "b": jnp.ones((4, 2))}
  groups = surgery.channel_groups(
    lambda p, x: (x @ p["a"]).reshape(1, 2, 4) @ p["b"], params, jnp.ones((1, 4))
  )
  assert not any(g.prunable for g in groups)
  assert {(m.path, m.axis) for g in groups for m in g.members} == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}


@pytest.mark.slow  # make test time (the stretch goal; the MLP block test stays fast)
def test_attention_heads_form_one_group_and_their_depth_stays_whole():
  import flax.linen as nn

  class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = x + nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=24, name="att")(x)
      return nn.Dense(3, name="head")(nn.relu(nn.Dense(12, name="up")(x)).mean(axis=1))

  m = Block()
  x = jax.random.normal(jax.random.key(0), (2, 5, 8))
  v = _perturbed(m.init(jax.random.key(1), x), jax.random.key(2))
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x)
  heads = [g for g in groups if g.prunable and g.channels == 4]
  assert len(heads) == 1
  att = "params/att/"
  assert {(mm.path, mm.axis) for mm in heads[0].members} == {
    *((att + f"{n}/kernel", 1) for n in ("query", "key", "value")),
    *((att + f"{n}/bias", 0) for n in ("query", "key", "value")),
    (att + "out/kernel", 0),
  }
  # the query/key depth is scaled by 1/sqrt(depth): whole; the value depth (6) only feeds `out`
  depth = {g.prunable for g in groups for mm in g.members if mm.path == att + "query/kernel" and mm.axis == 2}
  assert depth == {False}
  (i,) = [groups.index(g) for g in heads]
  keep = {i: np.array([True, False, True, True])}
  small = surgery.shrink(v, groups, keep)
  masked = pj.apply_masks(v, surgery.channel_masks(v, groups, keep))

  class Narrow(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = x + nn.MultiHeadDotProductAttention(num_heads=3, qkv_features=18, name="att")(x)
      return nn.Dense(3, name="head")(nn.relu(nn.Dense(12, name="up")(x)).mean(axis=1))

  np.testing.assert_allclose(Narrow().apply(small, x), m.apply(masked, x), rtol=2e-5, atol=2e-5)


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


# --- shrink: the shrunk network computes what the masked one does -------------------------------


def _perturbed(tree, key):
  """Every leaf nonzero and BN variances positive, so zeros come only from the masks."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  out = [x + 0.3 * jax.random.normal(k, x.shape) + 0.05 for x, k in zip(leaves, keys, strict=True)]
  return jax.tree.unflatten(treedef, out)


def _positive_vars(variables):
  if "batch_stats" not in variables:
    return variables
  stats = jax.tree_util.tree_map_with_path(
    lambda p, x: jnp.abs(x) + 0.5 if surgery.path_str(p).endswith("var") else x, variables["batch_stats"]
  )
  return {**variables, "batch_stats": stats}


def _random_keep(groups, key):
  """A random keep vector for every prunable group, at least one channel kept."""
  keep = {}
  for i, g in enumerate(groups):
    if g.prunable:
      key, k = jax.random.split(key)
      v = np.array(jax.random.bernoulli(k, 0.6, (g.channels,)))
      v[int(jax.random.randint(k, (), 0, g.channels))] = True
      keep[i] = v
  return keep


SHRINK_MODELS = {
  "lenet300100": (lambda: models.LeNet300100(widths=(12, 8)), (3, 28, 28, 1)),
  "lenet5": (lambda: models.LeNet5(), (3, 28, 28, 1)),
  # widths small and maps of 4 px: Conv3x3's patch path (merged contraction axis) is exercised
  "conv4": (lambda: models.conv4(conv_widths=(6, 8, 10, 12), dense_widths=(16, 14)), (3, 8, 8, 3)),
  "vgg11": (lambda: models.vgg11(widths=(4, 6, 8, 8, 10, 10, 12, 12)), (2, 32, 32, 3)),
  "resnet20": (lambda: models.resnet20(stage_widths=(4, 6, 8)), (2, 16, 16, 3)),
  # the same residual structure, one block per stage: a third of ResNet-20's compile
  "resnet_1block": (
    lambda: models.resnet20(stage_widths=(4, 6, 8), blocks_per_stage=(1, 1, 1)),
    (2, 16, 16, 3),
  ),
}
SLOW_SHRINK_MODELS = ("lenet5", "conv4", "resnet20")  # make test time


@pytest.mark.parametrize(
  "name",
  [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SHRINK_MODELS else n for n in sorted(SHRINK_MODELS)],
)
def test_the_shrunk_model_equals_the_masked_one_in_outputs_macs_and_params(name):
  make, shape = SHRINK_MODELS[name]
  m = make()
  x = jax.random.normal(jax.random.key(1), shape)
  v = _positive_vars(_perturbed(m.init(jax.random.key(0), x), jax.random.key(2)))
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x)
  keep = _random_keep(groups, jax.random.key(3))
  small, v_small = surgery.shrink_module(m, v, groups, keep, x)
  masks = surgery.channel_masks(v, groups, keep)
  masked = pj.apply_masks(v, masks)

  np.testing.assert_allclose(small.apply(v_small, x), m.apply(masked, x), rtol=2e-5, atol=2e-5)
  x1 = x[:1]
  shrunk_flops = pj.count_flops(lambda v, x: small.apply(v, x), v_small, x1)
  masked_flops = pj.count_flops(lambda v, x: m.apply(v, x), masked, x1)
  assert shrunk_flops.macs == shrunk_flops.effective_macs == masked_flops.effective_macs
  assert masked_flops.effective_macs < masked_flops.macs
  assert pj.count_params(v_small["params"]).total == pj.count_params(masked["params"]).nonzero
  # each group kept exactly its channels: the widths read back equal the kept counts
  for i, g in enumerate(groups):
    for mem in g.members:
      leaf = dict((surgery.path_str(p), a) for p, a in jax.tree_util.tree_flatten_with_path(v_small)[0])
      full = dict((surgery.path_str(p), a) for p, a in jax.tree_util.tree_flatten_with_path(v)[0])
      kept = int(keep[i].sum()) if i in keep else g.channels
      assert leaf[mem.path].shape[mem.axis] * g.channels == full[mem.path].shape[mem.axis] * kept


def test_shrink_and_masks_agree_on_an_mlp_for_any_keep():
  from hypothesis import given, settings
  from hypothesis import strategies as st

  params = _perturbed(
    {"a": jnp.ones((5, 7)), "b": jnp.ones(7), "c": jnp.ones((7, 6)), "d": jnp.ones((6, 3))}, jax.random.key(0)
  )

  def fn(p, x):
    return jax.nn.relu(jax.nn.relu(x @ p["a"] + p["b"]) @ p["c"]) @ p["d"]

  x = jax.random.normal(jax.random.key(1), (4, 5))
  groups = surgery.channel_groups(fn, params, x)
  sizes = {i: g.channels for i, g in enumerate(groups) if g.prunable}
  masked_fn = jax.jit(lambda p, m, x: fn(pj.apply_masks(p, m), x))

  @settings(max_examples=25, deadline=None)
  @given(
    st.fixed_dictionaries({i: st.lists(st.booleans(), min_size=n, max_size=n) for i, n in sizes.items()})
  )
  def check(bits):
    keep = {i: np.array(b) for i, b in bits.items() if any(b)}
    small = surgery.shrink(params, groups, keep)
    for i, v in keep.items():
      for mem in groups[i].members:
        assert small[mem.path].shape[mem.axis] == v.sum()
    got = fn(small, x)
    want = masked_fn(params, surgery.channel_masks(params, groups, keep), x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  check()


def test_shrink_keeps_exactly_the_rows_a_flattened_channel_owns():
  # channels-first flatten: channel c owns rows 4c .. 4c + 3 of the dense kernel
  params = {"conv": jnp.ones((3, 5, 1, 1)), "dense": jnp.arange(24.0).reshape(12, 2)}

  def fn(p, x):
    y = jax.lax.conv_general_dilated(x, p["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "OIHW", "NCHW"))
    return y.reshape(y.shape[0], -1) @ p["dense"]

  groups = surgery.channel_groups(fn, params, jnp.ones((1, 2, 2, 5)))
  i = next(i for i, g in enumerate(groups) if g.prunable)
  small = surgery.shrink(params, groups, {i: np.array([True, False, True])})
  np.testing.assert_array_equal(
    small["dense"], np.concatenate([np.arange(8.0), np.arange(16.0, 24.0)]).reshape(8, 2)
  )
  assert small["conv"].shape == (2, 5, 1, 1)


def test_a_flax_nnx_model_shrinks_through_its_state():
  from flax import nnx

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.a = nnx.Linear(4, 8, rngs=rngs)
      self.bn = nnx.BatchNorm(8, rngs=rngs)
      self.b = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.b(nnx.relu(self.bn(self.a(x))))

  net = Net(nnx.Rngs(0))
  net.eval()
  graphdef, state = nnx.split(net)
  state = _perturbed(state, jax.random.key(1))
  fn = lambda s, x: nnx.merge(graphdef, s)(x)  # noqa: E731
  x = jax.random.normal(jax.random.key(2), (3, 4))
  groups = surgery.channel_groups(fn, state, x)
  (i,) = [i for i, g in enumerate(groups) if g.prunable]
  assert groups[i].channels == 8 and len(groups[i].members) == 7  # a's kernel and bias, BN x4, b
  keep = {i: np.arange(8) % 3 != 0}
  small = surgery.shrink(state, groups, keep)
  masked = pj.apply_masks(state, surgery.channel_masks(state, groups, keep))
  np.testing.assert_allclose(fn(small, x), fn(masked, x), rtol=1e-5, atol=1e-6)
  assert nnx.merge(graphdef, small).b.kernel[...].shape == (5, 3)


def test_an_equinox_cnn_shrinks_as_a_module():
  import equinox as eqx

  keys = jax.random.split(jax.random.key(0), 3)
  net = eqx.nn.Sequential(
    [
      eqx.nn.Conv2d(3, 6, 3, padding=1, key=keys[0]),
      eqx.nn.Lambda(jax.nn.relu),
      eqx.nn.Conv2d(6, 5, 3, padding=1, key=keys[1]),
      eqx.nn.Lambda(jax.nn.relu),
      eqx.nn.Lambda(lambda x: x.reshape(-1)),
      eqx.nn.Linear(5 * 4 * 4, 4, key=keys[2]),
    ]
  )
  arrays, static = eqx.partition(net, eqx.is_array)
  fn = lambda p, x: jax.vmap(eqx.combine(p, static))(x)  # noqa: E731
  x = jax.random.normal(jax.random.key(1), (2, 3, 4, 4))
  groups = surgery.channel_groups(fn, arrays, x)
  keep = _random_keep(groups, jax.random.key(4))
  small = eqx.combine(surgery.shrink(arrays, groups, keep), static)
  masked = pj.apply_masks(arrays, surgery.channel_masks(arrays, groups, keep))
  np.testing.assert_allclose(jax.vmap(small)(x), fn(masked, x), rtol=1e-5, atol=1e-5)


def test_shrink_refuses_what_it_cannot_honour():
  params = {"a": jnp.ones((4, 3)), "b": jnp.ones((3, 2))}
  groups = surgery.channel_groups(lambda p, x: x @ p["a"] @ p["b"], params, jnp.ones((1, 4)))
  (i,) = [i for i, g in enumerate(groups) if g.prunable]
  fixed = next(j for j, g in enumerate(groups) if not g.prunable)
  with pytest.raises(ValueError, match=r"layer collapse.*allow_collapse=True"):
    surgery.shrink(params, groups, {i: np.zeros(3, bool)})
  assert surgery.shrink(params, groups, {i: np.zeros(3, bool)}, allow_collapse=True)["b"].shape == (0, 2)
  with pytest.raises(ValueError, match=r"keep names groups \[7\], but there are 3 groups"):
    surgery.shrink(params, groups, {7: np.ones(3, bool)})
  with pytest.raises(ValueError, match=r"keep\[1\] must be a bool vector of shape \(3,\).*got bool\[4\]"):
    surgery.shrink(params, groups, {i: np.ones(4, bool)})
  with pytest.raises(ValueError, match=r"must be a bool vector.*got int64\[3\]"):
    surgery.shrink(params, groups, {i: np.array([0, 2, 1])})
  with pytest.raises(ValueError, match=r"keep has 1 entries for 3 groups"):
    surgery.shrink(params, groups, [None])
  with pytest.raises(ValueError, match=rf"group {fixed} cannot shrink: 4 channels \(fixed"):
    surgery.shrink(params, groups, {fixed: np.arange(4) < 2})
  with pytest.raises(ValueError, match=r"has the member a axis 0, which this tree lacks"):
    surgery.shrink({"b": params["b"]}, groups, {i: np.arange(3) < 2})
  with pytest.raises(ValueError, match=r"keep\[1\] is traced.*channel_masks is the traceable form"):
    jax.jit(lambda k: surgery.shrink(params, groups, {i: k}))(np.ones(3, bool))
  with pytest.raises(ValueError, match=r"group_scores: group \d has the member a, which this tree lacks"):
    from pruning_jax import structured

    structured.group_scores({"b": params["b"]}, groups, "l1")
  with pytest.raises(ValueError, match=r"shrink_module: variables must be the module's Flax variables"):
    surgery.shrink_module(models.LeNet300100(), params, groups, {}, jnp.ones((1, 4)))
  with pytest.raises(ValueError, match="shrink_module: dict has no widths_of"):
    surgery.shrink_module({}, {"params": params}, groups, {}, jnp.ones((1, 4)))


def test_channel_masks_under_jit_check_collapse_at_run_time():
  params = {"a": jnp.ones((4, 3)), "b": jnp.ones((3, 2))}
  groups = surgery.channel_groups(lambda p, x: x @ p["a"] @ p["b"], params, jnp.ones((1, 4)))
  (i,) = [i for i, g in enumerate(groups) if g.prunable]
  masks_of = jax.jit(lambda k: surgery.channel_masks(params, groups, {i: k}))
  assert masks_of(np.array([True, False, True]))["b"].ravel().tolist() == [True, False, True]
  with pytest.raises(Exception, match="layer collapse"):
    jax.block_until_ready(masks_of(np.zeros(3, bool)))


def test_a_transformer_mlp_block_prunes_its_hidden_width_and_keeps_the_normalised_stream():
  import flax.linen as nn

  class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.Dense(32, name="up")(nn.LayerNorm(name="ln1")(x))
      x = x + nn.Dense(8, name="down")(nn.gelu(h))
      return nn.Dense(5, name="head")(nn.LayerNorm(name="ln2")(x))

  m = Block()
  x = jax.random.normal(jax.random.key(0), (2, 6, 8))
  v = _perturbed(m.init(jax.random.key(1), x), jax.random.key(2))
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x)
  prunable = [g for g in groups if g.prunable]
  assert [(g.channels, {(mm.path, mm.axis, mm.role) for mm in g.members}) for g in prunable] == [
    (
      32,
      {("params/up/kernel", 1, "out"), ("params/up/bias", 0, "elementwise"), ("params/down/kernel", 0, "in")},
    )
  ]
  stream = next(g for g in groups if any(mm.path == "params/ln1/scale" for mm in g.members))
  assert not stream.prunable  # LayerNorm's statistics read every channel of the stream
  keep = {groups.index(prunable[0]): np.arange(32) % 4 != 0}
  masked = pj.apply_masks(v, surgery.channel_masks(v, groups, keep))
  small = surgery.shrink(v, groups, keep)
  assert small["params"]["up"]["kernel"].shape == (8, 24)
  big = lambda v, x: m.apply(v, x)  # noqa: E731
  # the block's own computation on the smaller arrays (Flax modules fix their widths)
  up, down = small["params"]["up"], small["params"]["down"]

  def shrunk_fn(x):
    p = small["params"]
    h = nn.LayerNorm().apply({"params": p["ln1"]}, x) @ up["kernel"] + up["bias"]
    y = x + nn.gelu(h) @ down["kernel"] + down["bias"]
    return nn.LayerNorm().apply({"params": p["ln2"]}, y) @ p["head"]["kernel"] + p["head"]["bias"]

  np.testing.assert_allclose(shrunk_fn(x), big(masked, x), rtol=2e-5, atol=2e-5)


def test_concatenated_channels_are_kept_whole_and_slices_pass_other_axes():
  params = {
    "a": jnp.ones((4, 3)),
    "b": jnp.ones((4, 5)),
    "c": jnp.ones((8, 2)),
    "d": jnp.ones((4, 6)),
    "e": jnp.ones((6, 2)),
  }

  def fn(p, x):
    y = jnp.concatenate([x @ p["a"], x @ p["b"]], axis=-1)  # 3 + 5 channels into c
    z = jax.nn.relu(x @ p["d"])[:, None][:, :, ::1]  # an identity slice on a non-channel axis
    return y @ p["c"] + z[:, 0] @ p["e"]

  groups = surgery.channel_groups(fn, params, jnp.ones((2, 4)))
  fixed = {(mm.path, mm.axis) for g in groups if not g.prunable for mm in g.members}
  assert {("a", 1), ("b", 1), ("c", 0)} <= fixed
  (g,) = [g for g in groups if g.prunable]
  assert {(mm.path, mm.axis) for mm in g.members} == {("d", 1), ("e", 0)}


def test_an_embedding_lookup_keeps_its_table_whole_and_the_mlp_after_it_prunes():
  params = {"emb": jnp.ones((50, 8)), "up": jnp.ones((8, 16)), "down": jnp.ones((16, 50))}

  def fn(p, tokens):
    x = jnp.take(p["emb"], tokens, axis=0)  # a gather at computed indices
    return jax.nn.relu(x @ p["up"]) @ p["down"]

  groups = surgery.channel_groups(fn, params, jnp.zeros((2, 7), jnp.int32))
  assert {(m.path, m.axis) for g in groups if g.prunable for m in g.members} == {("up", 1), ("down", 0)}
  assert {(m.path, m.axis) for g in groups if not g.prunable for m in g.members} >= {
    ("emb", 0),
    ("emb", 1),
    ("up", 0),
  }


def test_scaling_a_channel_group_gates_the_activation_it_produces_on_any_pytree():
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

    def __call__(self, x, gate=None):
      h = self.c1(x)
      if gate is not None:  # channels first: the gate multiplies each map of c1's output
        h = h * gate[:, None, None]
      return self.d(jax.nn.relu(self.c2(jax.nn.relu(h))).reshape(-1))

  params, static = eqx.partition(CNN(), eqx.is_array)
  x = jax.random.normal(jax.random.key(1), (2, 3, 8, 8))
  fn = lambda p, x: jax.vmap(eqx.combine(p, static))(x)  # noqa: E731
  groups = surgery.channel_groups(fn, params, x)
  (i,) = [k for k, g in enumerate(groups) if g.channels == 6]
  g = jax.random.uniform(jax.random.key(2), (6,))
  # the filters and the bias: g * (W x + b)
  gate = lambda p, g: surgery.scale_channels(p, groups, {i: g}, roles=("out", "elementwise"))  # noqa: E731
  scaled = jax.jit(gate)(params, g)
  want = jax.vmap(lambda x: eqx.combine(params, static)(x, g))(x)
  np.testing.assert_allclose(fn(scaled, x), want, rtol=1e-5, atol=1e-6)
  # the consumer's input slice (role "in") is not touched
  np.testing.assert_array_equal(scaled.c2.weight, params.c2.weight)
  with pytest.raises(ValueError, match=r"scales\[0\] must be a float vector of shape \(\d+,\)"):
    surgery.scale_channels(params, groups, [jnp.ones(7)] + [None] * (len(groups) - 1))
  with pytest.raises(ValueError, match=rf"scales\[{i}\] must be a float vector of shape \(6,\).*int32"):
    surgery.scale_channels(params, groups, {i: jnp.ones(6, jnp.int32)})
  with pytest.raises(ValueError, match=r"roles \['bias'\] are unknown"):
    surgery.scale_channels(params, groups, {i: g}, roles=("bias",))
  with pytest.raises(ValueError, match=r"scales names groups \[9\]"):
    surgery.scale_channels(params, groups, {9: g})

"""Channel scores against NumPy, exact selection counts, the MACs target."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pruning_jax as pj
from pruning_jax import models, structured, surgery


def _vgg(widths=(4, 6, 8, 8, 10, 10, 12, 12)):
  m = models.vgg11(widths=widths)
  x = jnp.ones((1, 32, 32, 3))
  v = m.init(jax.random.key(0), x)
  leaves, treedef = jax.tree.flatten(v)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  v = jax.tree.unflatten(
    treedef, [a + jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
  )
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x)
  return m, v, x, groups


def _conv_out(v, i):
  return np.asarray(v["params"][f"Conv3x3_{i}"]["kernel"])  # HWIO


def _group_of(groups, path, axis):
  return next(i for i, g in enumerate(groups) for mem in g.members if (mem.path, mem.axis) == (path, axis))


def test_norm_and_bn_scale_scores_against_numpy():
  m, v, x, groups = _vgg()
  l1 = structured.group_scores(v, groups, "l1")
  l2 = structured.group_scores(v, groups, "l2")
  bn = structured.group_scores(v, groups, "bn_scale")
  for i in range(8):
    g = _group_of(groups, f"params/Conv3x3_{i}/kernel", 3)
    k = _conv_out(v, i)
    np.testing.assert_allclose(l1[g], np.abs(k).sum(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(l2[g], np.sqrt(np.square(k).sum(axis=(0, 1, 2))), rtol=1e-5)
    np.testing.assert_allclose(bn[g], np.abs(v["params"][f"BatchNorm_{i}"]["scale"]), rtol=1e-6)
  assert all(s is None for s, gr in zip(l1, groups, strict=True) if not gr.prunable)


def test_fpgm_scores_are_summed_distances_between_filters():
  m, v, x, groups = _vgg()
  fpgm = structured.group_scores(v, groups, "fpgm")
  for i in (0, 5):
    g = _group_of(groups, f"params/Conv3x3_{i}/kernel", 3)
    f = _conv_out(v, i).reshape(-1, groups[g].channels).T  # one row per filter
    want = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)).sum(1)
    np.testing.assert_allclose(fpgm[g], want, rtol=1e-4)


def test_taylor_scores_sum_abs_g_times_w_over_every_member_including_flattened_rows():
  # channels-first flatten: dense rows 4c .. 4c + 3 belong to channel c
  params = {"conv": jnp.arange(1.0, 16.0).reshape(3, 5, 1, 1), "dense": jnp.arange(24.0).reshape(12, 2) - 5}

  def fn(p, x):
    y = jax.lax.conv_general_dilated(x, p["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "OIHW", "NCHW"))
    return jnp.sum(jnp.tanh(y.reshape(y.shape[0], -1) @ p["dense"]))

  x = jax.random.normal(jax.random.key(0), (1, 2, 2, 5))
  groups = surgery.channel_groups(fn, params, x)
  grads = jax.grad(fn)(params, x)
  (g,) = [i for i, gr in enumerate(groups) if gr.prunable and gr.channels == 3]
  got = structured.group_scores(params, groups, "taylor", grads=grads)[g]
  gw = {k: np.abs(np.asarray(params[k]) * np.asarray(grads[k])) for k in params}
  want = gw["conv"].reshape(3, -1).sum(1) + gw["dense"].reshape(3, 4, 2).sum((1, 2))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  with pytest.raises(ValueError, match="'taylor' needs grads="):
    structured.group_scores(params, groups, "taylor")


def test_select_channels_removes_exact_counts_globally_and_per_group():
  m, v, x, groups = _vgg()
  scores = structured.group_scores(v, groups, "l1")
  prunable = [i for i, g in enumerate(groups) if g.prunable]
  total = sum(groups[i].channels for i in prunable)
  for amount in (0.0, 0.13, 0.5, 0.77):
    # raw L1 sums rank the first layer's small filters lowest: allow it to empty
    keep = structured.select_channels(scores, groups, amount, allow_collapse=True)
    assert sum(int((~k).sum()) for k in keep.values()) == round(amount * total)
    # global: every removed score is at most every kept one
    removed = np.concatenate([np.asarray(scores[i])[~keep[i]] for i in prunable])
    kept = np.concatenate([np.asarray(scores[i])[keep[i]] for i in prunable])
    assert removed.size == 0 or removed.max() <= kept.min()
    per = structured.select_channels(scores, groups, amount, scope="group")
    for i in prunable:
      assert int((~per[i]).sum()) == round(amount * groups[i].channels)
  normed = structured.select_channels(scores, groups, 0.5, normalize="max")
  assert sum(int((~k).sum()) for k in normed.values()) == round(0.5 * total)
  with pytest.raises(ValueError, match=r"empties groups \[0\].*Conv3x3_0/kernel axis 3.*layer collapse"):
    structured.select_channels(scores, groups, 0.13)


def test_ties_are_broken_exactly_and_collapse_is_refused():
  groups = [
    surgery.ChannelGroup(4, (surgery.Member("a", 1, 1),), True),
    surgery.ChannelGroup(2, (surgery.Member("b", 1, 1),), True),
  ]
  # among equal scores the later channels go first
  keep = structured.select_channels([np.ones(4), np.ones(2)], groups, 0.5, allow_collapse=True)
  assert keep[0].tolist() == [True, True, True, False] and not keep[1].any()
  with pytest.raises(ValueError, match=r"empties groups \[1\].*layer collapse"):
    structured.select_channels([np.full(4, 5.0), np.array([1.0, 2.0])], groups, 0.34)
  ok = structured.select_channels([np.full(4, 5.0), np.array([1.0, 2.0])], groups, 0.34, allow_collapse=True)
  assert not ok[1].any()
  with pytest.raises(ValueError, match=r"scores\[0\] must have shape \(4,\)"):
    structured.select_channels([np.ones(3), np.ones(2)], groups, 0.5)
  with pytest.raises(ValueError, match="scope must be one of"):
    structured.select_channels([np.ones(4), np.ones(2)], groups, 0.5, scope="layer")
  with pytest.raises(ValueError, match="amount must be a fraction in"):
    structured.select_channels([np.ones(4), np.ones(2)], groups, 1.5)
  with pytest.raises(ValueError, match="unknown criterion 'l3'"):
    structured.group_scores({}, groups, "l3")


# both in the slow suite (make test time): the MACs target is met, shrunk, in
# test_channel_methods.test_the_macs_target_is_met_eagerly_and_under_jit (fast)
@pytest.mark.parametrize("reduction", [pytest.param(r, marks=pytest.mark.slow) for r in (0.3, 0.5)])
def test_the_macs_target_is_met_by_the_shrunk_network(reduction):
  m, v, x, groups = _vgg((16, 32, 64, 64, 128, 128, 128, 128))
  reference = pj.count_flops(lambda v, x: m.apply(v, x), v, x).macs
  scores = structured.group_scores(v, groups, "l2")
  t = structured.keep_for_macs(
    lambda v, x: m.apply(v, x),
    v,
    groups,
    scores,
    reduction,
    x,
    reference_macs=reference,
    normalize="max",
    rtol=1e-2,  # a channel of this small net is up to ~0.5% of its MACs
  )
  assert abs(t.reduction - reduction) <= 1e-2 * reduction
  small, v_small = surgery.shrink_module(m, v, groups, t.keep, x)
  assert pj.count_flops(lambda v, x: small.apply(v, x), v_small, x).macs == t.macs
  again = structured.select_channels(scores, groups, t.amount, normalize="max")
  assert again.keys() == t.keep.keys() and all(np.array_equal(again[i], t.keep[i]) for i in again)


@pytest.mark.slow  # make test time (an error path)
def test_the_macs_target_says_when_it_cannot_be_met():
  m, v, x, groups = _vgg()
  fn = lambda v, x: m.apply(v, x)  # noqa: E731
  reference = pj.count_flops(fn, v, x).macs
  scores = structured.group_scores(v, groups, "l1")
  with pytest.raises(ValueError, match="already reduces the MACs"):
    structured.keep_for_macs(fn, v, groups, scores, 0.1, x, reference_macs=reference * 2)
  with pytest.raises(ValueError, match="no removed fraction within rtol"):
    structured.keep_for_macs(fn, v, groups, scores, 0.5, x, reference_macs=reference, rtol=1e-9, max_iter=5)
  with pytest.raises(ValueError, match=r"reduction must be in \(0, 1\)"):
    structured.keep_for_macs(fn, v, groups, scores, 1.0, x, reference_macs=reference)


def test_a_target_beyond_the_prunable_macs_is_named():
  # x @ c joins two fixed axes: its 8 * 3 MACs can never go
  params = {"a": jnp.ones((8, 4)), "b": jnp.ones((4, 3)), "c": jnp.ones((8, 3))}
  fn = lambda p, x: x @ p["a"] @ p["b"] + x @ p["c"]  # noqa: E731
  x = jnp.ones((1, 8))
  groups = surgery.channel_groups(fn, params, x)
  scores = structured.group_scores(params, groups, "l1")
  with pytest.raises(ValueError, match="removing every prunable channel reduces the MACs by only 0.6471"):
    structured.keep_for_macs(fn, params, groups, scores, 0.9, x, reference_macs=68, allow_collapse=True)


def test_round_to_keeps_multiples_of_the_best_channels():
  groups = [
    surgery.ChannelGroup(40, (surgery.Member("a", 1, 1),), True),
    surgery.ChannelGroup(20, (surgery.Member("b", 1, 1),), True),
    surgery.ChannelGroup(5, (surgery.Member("c", 1, 1),), True),
  ]
  scores = [np.random.default_rng(i).permutation(g.channels).astype(np.float32) for i, g in enumerate(groups)]
  keep = structured.select_channels(scores, groups, 0.45, scope="group", round_to=8)
  # 22 -> 24, 11 -> 8, 3 -> 5 (a group below one multiple is kept whole)
  assert [int(k.sum()) for k in keep.values()] == [24, 8, 5]
  for i, k in keep.items():  # the kept ones are the best of their group
    assert np.asarray(scores[i])[k].min() > np.asarray(scores[i])[~k].max() if (~k).any() else True
  traced = jax.jit(lambda s: structured.select_channels(s, groups, 0.45, scope="group", round_to=8))(scores)
  assert all(np.array_equal(traced[i], keep[i]) for i in keep)
  with pytest.raises(ValueError, match="round_to must be an int >= 1"):
    structured.select_channels(scores, groups, 0.45, round_to=0)

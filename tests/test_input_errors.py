"""Regression tests for inputs the library once took silently or answered with JAX's own error
(issue 13, section 2): each is now an exact result or a message that names the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pruning_jax as pj
from pruning_jax import structures

BIG = (50_000, 50_000)  # 2.5e9 weights: past int32


def _big_masks():
  params = {"w": jax.ShapeDtypeStruct(BIG, jnp.float32), "v": jax.ShapeDtypeStruct((3,), jnp.float32)}
  masks = {"w": jnp.ones((1, BIG[1]), bool).at[0, :10].set(False), "v": jnp.array([True, False, True])}
  removed = 10 * BIG[0] + 1
  return params, masks, removed, BIG[0] * BIG[1] + 3


def test_counts_above_int32_are_exact_on_the_host():
  params, masks, removed, total = _big_masks()
  kept, n = pj.count_kept(masks, params=params)
  assert (int(kept), int(n)) == (total - removed, total)
  assert n.dtype == np.int64


def test_density_and_sparsity_above_int32_under_jit():
  params, masks, removed, total = _big_masks()
  s = jax.jit(lambda m: pj.sparsity(m, params=params))(masks)
  d = jax.jit(lambda m: pj.density(m, params=params))(masks)
  np.testing.assert_allclose(float(s), removed / total, rtol=1e-6)
  np.testing.assert_allclose(float(d), 1 - removed / total, rtol=1e-6)


def test_a_traced_count_above_int32_without_x64_says_how_to_count():
  params, masks, _, _ = _big_masks()
  with pytest.raises(ValueError, match="exceed int32.*jax_enable_x64"):
    jax.jit(lambda m: pj.count_kept(m, params=params))(masks)


def test_small_counts_stay_int32():
  kept, total = pj.count_kept({"w": jnp.array([True, False, True])})
  assert kept.dtype == total.dtype == jnp.int32
  assert (int(kept), int(total)) == (2, 3)


def test_nm_with_a_traced_other_sparsity_stops_the_computation():
  scores = {"w": jnp.arange(16.0).reshape(2, 8)}
  run = jax.jit(lambda s: pj.masks_from_scores(scores, s, structure=structures.nm(2, 4)))
  assert int(run(0.5)["w"].sum()) == 8
  assert int(run(0.0)["w"].sum()) == 8
  with pytest.raises(Exception, match=r"nm\(2:4\) fixes sparsity at 0.5"):
    jax.block_until_ready(run(0.9))


def test_blocks_with_a_repeated_axis_is_an_error():
  with pytest.raises(ValueError, match="name an axis twice"):
    structures.blocks((2, 2), axes=(0, 0))
  same_axis = structures.blocks((2, 2), axes=(1, -1))
  with pytest.raises(ValueError, match=r"same axis twice for the leaf at \['w'\]"):
    pj.masks_from_scores({"w": jnp.ones((4, 4))}, 0.5, structure=same_axis)


@pytest.mark.parametrize("fn", [pj.selection.exclude_first, pj.selection.exclude_last])
@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_exclude_first_last_need_a_count(fn, n):
  with pytest.raises(ValueError, match="n must be a number of layers >= 0"):
    fn({"a": {"kernel": True}, "b": {"kernel": True}}, n)


def test_group_lasso_axis_must_exist_in_every_leaf():
  params = {"conv": jnp.ones((3, 3, 2, 4)), "dense": jnp.ones((4, 10))}
  tx = pj.transforms.group_lasso_penalty(1.0, axis=2)
  with pytest.raises(ValueError, match=r"axis 2 does not exist in the leaf at \['dense'\]"):
    tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)


def _cost(p):
  return jnp.sum(p["w"])


def test_budget_penalty_refuses_a_target_it_could_never_meet():
  w = {"w": jnp.ones(10)}
  tx = pj.transforms.budget_penalty(1.0, _cost, target=11.0, capacity_fn=lambda p: p["w"].size)
  with pytest.raises(ValueError, match="at most the capacity"):
    tx.init(w)
  ok = pj.transforms.budget_penalty(1.0, _cost, target=10.0, capacity_fn=lambda p: p["w"].size)
  ok.init(w)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"weight": 1.0, "target": -1.0}, "target must be >= 0"),
    ({"weight": -0.5, "target": 1.0}, "weight must be >= 0"),
  ],
)
def test_budget_penalty_signs(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pj.transforms.budget_penalty(cost_fn=_cost, **kwargs)


def test_budget_penalty_target_fn_below_zero_is_caught_at_init():
  tx = pj.transforms.budget_penalty(1.0, _cost, target_fn=lambda p: -3.0)
  with pytest.raises(ValueError, match="C_target must be >= 0"):
    tx.init({"w": jnp.ones(3)})


def test_reparam_budget_targets_the_kept_count_within_its_capacity():
  params = {"w": jnp.ones((4, 4)) * 0.1}
  pruner = pj.methods.reparam(0.5, budget_weight=1.0)
  state = pruner.init(jax.random.key(0), params)
  budget = pruner.penalty.init({"params": params, "learned": state.learned})
  assert float(budget.target) == 0.5 * 16  # C_target = (1 - s) N: the capacity check passes it


@pytest.mark.parametrize("ratio", [1.5, -0.1, float("nan")])
def test_mean_gate_penalty_ratio_is_a_mean_gate(ratio):
  with pytest.raises(ValueError, match="target_ratio must be a mean gate value in \\[0, 1\\]"):
    pj.transforms.mean_gate_penalty(0.5, ratio, selection="gate")


@pytest.mark.parametrize(
  "factory",
  [
    lambda: pj.transforms.l1_penalty(-1.0),
    lambda: pj.transforms.group_lasso_penalty(-1.0),
    lambda: pj.transforms.mean_gate_penalty(-1.0, 0.2, selection="gate"),
  ],
)
def test_penalty_weights_are_not_negative(factory):
  with pytest.raises(ValueError, match="weight must be >= 0"):
    factory()


@pytest.mark.parametrize(
  "sampler",
  [
    lambda k, x, t: pj.estimators.gumbel_sigmoid(k, x, t),
    lambda k, x, t: pj.estimators.gumbel_softmax(k, x, t),
    lambda k, x, t: pj.estimators.aslp_sample(k, x, t),
    lambda k, x, t: pj.estimators.hard_concrete(k, x, t),
  ],
)
def test_a_traced_temperature_of_zero_stops_the_computation(sampler):
  x = jnp.zeros(4)
  run = jax.jit(lambda t: jax.grad(lambda x: sampler(jax.random.key(0), x, t).sum())(x))
  assert np.isfinite(np.asarray(run(1.0))).all()
  with pytest.raises(Exception, match="must be > 0; a traced value outside that"):
    jax.block_until_ready(run(0.0))


@pytest.mark.parametrize("bad", [0, jnp.zeros(2), jax.random.split(jax.random.key(0), 3), None])
def test_a_bad_key_is_named_before_jax_random_sees_it(bad):
  with pytest.raises(TypeError, match="gumbel_sigmoid: key must be"):
    pj.estimators.gumbel_sigmoid(bad, jnp.zeros(4))


def test_samplers_with_swapped_arguments_say_which_is_the_key():
  with pytest.raises(TypeError, match="aslp_sample|gumbel_sigmoid: key must be a PRNG key"):
    pj.estimators.aslp_sample(jnp.zeros(4), jax.random.key(0))


def test_pruner_init_with_an_int_seed_names_the_key():
  pruner = pj.methods.aslp()
  with pytest.raises(TypeError, match="key must be a PRNG key, got int"):
    pruner.init(0, {"w": jnp.ones((4, 4))})


def test_raw_uint32_keys_are_accepted():
  out = pj.estimators.bernoulli_ste(jax.random.PRNGKey(0), jnp.zeros(4))
  assert out.shape == (4,)


@pytest.mark.parametrize("pattern", [3, b"conv", {"a": 1}])
def test_a_non_string_include_pattern_is_named(pattern):
  with pytest.raises(TypeError, match="select: include must be a regex string"):
    pj.select({"conv": jnp.ones((2, 2))}, include=pattern)


def test_an_invalid_regex_is_named():
  with pytest.raises(ValueError, match=r"exclude pattern '\(' is not a valid regex"):
    pj.select({"conv": jnp.ones((2, 2))}, exclude="(")


def test_counting_under_jit_says_to_count_outside():
  params = {"w": jnp.ones((2, 3))}

  def flops(p):
    return pj.count_flops(lambda p, x: x @ p["w"], p, jnp.ones((1, 2))).macs

  with pytest.raises(ValueError, match=r"count_flops: params at \['w'\] is traced"):
    jax.jit(flops)(params)
  with pytest.raises(ValueError, match=r"count_params: params at \['w'\] is traced"):
    jax.jit(lambda p: pj.count_params(p).total)(params)

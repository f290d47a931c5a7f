"""Iterative magnitude pruning rounds: exact kept counts over rounds, nested masks, layers at
their own rate, the smallest kept weights removed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning_jax as pj


def _params(key=0):
  k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
  return {
    "Dense_0": {"kernel": jax.random.normal(k1, (20, 30)), "bias": jnp.zeros(30)},
    "Dense_1": {"kernel": jax.random.normal(k2, (30, 25)), "bias": jnp.zeros(25)},
    "Dense_2": {"kernel": jax.random.normal(k3, (25, 10)), "bias": jnp.zeros(10)},
  }


@settings(max_examples=10, deadline=None)
@given(rate=st.sampled_from([0.2, 0.1, 0.5]), rounds=st.integers(1, 6))
def test_each_round_removes_its_rate_of_the_kept_weights_exactly_and_nests(rate, rounds):
  params = _params()
  pruner = pj.methods.imp_round(rate, layer_rates={"Dense_2/kernel": rate / 2})
  init = jax.jit(lambda p, m: pruner.init(jax.random.key(0), p, pj.InitContext(masks=m)).buffers.masks)
  masks, kept_body, kept_out = None, 20 * 30 + 30 * 25, 25 * 10
  for _ in range(rounds):
    new = init(params, masks) if masks is not None else pruner.init(jax.random.key(0), params).buffers.masks
    kept_body -= round(rate * kept_body)
    kept_out -= round(rate / 2 * kept_out)
    body = int(new["Dense_0"]["kernel"].sum() + new["Dense_1"]["kernel"].sum())
    assert (body, int(new["Dense_2"]["kernel"].sum())) == (kept_body, kept_out)
    if masks is not None:  # nested: nothing removed comes back
      for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(new), strict=True):
        assert not np.any(np.asarray(b) & ~np.asarray(a))
    masks = new


def test_a_round_removes_the_smallest_kept_weights_over_one_global_ranking():
  params = _params(1)
  pruner = pj.methods.imp_round(0.3)
  first = pruner.masks(params, pruner.init(jax.random.key(0), params))
  second = pruner.masks(params, pruner.init(jax.random.key(0), params, pj.InitContext(masks=first)))
  kernels = [k for k in params if True]
  gone = np.concatenate(
    [np.abs(params[k]["kernel"])[first[k]["kernel"] & ~second[k]["kernel"]] for k in kernels]
  )
  kept = np.concatenate([np.abs(params[k]["kernel"])[second[k]["kernel"]] for k in kernels])
  assert gone.size == round(0.3 * sum(int(first[k]["kernel"].sum()) for k in kernels))
  assert gone.max() <= kept.min()


def test_a_layer_rate_that_matches_nothing_is_named():
  with pytest.raises(
    ValueError, match=r"layer_rates pattern 'fc9' matches no selected leaf; selected: \['Dense_0/kernel'"
  ):
    pj.methods.imp_round(0.2, layer_rates={"fc9": 0.1}).init(jax.random.key(0), _params())
  with pytest.raises(ValueError, match=r"imp_round: layer_rates\['x'\]"):
    pj.methods.imp_round(0.2, layer_rates={"x": 1.0})
  with pytest.raises(ValueError, match="imp_round: rate"):
    pj.methods.imp_round(-0.1)

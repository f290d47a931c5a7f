import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import np_keep, np_keys
from hypothesis import given
from hypothesis import strategies as st

from pruning_jax import thresholds

# Few distinct values -> many ties at every threshold.
tied_arrays = st.lists(
  st.lists(st.sampled_from([-2.0, -0.0, 0.0, 0.5, 0.5, 1.0, 3.0]), min_size=1, max_size=40),
  min_size=1,
  max_size=4,
)


def test_ordered_keys_match_float_order():
  x = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, np.inf], np.float32)
  k = np.asarray(thresholds.ordered_keys(jnp.asarray(x)))
  np.testing.assert_array_equal(k, np_keys(x))
  assert k[3] == k[4]  # -0 == 0
  assert np.all(np.diff(k.astype(np.int64))[np.arange(7) != 3] > 0)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_ordered_keys_low_precision_is_exact(dtype):
  x = jax.random.normal(jax.random.key(0), (1000,)).astype(dtype)
  k = np.asarray(thresholds.ordered_keys(x)).astype(np.int64)
  xs = np.asarray(x.astype(jnp.float32))
  o = np.argsort(xs, kind="stable")
  assert np.all(np.diff(k[o]) >= 0)
  assert np.all((np.diff(k[o]) == 0) == (np.diff(xs[o]) == 0))


@given(tied_arrays, st.floats(0.0, 1.0), st.sampled_from(thresholds.LAYOUTS))
def test_global_removal_matches_reference(arrays, frac, layout):
  # both layouts: "leaves" (per-leaf counts, what sharded scores use) and "compact" (the one-device layout)
  arrays = [np.asarray(a, np.float32) for a in arrays]
  n = sum(a.size for a in arrays)
  k = int(round(frac * n))
  f = jax.jit(lambda xs, k: thresholds.removal_keep_masks(xs, k[None], layout=layout))
  got = f([jnp.asarray(a) for a in arrays], jnp.int32(k))
  for g, r in zip(got, np_keep(arrays, k), strict=True):
    np.testing.assert_array_equal(np.asarray(g), r)


@given(tied_arrays, st.data())
def test_grouped_removal_is_per_group(arrays, data):
  arrays = [np.asarray(a, np.float32) for a in arrays]
  ks = [data.draw(st.integers(0, a.size)) for a in arrays]
  layout = data.draw(st.sampled_from(thresholds.LAYOUTS))
  got = thresholds.removal_keep_masks(
    [jnp.asarray(a) for a in arrays], jnp.asarray(ks), range(len(arrays)), layout=layout
  )
  for g, a, k in zip(got, arrays, ks, strict=True):
    np.testing.assert_array_equal(np.asarray(g), np_keep([a], k)[0])


# Leaves long enough for whole blocks of 32 (and tails), so that the compact layout's
# narrowing, block gathers and one-key fallback all run with a tiny candidate cap.
blocky_arrays = st.lists(
  st.lists(st.sampled_from([-2.0, -0.0, 0.0, 0.5, 1.0, 3.0, 7.0]), min_size=1, max_size=150),
  min_size=1,
  max_size=4,
)


@given(blocky_arrays, st.data())
def test_compact_layout_with_a_small_candidate_cap(arrays, data):
  arrays = [np.asarray(a, np.float32) for a in arrays]
  cap = data.draw(st.sampled_from([1, 2, 5, 40]))
  if data.draw(st.booleans()):  # one global group
    groups = (0,) * len(arrays)
    ks = [data.draw(st.integers(0, sum(a.size for a in arrays)))]
  else:
    groups = tuple(range(len(arrays)))
    ks = [data.draw(st.integers(0, a.size)) for a in arrays]
  got = thresholds._removal_keep_masks(
    [jnp.asarray(a) for a in arrays], jnp.asarray(ks), groups, "compact", cap=cap
  )
  for gid, k in enumerate(ks):
    members = [i for i, g in enumerate(groups) if g == gid]
    for i, r in zip(members, np_keep([arrays[i] for i in members], k), strict=True):
      np.testing.assert_array_equal(np.asarray(got[i]), r)


@pytest.mark.parametrize("frac", [0.0, 0.05, 0.5, 0.97, 1.0])
@pytest.mark.parametrize("nan", [False, True])
def test_ties_beyond_the_candidate_cap(frac, nan):
  """Ten distinct values (one of them NaN) over 200K entries: T is tied far more than 8192 times."""
  x = jnp.floor(jax.random.uniform(jax.random.key(8), (200_003,)) * 10)
  if nan:
    x = jnp.where(x == 3, jnp.nan, x)
  k = round(frac * x.size)
  leaves = [x[:70_001], x[70_001:70_030], x[70_030:]]
  keep = thresholds.removal_keep_masks(leaves, jnp.asarray([k]), layout="compact")
  np.testing.assert_array_equal(np.concatenate([np.asarray(m) for m in keep]), np_keep([np.asarray(x)], k)[0])


@given(st.integers(1, 64), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_two_level_nonzero_matches_nonzero(size, density, seed):
  n = 4 * 32 * 64 * 2  # long enough for the two levels at every size drawn
  flags = jax.random.bernoulli(jax.random.key(seed), density * density, (n,))
  want = np.flatnonzero(np.asarray(flags))[:size]
  want = np.concatenate([want, np.full(size - want.size, n)])
  np.testing.assert_array_equal(
    np.asarray(jax.jit(thresholds._first_nonzero, static_argnums=1)(flags, size)), want
  )


def test_an_unknown_layout_is_named():
  with pytest.raises(ValueError, match=r"layout='rows' is unknown; expected one of \('leaves', 'compact'\)"):
    thresholds.removal_keep_masks([jnp.ones(3)], [1], layout="rows")


def test_matches_lax_top_k_on_random_data():
  x = jnp.round(jax.random.uniform(jax.random.key(1), (5000,)) * 50)  # heavy ties
  for keep in (0, 1, 77, 2500, 4999, 5000):
    got = thresholds.top_k_mask(x, keep)
    ref = np.zeros(5000, bool)
    ref[np.asarray(jax.lax.top_k(x, keep)[1])] = True
    np.testing.assert_array_equal(np.asarray(got), ref)


def test_kth_smallest_matches_sort():
  x = jax.random.normal(jax.random.key(2), (257,))
  xs = np.sort(np.asarray(x))
  for k in (1, 2, 100, 257):
    assert float(jax.jit(thresholds.kth_smallest)(x, k)) == xs[k - 1]


def test_float64_keys_when_enabled():
  with jax.enable_x64(True):
    x = jnp.asarray([1.0, 1.0 + 1e-12, 1.0 + 2e-12], jnp.float64)
    keep = thresholds.removal_keep_masks([x], jnp.asarray([1]))[0]
    np.testing.assert_array_equal(np.asarray(keep), [False, True, True])


def test_rejects_integer_scores():
  with pytest.raises(TypeError, match="floating"):
    thresholds.ordered_keys(jnp.arange(3))


@pytest.mark.parametrize("frac", [0.0, 0.1, 0.5, 0.9, 0.999, 1.0])
def test_large_groups_use_sample_bracket_exactly(frac):
  """Groups above the sampling size: bracketed bisection, heavy ties, exact counts."""
  n = 300_001
  x = jnp.round(jax.random.normal(jax.random.key(3), (n,)) * 30) / 30  # ~200 distinct values
  k = round(frac * n)
  keep = thresholds.removal_keep_masks([x[:100_000], x[100_000:]], jnp.asarray([k]))
  np.testing.assert_array_equal(np.concatenate([np.asarray(m) for m in keep]), np_keep([np.asarray(x)], k)[0])


@pytest.mark.parametrize("frac", [0.05, 0.5, 0.95])
def test_misleading_sample_falls_back_to_full_range(frac):
  """Every strided-sample element is an outlier, so the bracket is wrong on one side."""
  n = 1 << 18
  stride = n // (1 << 15)
  i = np.arange(n)
  x = np.where(i % stride == 0, 1000.0 + i, np.sin(i)).astype(np.float32)
  k = round(frac * n)
  for data in (x, -x):
    keep = thresholds.removal_keep_masks([jnp.asarray(data)], jnp.asarray([k]))[0]
    np.testing.assert_array_equal(np.asarray(keep), np_keep([data], k)[0])


def test_layer_groups_of_mixed_sizes():
  a = jnp.round(jax.random.normal(jax.random.key(4), (200_000,)) * 10)
  b = jnp.round(jax.random.normal(jax.random.key(5), (37,)) * 10)
  keep = thresholds.removal_keep_masks([a, b], jnp.asarray([150_000, 20]), groups=(0, 1))
  np.testing.assert_array_equal(np.asarray(keep[0]), np_keep([np.asarray(a)], 150_000)[0])
  np.testing.assert_array_equal(np.asarray(keep[1]), np_keep([np.asarray(b)], 20)[0])


def test_two_large_layer_groups_bracket_independently():
  a = jnp.round(jax.random.normal(jax.random.key(6), (150_000,)) * 20)
  b = jnp.round(jax.random.uniform(jax.random.key(7), (140_000,)) * 1000)
  keep = thresholds.removal_keep_masks([a, b], jnp.asarray([15_000, 120_000]), groups=(0, 1))
  np.testing.assert_array_equal(np.asarray(keep[0]), np_keep([np.asarray(a)], 15_000)[0])
  np.testing.assert_array_equal(np.asarray(keep[1]), np_keep([np.asarray(b)], 120_000)[0])


def test_nan_scores_are_the_least_important():
  scores = jnp.array([1.0, jnp.nan, -jnp.inf, 3.0, jnp.nan])
  keep = thresholds.removal_keep_masks([scores], jnp.array([2]))[0]
  np.testing.assert_array_equal(np.asarray(keep), [True, False, True, True, False])
  keep = thresholds.removal_keep_masks([scores], jnp.array([3]))[0]
  np.testing.assert_array_equal(np.asarray(keep), [True, False, False, True, False])

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import pruning_jax as pj
from pruning_jax import estimators as est

KEY = jax.random.key(42)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_straight_through_forward_exact_and_gradient_soft():
  soft = jnp.array([0.3, 0.7, 0.123456789], jnp.float32)
  hard = jnp.array([1.0, 0.0, 1.0])
  out = jax.jit(est.straight_through)(hard, soft)
  np.testing.assert_array_equal(np.asarray(out), [1.0, 0.0, 1.0])  # exactly, no rounding
  g = jax.grad(lambda s: jnp.sum(est.straight_through(hard, s) * jnp.array([1.0, 2.0, 3.0])))(soft)
  np.testing.assert_array_equal(np.asarray(g), [1.0, 2.0, 3.0])


def test_hard_threshold_ste():
  s = jnp.array([-1.0, 0.0, 0.5, 2.0])
  f = jax.jit(lambda s: est.hard_threshold_ste(s, 0.25))
  np.testing.assert_array_equal(np.asarray(f(s)), [0, 0, 1, 1])
  g = jax.grad(lambda s: jnp.sum(f(s) * jnp.arange(4.0)))(s)
  np.testing.assert_array_equal(np.asarray(g), np.arange(4.0))


def test_topk_ste_keeps_exactly_k_of_abs():
  s = jax.random.normal(KEY, (10, 10))
  out = jax.jit(lambda s: est.topk_ste(s, 0.3))(s)
  assert float(out.sum()) == 30
  a = np.abs(np.asarray(s)).ravel()
  ref = np.zeros(100)
  ref[np.argsort(-a, kind="stable")[:30]] = 1
  np.testing.assert_array_equal(np.asarray(out).ravel(), ref)
  g = jax.grad(lambda s: jnp.sum(est.topk_ste(s, 0.3) * 2.0))(s)
  # straight through |scores|: the sign of each score scales its gradient
  np.testing.assert_array_equal(np.asarray(g), 2.0 * np.sign(np.asarray(s)))
  with pytest.raises(ValueError, match="keep_fraction"):
    est.topk_ste(s, 0.0)


def test_bernoulli_ste_values_gradient_frequency():
  logits = jnp.array([-2.0, 0.0, 1.5])
  f = jax.jit(est.bernoulli_ste)
  z = f(KEY, logits)
  assert set(np.asarray(z).tolist()) <= {0.0, 1.0}
  np.testing.assert_array_equal(np.asarray(f(KEY, logits)), np.asarray(z))  # same key, same sample
  g = jax.grad(lambda m: jnp.sum(f(KEY, m)))(logits)
  p = _sigmoid(np.asarray(logits))
  np.testing.assert_allclose(np.asarray(g), p * (1 - p), rtol=1e-6)
  many = jax.vmap(lambda k: f(k, logits))(jax.random.split(KEY, 20000))
  np.testing.assert_allclose(np.asarray(many.mean(0)), p, atol=4 * np.sqrt(0.25 / 20000))


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_gumbel_sigmoid_relaxed_matches_numpy_and_grads(tau):
  logits = jnp.linspace(-3, 3, 7)
  f = jax.jit(lambda m: est.gumbel_sigmoid(KEY, m, tau))
  noise = np.asarray(jax.random.logistic(KEY, logits.shape, jnp.float32))
  np.testing.assert_allclose(np.asarray(f(logits)), _sigmoid((np.asarray(logits) + noise) / tau), rtol=1e-5)
  check_grads(f, (logits,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_gumbel_sigmoid_hard_is_straight_through():
  logits = jnp.linspace(-3, 3, 7)
  noise = np.asarray(jax.random.logistic(KEY, logits.shape, jnp.float32))
  z = np.asarray(logits) + noise
  out = jax.jit(lambda m: est.gumbel_sigmoid(KEY, m, 0.5, hard=True))(logits)
  np.testing.assert_array_equal(np.asarray(out), (z > 0).astype(np.float32))
  y = _sigmoid(z / 0.5)
  g = jax.grad(lambda m: jnp.sum(est.gumbel_sigmoid(KEY, m, 0.5, hard=True)))(logits)
  np.testing.assert_allclose(np.asarray(g), y * (1 - y) / 0.5, rtol=1e-5)


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0])
def test_gumbel_sigmoid_noise_scale_shrinks_the_noise_to_the_deterministic_threshold(scale):
  logits = jnp.linspace(-3, 3, 7) + 0.01  # no logit at exactly 0
  noise = np.asarray(jax.random.logistic(KEY, logits.shape, jnp.float32))
  z = np.asarray(logits) + scale * noise
  f = jax.jit(lambda m, a: est.aslp_sample(KEY, m, 0.5, a))
  np.testing.assert_array_equal(np.asarray(f(logits, scale)), (z > 0).astype(np.float32))
  y = _sigmoid(z / 0.5)
  g = jax.grad(lambda m: jnp.sum(f(m, scale)))(logits)
  np.testing.assert_allclose(np.asarray(g), y * (1 - y) / 0.5, rtol=1e-5)
  with pytest.raises(ValueError, match="noise_scale must be >= 0"):
    est.gumbel_sigmoid(KEY, logits, noise_scale=-0.5)


@pytest.mark.parametrize("axis", [0, -1])
def test_gumbel_softmax_relaxed_and_hard(axis):
  logits = jax.random.normal(KEY, (4, 5))
  k = jax.random.key(7)
  g = np.asarray(jax.random.gumbel(k, logits.shape, jnp.float32))
  z = (np.asarray(logits) + g) / 0.7
  ref = np.exp(z - z.max(axis, keepdims=True))
  ref /= ref.sum(axis, keepdims=True)
  soft = jax.jit(lambda m: est.gumbel_softmax(k, m, 0.7, axis=axis))(logits)
  np.testing.assert_allclose(np.asarray(soft), ref, rtol=1e-5)
  hard = jax.jit(lambda m: est.gumbel_softmax(k, m, 0.7, axis=axis, hard=True))(logits)
  np.testing.assert_array_equal(np.asarray(hard).sum(axis), 1.0)
  np.testing.assert_array_equal(np.asarray(hard).argmax(axis), ref.argmax(axis))
  w = jax.random.normal(jax.random.key(3), logits.shape)
  g_hard = jax.grad(lambda m: jnp.sum(est.gumbel_softmax(k, m, 0.7, axis=axis, hard=True) * w))(logits)
  g_soft = jax.grad(lambda m: jnp.sum(est.gumbel_softmax(k, m, 0.7, axis=axis) * w))(logits)
  np.testing.assert_allclose(np.asarray(g_hard), np.asarray(g_soft), rtol=1e-6)
  check_grads(
    lambda m: est.gumbel_softmax(k, m, 0.7, axis=axis),
    (logits,),
    order=1,
    modes=["rev"],
    atol=1e-2,
    rtol=1e-2,
  )


def test_aslp_matches_two_class_gumbel_softmax_reference():
  """ASLP = channel 0 of hard ST Gumbel-softmax([m, 0]); NumPy reference from the same noise."""
  m = jnp.linspace(-4, 4, 33)
  tau = 1.0
  L = np.asarray(jax.random.logistic(KEY, m.shape, jnp.float32))  # = g1 - g0
  # torch.gumbel_softmax([m, 0], tau, hard=True)[0] with noise (g1, g0): forward 1[m+g1 > g0]
  y0 = np.exp((np.asarray(m) + L) / tau) / (np.exp((np.asarray(m) + L) / tau) + 1.0)
  out = jax.jit(lambda m: pj.aslp_sample(KEY, m, tau))(m)
  np.testing.assert_array_equal(np.asarray(out), (np.asarray(m) + L > 0).astype(np.float32))
  v = jax.random.normal(jax.random.key(5), m.shape)
  g = jax.jit(jax.grad(lambda m: jnp.sum(pj.aslp_sample(KEY, m, tau) * v)))(m)
  np.testing.assert_allclose(np.asarray(g), np.asarray(v) * y0 * (1 - y0) / tau, rtol=1e-5, atol=1e-7)


def test_aslp_equals_explicit_softmax_over_stacked_logits_given_noise():
  """With Gumbels g1, g0 drawn explicitly, softmax([m+g1, g0]) channel 0 is sigmoid(m+g1-g0)."""
  m = jnp.linspace(-2, 2, 9)
  g = jax.random.gumbel(KEY, (2,) + m.shape)
  stacked = jnp.stack([m + g[0], g[1]])
  ref = jax.nn.softmax(stacked, axis=0)[0]
  np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(m + g[0] - g[1])), np.asarray(ref), rtol=1e-6)


@pytest.mark.parametrize("m0", [-1.5, 0.0, 0.8])
def test_aslp_keep_frequency_is_sigmoid_m(m0):
  n = 200_000
  m = jnp.full((n,), m0)
  freq = float(jax.jit(pj.aslp_sample)(KEY, m).mean())
  p = _sigmoid(m0)
  assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_same_key_same_sample_and_dtype():
  m = jax.random.normal(KEY, (64,)).astype(jnp.bfloat16)
  for f in (pj.aslp_sample, pj.bernoulli_ste, lambda k, x: pj.gumbel_sigmoid(k, x), pj.hard_concrete):
    a, b = jax.jit(f)(KEY, m), jax.jit(f)(KEY, m)
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    assert a.dtype == jnp.bfloat16
    assert not np.array_equal(np.asarray(f(jax.random.key(1), m), np.float32), np.asarray(a, np.float32))


def test_hard_concrete_sample_mean_and_l0():
  la = jnp.array([-3.0, 0.0, 2.0])
  beta, gamma, zeta = 2 / 3, -0.1, 1.1
  u_logit = np.asarray(jax.random.logistic(KEY, la.shape, jnp.float32))
  s = _sigmoid((u_logit + np.asarray(la)) / beta)
  ref = np.clip(s * (zeta - gamma) + gamma, 0, 1)
  np.testing.assert_allclose(np.asarray(jax.jit(pj.hard_concrete)(KEY, la)), ref, rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(pj.hard_concrete_mean(la)), np.clip(_sigmoid(np.asarray(la)) * 1.2 - 0.1, 0, 1), rtol=1e-6
  )
  l0 = np.asarray(jax.jit(pj.hard_concrete_l0)(la))
  np.testing.assert_allclose(l0, _sigmoid(np.asarray(la) - beta * np.log(-gamma / zeta)), rtol=1e-6)
  # P(z != 0) empirically matches the closed form
  n = 100_000
  zs = jax.vmap(lambda k: pj.hard_concrete(k, la))(jax.random.split(KEY, n))
  np.testing.assert_allclose(np.asarray((zs > 0).mean(0)), l0, atol=5 * np.sqrt(0.25 / n))
  check_grads(lambda a: pj.hard_concrete(KEY, a), (jnp.array([0.1, 0.3]),), order=1, modes=["rev"])


def test_reparam_gate_values_limits_and_gradient():
  c2 = math.exp(-1)
  c1 = 1 / (1 - c2)
  w = jnp.array([0.0, 0.005, 0.01, 0.02, 0.05, -0.02, 10.0])
  ref = c1 * (np.exp(-1 / ((100 * np.asarray(w, np.float64)) ** 4 + 1)) - c2)
  h = jax.jit(pj.reparam_gate)(w)
  np.testing.assert_allclose(np.asarray(h), ref, rtol=1e-5, atol=1e-7)
  assert float(h[0]) == 0.0 and abs(float(h[-1]) - 1.0) < 1e-6
  np.testing.assert_allclose(np.asarray(h)[[1, 2, 3, 4]], [0.035, 0.378, 0.910, 0.998], atol=6e-4)
  assert float(h[3]) == float(h[5])  # even in w
  # small weights keep full relative precision (the literal formula rounds them to 0 in float32)
  small = np.array([1e-4, 1e-3, 4e-3], np.float32)
  ref_small = c1 * np.expm1(-1 / ((100 * small.astype(np.float64)) ** 4 + 1) + 1) * c2
  hs = np.asarray(jax.jit(pj.reparam_gate)(jnp.asarray(small)))
  assert np.all(hs > 0)
  np.testing.assert_allclose(hs, ref_small, rtol=1e-5)
  check_grads(
    lambda w, t: pj.reparam_gate(w, t),
    (jnp.array([0.004, 0.012, -0.03]), jnp.float32(100.0)),
    order=1,
    modes=["rev"],
    atol=1e-2,
    rtol=1e-2,
  )
  g = jax.grad(lambda w: pj.reparam_gate(w))(0.0)
  assert float(g) == 0.0
  with pytest.raises(ValueError, match="positive integer"):
    pj.reparam_gate(w, 100.0, n=0)


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_non_positive_temperature(tau):
  m = jnp.zeros(3)
  for f in (
    lambda: pj.aslp_sample(KEY, m, tau),
    lambda: pj.gumbel_sigmoid(KEY, m, tau),
    lambda: pj.gumbel_softmax(KEY, m, tau),
    lambda: pj.hard_concrete(KEY, m, beta=tau),
  ):
    with pytest.raises(ValueError, match="must be > 0"):
      f()


def test_integer_logits_rejected():
  with pytest.raises(TypeError, match="floating"):
    pj.aslp_sample(KEY, jnp.arange(3))

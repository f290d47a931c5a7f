import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pruning_jax import schedules


def test_constant_and_one_shot():
  assert float(schedules.constant(0.5)(123)) == 0.5
  s = jax.jit(schedules.one_shot(0.9, 10))
  assert [float(s(t)) for t in (0, 9, 10, 11)] == [0.0, 0.0, pytest.approx(0.9), pytest.approx(0.9)]


def test_polynomial_is_zhu_gupta():
  sf, si, t0, t1, freq = 0.9, 0.1, 100, 1100, 50
  s = jax.jit(schedules.polynomial(sf, t0, t1, initial_sparsity=si, frequency=freq))
  for t in (0, 99, 100, 149, 150, 600, 1099, 1100, 5000):
    tq = min(max((t - t0) // freq * freq, 0), t1 - t0)
    ref = sf + (si - sf) * (1 - tq / (t1 - t0)) ** 3
    assert float(s(t)) == pytest.approx(ref, abs=1e-6), t
  vals = np.asarray(jax.vmap(s)(jnp.arange(0, 2000)))
  assert np.all(np.diff(vals) >= -1e-7)


def test_iterative_rounds():
  s = schedules.iterative(0.9, rounds=3, steps_per_round=10, begin_step=5)
  keep = 1 - np.array([float(s(t)) for t in (0, 5, 14, 15, 25, 100)])
  np.testing.assert_allclose(keep, [1, 0.1 ** (1 / 3), 0.1 ** (1 / 3), 0.1 ** (2 / 3), 0.1, 0.1], rtol=1e-5)


def test_cosine_drop_fraction():
  s = jax.jit(schedules.cosine_decay_fraction(0.3, 1000))
  for t in (0, 250, 500, 999, 1000, 2000):
    ref = 0.15 * (1 + math.cos(math.pi * t / 1000)) if t < 1000 else 0.0
    assert float(s(t)) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize(
  "make",
  [
    lambda: schedules.constant(1.0),
    lambda: schedules.one_shot(-0.1, 3),
    lambda: schedules.polynomial(0.9, 10, 5),
    lambda: schedules.polynomial(0.9, 0, 10, frequency=0),
    lambda: schedules.iterative(0.9, 0, 10),
    lambda: schedules.cosine_decay_fraction(0.0, 10),
  ],
)
def test_bad_arguments(make):
  with pytest.raises(ValueError):
    make()


def test_numpy_scalars_are_accepted_and_bad_values_named():
  assert float(schedules.one_shot(np.float32(0.5), at_step=0)(0)) == 0.5
  with pytest.raises(ValueError, match=r"final_sparsity must be a sparsity in \[0, 1\), got 1.5"):
    schedules.polynomial(1.5, 0, 10)
  with pytest.raises(TypeError, match="sparsity must be a real number"):
    schedules.constant("0.9")


@pytest.mark.parametrize("shape", schedules.ANNEAL_SHAPES)
def test_anneal_matches_its_formula_and_holds_the_ends(shape):
  a, b, t0, t1 = 2.0, 0.05, 10, 110
  s = jax.jit(schedules.anneal(a, b, t1, begin_step=t0, shape=shape))
  for t in (0, 10, 35, 60, 109, 110, 500):
    p = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
    want = {"exponential": a * (b / a) ** p, "linear": a + (b - a) * p, "step": b if t >= t1 else a}[shape]
    assert float(s(t)) == pytest.approx(want, rel=1e-5)


def test_anneal_errors():
  with pytest.raises(ValueError, match="shape='cosine' is unknown"):
    schedules.anneal(1.0, 0.1, 10, shape="cosine")
  with pytest.raises(ValueError, match="anneal: final must be > 0.*exponential shape needs both ends > 0"):
    schedules.anneal(1.0, 0.0, 10)
  with pytest.raises(ValueError, match="0 <= begin_step < end_step"):
    schedules.anneal(1.0, 0.0, 10, begin_step=10, shape="linear")
  assert float(schedules.anneal(1.0, 0.0, 10, shape="linear")(5)) == 0.5

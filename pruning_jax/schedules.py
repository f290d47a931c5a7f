"""Schedules: ``step -> value`` callables (like ``optax.Schedule``) built from jnp ops, so the
step may be traced inside a jitted train step.

Example:
  >>> s = polynomial(0.9, begin_step=0, end_step=100, frequency=10)
  >>> [round(float(s(t)), 4) for t in (0, 9, 10, 50, 100, 500)]
  [0.0, 0.0, 0.2439, 0.7875, 0.9, 0.9]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from pruning_jax import validation

Schedule = Callable[[jax.Array | int], jax.Array]


def _fraction(value: float, name: str) -> float:
  v = validation.fraction(value, name, what="sparsity")
  if v is None:
    raise TypeError(f"{name} must be a static number (a schedule's shape is fixed when it is built).")
  return v


def _steps(begin: int, end: int) -> None:
  if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin < end):
    raise ValueError(f"Need integer steps 0 <= begin_step < end_step, got {begin!r}, {end!r}.")


def constant(sparsity: float) -> Schedule:
  """The same sparsity at every step.

  Args:
    sparsity: removed fraction in [0, 1).

  Returns:
    A schedule ``step -> float32 sparsity``.

  Raises:
    ValueError: sparsity outside [0, 1).

  Example:
    >>> float(constant(0.5)(1000))
    0.5
  """
  s = _fraction(sparsity, "sparsity")
  return lambda step: jnp.full((), s, jnp.float32)


def one_shot(sparsity: float, at_step: int) -> Schedule:
  """0 before ``at_step``, ``sparsity`` from then on (train -> prune -> fine-tune).

  Args:
    sparsity: removed fraction in [0, 1).
    at_step: the first step at the target, >= 0.

  Returns:
    A schedule ``step -> float32 sparsity``.

  Raises:
    ValueError: sparsity outside [0, 1) or a negative or non-integer step.

  Example:
    >>> s = one_shot(0.9, at_step=100)
    >>> [round(float(s(t)), 2) for t in (99, 100)]
    [0.0, 0.9]
  """
  s = _fraction(sparsity, "sparsity")
  if not (isinstance(at_step, int) and at_step >= 0):
    raise ValueError(f"at_step must be a non-negative int, got {at_step!r}.")
  return lambda step: jnp.where(jnp.asarray(step) >= at_step, s, 0.0).astype(jnp.float32)


def polynomial(
  final_sparsity: float,
  begin_step: int,
  end_step: int,
  *,
  initial_sparsity: float = 0.0,
  power: float = 3.0,
  frequency: int = 1,
) -> Schedule:
  """Zhu & Gupta's gradual schedule.

  ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t_end - t0))^power`` for ``t0 <= t <= t_end``,
  updated every ``frequency`` steps (t is rounded down to ``t0 + k * frequency``); ``s_i``
  before ``t0`` and ``s_f`` after ``t_end``.

  Args:
    final_sparsity: s_f in [0, 1).
    begin_step: t0.
    end_step: t_end > t0.
    initial_sparsity: s_i in [0, 1).
    power: the exponent, > 0 (3 in the paper).
    frequency: steps between sparsity changes, >= 1.

  Returns:
    A schedule ``step -> float32 sparsity``.

  Raises:
    ValueError: a fraction outside [0, 1), ``begin_step >= end_step``, or a bad power or
      frequency.

  Example:
    >>> s = polynomial(0.8, begin_step=0, end_step=10, power=1.0)
    >>> [round(float(s(t)), 2) for t in (0, 5, 10)]
    [0.0, 0.4, 0.8]

  References:
    Zhu & Gupta, "To prune, or not to prune", 2017.
  """
  sf, si = _fraction(final_sparsity, "final_sparsity"), _fraction(initial_sparsity, "initial_sparsity")
  _steps(begin_step, end_step)
  if not (isinstance(frequency, int) and frequency >= 1):
    raise ValueError(f"frequency must be an int >= 1, got {frequency!r}.")
  if not power > 0:
    raise ValueError(f"power must be > 0, got {power!r}.")
  span = end_step - begin_step

  def schedule(step):
    t = jnp.asarray(step, jnp.int32) - begin_step
    t = jnp.clip((t // frequency) * frequency, 0, span)
    progress = t.astype(jnp.float32) / span
    return (sf + (si - sf) * (1.0 - progress) ** power).astype(jnp.float32)

  return schedule


def iterative(final_sparsity: float, rounds: int, steps_per_round: int, *, begin_step: int = 0) -> Schedule:
  """Iterative pruning in ``rounds`` equal-ratio rounds (lottery-ticket style).

  Round r (1-based) starts at ``begin_step + (r - 1) * steps_per_round`` and brings the density
  to ``(1 - s_f) ** (r / rounds)``, so every round removes the same fraction of what is left;
  the sparsity is 0 before ``begin_step``.

  Args:
    final_sparsity: s_f in [0, 1), reached in the last round.
    rounds: number of rounds, >= 1.
    steps_per_round: steps between rounds, >= 1.
    begin_step: the first round's step.

  Returns:
    A schedule ``step -> float32 sparsity``.

  Raises:
    ValueError: a bad fraction or round/step count.

  Example:
    >>> s = iterative(0.75, rounds=2, steps_per_round=10)
    >>> [round(float(s(t)), 4) for t in (0, 10, 100)]  # density 0.5, then 0.25
    [0.5, 0.75, 0.75]

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019.
  """
  sf = _fraction(final_sparsity, "final_sparsity")
  if not (isinstance(rounds, int) and rounds >= 1):
    raise ValueError(f"rounds must be an int >= 1, got {rounds!r}.")
  if not (isinstance(steps_per_round, int) and steps_per_round >= 1):
    raise ValueError(f"steps_per_round must be an int >= 1, got {steps_per_round!r}.")
  log_keep = math.log1p(-sf)

  def schedule(step):
    t = jnp.asarray(step, jnp.int32) - begin_step
    r = jnp.where(t >= 0, jnp.minimum(t // steps_per_round + 1, rounds), 0)
    return (1.0 - jnp.exp(log_keep * r.astype(jnp.float32) / rounds)).astype(jnp.float32)

  return schedule


def cosine_decay_fraction(initial_fraction: float, end_step: int) -> Schedule:
  """RigL's drop fraction ``f(t) = alpha / 2 (1 + cos(pi t / T_end))``, 0 from ``T_end`` on.

  Args:
    initial_fraction: alpha in (0, 1] (0.3 in Evci et al.).
    end_step: T_end > 0, where updates stop.

  Returns:
    A schedule ``step -> float32 fraction``.

  Raises:
    ValueError: alpha outside (0, 1] or a non-positive end step.

  Example:
    >>> f = cosine_decay_fraction(0.3, end_step=100)
    >>> [round(float(f(t)), 3) for t in (0, 50, 100)]
    [0.3, 0.15, 0.0]

  References:
    Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML 2020.
  """
  if not (isinstance(initial_fraction, (int, float)) and 0.0 < initial_fraction <= 1.0):
    raise ValueError(f"initial_fraction must be in (0, 1], got {initial_fraction!r}.")
  if not (isinstance(end_step, int) and end_step > 0):
    raise ValueError(f"end_step must be a positive int, got {end_step!r}.")

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    f = 0.5 * initial_fraction * (1.0 + jnp.cos(jnp.pi * jnp.minimum(t, end_step) / end_step))
    return jnp.where(t < end_step, f, 0.0).astype(jnp.float32)

  return schedule


ANNEAL_SHAPES = ("exponential", "linear", "step")


def anneal(
  initial: float, final: float, end_step: int, *, begin_step: int = 0, shape: str = "exponential"
) -> Schedule:
  """A hyper-parameter moved from ``initial`` to ``final`` over ``[begin_step, end_step]``
  (a Gumbel-softmax temperature, a noise scale), held at each end outside it.

  ``exponential``: ``initial * (final / initial) ** p`` (Jang et al.'s temperature annealing,
  geometric in the step), ``linear``: ``initial + (final - initial) * p``, with
  ``p = (t - begin_step) / (end_step - begin_step)`` clipped to [0, 1]; ``step``: ``initial``
  before ``end_step``, ``final`` from it on.

  Args:
    initial: the value up to ``begin_step``, >= 0 (> 0 for ``exponential``).
    final: the value from ``end_step`` on, >= 0 (> 0 for ``exponential``).
    end_step: the first step at ``final``.
    begin_step: the last step at ``initial`` (``0 <= begin_step < end_step``).
    shape: ``"exponential"``, ``"linear"`` or ``"step"``.

  Returns:
    A schedule ``step -> float32``.

  Raises:
    ValueError: an unknown shape, bad steps, or values out of range for the shape.

  Example:
    >>> s = anneal(1.0, 0.01, end_step=100)
    >>> [round(float(s(t)), 4) for t in (0, 50, 100, 200)]
    [1.0, 0.1, 0.01, 0.01]
    >>> [float(anneal(1.0, 0.0, 10, shape="step")(t)) for t in (9, 10)]
    [1.0, 0.0]

  References:
    Jang et al., "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017.
  """
  if shape not in ANNEAL_SHAPES:
    raise ValueError(f"anneal: shape={shape!r} is unknown; expected one of {ANNEAL_SHAPES}.")
  _steps(begin_step, end_step)
  lo = shape == "exponential"
  for name, v in (("initial", initial), ("final", final)):
    validation.positive(
      v, f"anneal: {name}", allow_zero=not lo, fix="An exponential shape needs both ends > 0."
    )
  a, b, span = float(initial), float(final), end_step - begin_step

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    p = jnp.clip((t - begin_step) / span, 0.0, 1.0)
    if shape == "exponential":
      v = a * (b / a) ** p
    elif shape == "linear":
      v = a + (b - a) * p
    else:
      v = jnp.where(t >= end_step, b, a)
    return jnp.asarray(v, jnp.float32)

  return schedule


__all__ = ["Schedule", "anneal", "constant", "cosine_decay_fraction", "iterative", "one_shot", "polynomial"]

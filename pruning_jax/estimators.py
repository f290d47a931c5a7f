"""Mask estimators: array functions with the gradients the papers use.

Every sampler takes the PRNG key first (like ``jax.random``). Straight-through estimators are
written ``hard + (soft - stop_gradient(soft))``: the forward value is exactly ``hard`` (the
PyTorch idiom ``hard - soft.detach() + soft`` can round 1 to 0.99999994), the gradient is that
of ``soft``.

Example:
  >>> import jax, jax.numpy as jnp
  >>> m = jnp.zeros(4)
  >>> mask = aslp_sample(jax.random.key(0), m)  # hard 0/1, gradient of the softmax
  >>> sorted(set(mask.tolist())) <= [0.0, 1.0]
  True
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from pruning_jax import validation
from pruning_jax.thresholds import removal_keep_masks
from pruning_jax.tree import static_value

# Paper 2's gate constants: h(0) = 0 and h(inf) = 1.
REPARAM_C2 = math.exp(-1.0)
REPARAM_C1 = 1.0 / (1.0 - REPARAM_C2)

__all__ = [
  "REPARAM_C1",
  "REPARAM_C2",
  "aslp_sample",
  "bernoulli_ste",
  "gumbel_sigmoid",
  "gumbel_softmax",
  "hard_concrete",
  "hard_concrete_l0",
  "hard_concrete_mean",
  "hard_threshold_ste",
  "reparam_gate",
  "straight_through",
  "topk_ste",
]


def _check_temperature(temperature, name: str = "temperature") -> None:
  """A static temperature must be > 0 now; a traced one is checked at run time (0 would
  divide by zero and give NaN gradients)."""
  fix = "Fix: pass a positive temperature (1.0 is the papers' default; smaller values make samples harder)."
  validation.positive(temperature, name, traced=True, fix=fix)


def _check_float(x: jax.Array, name: str) -> None:
  if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
    raise TypeError(f"{name} must be a floating array, got dtype {jnp.asarray(x).dtype}.")


def straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
  """The straight-through combination: forward value ``hard`` (exactly), gradient of ``soft``.

  Written ``hard + (soft - stop_gradient(soft))``.

  Args:
    hard: the forward value (bool or float).
    soft: the differentiable surrogate, same shape.

  Returns:
    ``hard`` in ``soft``'s dtype, with ``soft``'s gradient.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> f = lambda x: straight_through(x > 0, jax.nn.sigmoid(x)).sum()
    >>> f(jnp.array([1.0, -1.0])).item(), jax.grad(f)(jnp.zeros(1)).tolist()
    (1.0, [0.25])
  """
  soft = jnp.asarray(soft)
  return hard.astype(soft.dtype) + (soft - jax.lax.stop_gradient(soft))


def hard_threshold_ste(scores: jax.Array, threshold: float | jax.Array = 0.0) -> jax.Array:
  """``1[scores > threshold]`` forward; the gradient passes straight to ``scores`` (identity).

  Args:
    scores: float scores.
    threshold: the cut, a number or a traced scalar.

  Returns:
    The 0/1 mask in ``scores``' dtype.

  Raises:
    TypeError: non-floating scores.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> hard_threshold_ste(jnp.array([0.5, -0.5])).tolist()
    [1.0, 0.0]
    >>> jax.grad(lambda s: (hard_threshold_ste(s) * 3.0).sum())(jnp.zeros(2)).tolist()
    [3.0, 3.0]

  References:
    Bengio et al., "Estimating or Propagating Gradients Through Stochastic Neurons", 2013.
  """
  _check_float(scores, "scores")
  return straight_through(scores > threshold, scores)


def topk_ste(scores: jax.Array, keep_fraction: float | jax.Array) -> jax.Array:
  """Edge-popup's mask: keep the top ``round(keep_fraction * n)`` of ``|scores|`` in this array
  (ties: earlier index kept), forward 0/1, gradient straight through to ``|scores|`` (so
  ``sign(scores)`` times the mask's gradient reaches ``scores``, as in the reference code, which
  ranks ``scores.abs()``: a negative score grows in magnitude when its weight should be kept).

  Args:
    scores: float scores of one layer.
    keep_fraction: k in (0, 1], static or traced.

  Returns:
    The 0/1 mask in ``scores``' dtype.

  Raises:
    ValueError: a static k outside (0, 1].
    TypeError: non-floating scores.

  Example:
    >>> import jax.numpy as jnp
    >>> topk_ste(jnp.array([0.1, -3.0, 2.0, 0.5]), 0.5).tolist()
    [0.0, 1.0, 1.0, 0.0]

  References:
    Ramanujan et al., "What's Hidden in a Randomly Weighted Neural Network?", CVPR 2020.
  """
  _check_float(scores, "scores")
  v = static_value(keep_fraction)
  if v is not None and not 0.0 < float(v) <= 1.0:
    raise ValueError(f"keep_fraction must be in (0, 1], got {float(v)!r} (edge-popup's k).")
  n = scores.size
  if v is not None:
    n_keep = jnp.asarray(round(float(v) * n), jnp.int32)
  else:
    n_keep = jnp.round(jnp.asarray(keep_fraction, jnp.float32) * n).astype(jnp.int32)
  magnitude = jnp.abs(scores)
  keep = removal_keep_masks([jax.lax.stop_gradient(magnitude)], (n - n_keep)[None])[0]
  return straight_through(keep, magnitude)


def bernoulli_ste(key: jax.Array, logits: jax.Array) -> jax.Array:
  """Supermask: ``z ~ Bernoulli(sigmoid(logits))`` forward, gradient of ``sigmoid(logits)``.

  Args:
    key: PRNG key.
    logits: float mask logits.

  Returns:
    The sampled 0/1 mask in ``logits``' dtype.

  Raises:
    TypeError: a bad key or non-floating logits.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> bernoulli_ste(jax.random.key(0), jnp.array([30.0, -30.0])).tolist()
    [1.0, 0.0]

  References:
    Zhou et al., "Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask", NeurIPS 2019.
  """
  validation.prng_key(key, "bernoulli_ste: key")
  _check_float(logits, "logits")
  p = jax.nn.sigmoid(logits)
  u = jax.random.uniform(key, logits.shape, jnp.float32)
  return straight_through(u < p.astype(jnp.float32), p)


def _logistic(key, shape, dtype):
  # Gumbel(0,1) - Gumbel(0,1) ~ Logistic(0,1): one draw replaces the two-class Gumbel pair.
  return jax.random.logistic(key, shape, jnp.float32).astype(dtype)


def gumbel_sigmoid(
  key: jax.Array,
  logits: jax.Array,
  temperature: float | jax.Array = 1.0,
  *,
  hard: bool = False,
  noise_scale: float | jax.Array = 1.0,
) -> jax.Array:
  """Binary concrete sample ``sigmoid((logits + a L) / temperature)``, ``L ~ Logistic(0, 1)``.

  With ``hard=True`` the forward value is ``1[logits + a L > 0]`` and the gradient that of the
  relaxed sample (straight-through Gumbel-sigmoid). The noise scale ``a`` is 1 for the
  concrete distribution; annealing it to 0 turns the sample into the deterministic
  ``1[logits > 0]`` with the sigmoid's straight-through gradient.

  Args:
    key: PRNG key.
    logits: float logits.
    temperature: tau > 0 (static, or traced and checked at run time).
    hard: return the straight-through 0/1 sample.
    noise_scale: a >= 0 (static, or traced and checked at run time).

  Returns:
    The sample, in ``logits``' dtype.

  Raises:
    TypeError: a bad key or non-floating logits.
    ValueError: a temperature <= 0.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> y = gumbel_sigmoid(jax.random.key(0), jnp.zeros(3), 0.5)
    >>> bool(((y > 0) & (y < 1)).all())
    True

  References:
    Maddison et al., "The Concrete Distribution", ICLR 2017; Jang et al., "Categorical
    Reparameterization with Gumbel-Softmax", ICLR 2017.
  """
  validation.prng_key(key, "gumbel_sigmoid: key")
  _check_float(logits, "logits")
  _check_temperature(temperature)
  validation.positive(noise_scale, "noise_scale", allow_zero=True, traced=True)
  noise = _logistic(key, logits.shape, logits.dtype)
  z = logits + jnp.asarray(noise_scale, logits.dtype) * noise
  soft = jax.nn.sigmoid(z / temperature)
  return straight_through(z > 0, soft) if hard else soft


def gumbel_softmax(
  key: jax.Array,
  logits: jax.Array,
  temperature: float | jax.Array = 1.0,
  *,
  axis: int = -1,
  hard: bool = False,
) -> jax.Array:
  """Gumbel-softmax over ``axis``: ``softmax((logits + g) / temperature)``, ``g ~ Gumbel(0, 1)``.

  With ``hard=True`` the forward value is the one-hot of the argmax (first index wins ties)
  and the gradient that of the softmax.

  Args:
    key: PRNG key.
    logits: float logits.
    temperature: tau > 0 (static, or traced and checked at run time).
    axis: the category axis.
    hard: return the straight-through one-hot sample.

  Returns:
    The sample, in ``logits``' dtype; it sums to 1 along ``axis``.

  Raises:
    TypeError: a bad key or non-floating logits.
    ValueError: a temperature <= 0.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> y = gumbel_softmax(jax.random.key(0), jnp.zeros((2, 3)), hard=True)
    >>> y.sum(axis=-1).tolist()
    [1.0, 1.0]

  References:
    Jang et al., ICLR 2017; Maddison et al., ICLR 2017.
  """
  validation.prng_key(key, "gumbel_softmax: key")
  _check_float(logits, "logits")
  _check_temperature(temperature)
  z = logits + jax.random.gumbel(key, logits.shape, jnp.float32).astype(logits.dtype)
  soft = jax.nn.softmax(z / temperature, axis=axis)
  if not hard:
    return soft
  one_hot = jax.nn.one_hot(jnp.argmax(z, axis=axis), z.shape[axis], axis=axis, dtype=soft.dtype)
  return straight_through(one_hot, soft)


def aslp_sample(
  key: jax.Array, m: jax.Array, temperature: float | jax.Array = 1.0, noise_scale: float | jax.Array = 1.0
) -> jax.Array:
  """ASLP mask: the keep channel of hard straight-through Gumbel-softmax over ``[m, 0]``.

  ``[m, 0] = [log p + c, log(1 - p) + c]`` with ``p = sigmoid(m)``, so the keep probability is
  ``sigmoid(m)`` without computing a log. With Gumbel noise ``g1, g0`` the keep channel is
  ``y = softmax([m + g1, g0] / tau)[0] = sigmoid((m + L) / tau)`` with ``L = g1 - g0 ~
  Logistic(0, 1)``; the forward value is ``1[m + L > 0]`` (the one-hot's keep entry) and the
  gradient is ``dy/dm = y (1 - y) / tau``, the same as
  ``torch.nn.functional.gumbel_softmax(stack([m, 0]), tau, hard=True)[0]``.

  Args:
    key: PRNG key (fresh per step and per layer).
    m: mask logits, any float dtype.
    temperature: tau > 0.
    noise_scale: the Logistic noise's scale, 1 in the paper (see :func:`gumbel_sigmoid`).

  Returns:
    The 0/1 keep mask in ``m``'s dtype, with the gradient above.

  Raises:
    TypeError: a bad key or non-floating logits.
    ValueError: a temperature <= 0.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> aslp_sample(jax.random.key(0), jnp.array([40.0, -40.0])).tolist()
    [1.0, 0.0]

  References:
    Dupont et al., "Extracting Effective Subnetworks with Gumbel-Softmax", ICIP 2022.
  """
  return gumbel_sigmoid(key, m, temperature, hard=True, noise_scale=noise_scale)


def hard_concrete(
  key: jax.Array,
  log_alpha: jax.Array,
  beta: float = 2.0 / 3.0,
  gamma: float = -0.1,
  zeta: float = 1.1,
) -> jax.Array:
  """Hard-concrete gate sample ``min(1, max(0, sigmoid((log u - log(1-u) + log_alpha) / beta)
  * (zeta - gamma) + gamma))``, ``u ~ U(0, 1)``: exact zeros and ones with non-zero probability.

  Args:
    key: PRNG key.
    log_alpha: float gate log-odds.
    beta: the temperature, > 0 (2/3 in the paper).
    gamma: the stretch's lower end, < 0.
    zeta: the stretch's upper end, > 1.

  Returns:
    Gates in [0, 1], in ``log_alpha``'s dtype.

  Raises:
    TypeError: a bad key or non-floating log_alpha.
    ValueError: ``beta <= 0``, or not ``gamma < 0 < 1 < zeta``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> hard_concrete(jax.random.key(0), jnp.array([20.0, -20.0])).tolist()
    [1.0, 0.0]

  References:
    Louizos et al., "Learning Sparse Neural Networks through L0 Regularization", ICLR 2018.
  """
  validation.prng_key(key, "hard_concrete: key")
  _check_float(log_alpha, "log_alpha")
  _check_temperature(beta, "beta")
  if not gamma < 0 < 1 < zeta:
    raise ValueError(f"hard_concrete needs gamma < 0 and zeta > 1, got gamma={gamma}, zeta={zeta}.")
  s = jax.nn.sigmoid((_logistic(key, log_alpha.shape, log_alpha.dtype) + log_alpha) / beta)
  return jnp.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_mean(log_alpha: jax.Array, gamma: float = -0.1, zeta: float = 1.1) -> jax.Array:
  """The deterministic test-time gate ``min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma))``.

  Args:
    log_alpha: float gate log-odds.
    gamma: the stretch's lower end.
    zeta: the stretch's upper end.

  Returns:
    Gates in [0, 1].

  Raises:
    TypeError: non-floating log_alpha.

  Example:
    >>> import jax.numpy as jnp
    >>> hard_concrete_mean(jnp.array([0.0, 10.0, -10.0])).tolist()
    [0.5, 1.0, 0.0]
  """
  _check_float(log_alpha, "log_alpha")
  return jnp.clip(jax.nn.sigmoid(log_alpha) * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_l0(
  log_alpha: jax.Array, beta: float = 2.0 / 3.0, gamma: float = -0.1, zeta: float = 1.1
) -> jax.Array:
  """Expected L0 norm per gate, ``P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta))``.

  Summed over gates and scaled by lambda this is Louizos et al.'s penalty.

  Args:
    log_alpha: float gate log-odds.
    beta: the temperature, > 0.
    gamma: the stretch's lower end.
    zeta: the stretch's upper end.

  Returns:
    ``P(gate != 0)`` per gate.

  Raises:
    TypeError: non-floating log_alpha.
    ValueError: ``beta <= 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(hard_concrete_l0(jnp.float32(0.0))), 4)  # sigmoid(2/3 log 11)
    0.8318
  """
  _check_float(log_alpha, "log_alpha")
  _check_temperature(beta, "beta")
  return jax.nn.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


def reparam_gate(w: jax.Array, t: float | jax.Array = 100.0, n: int = 4) -> jax.Array:
  """Paper 2's implicit mask ``h_t(w) = C1 (exp(-1 / ((t w)^n + 1)) - C2)``.

  ``C2 = 1/e`` gives ``h(0) = 0`` and ``C1 = 1 / (1 - 1/e)`` gives ``h -> 1`` as ``|w| -> inf``.
  ``|t w|^n`` is used so that odd ``n`` stays in [0, 1] too (identical for the paper's n = 4).
  With ``x = |t w|^n`` it is evaluated as the identical ``expm1(x / (1 + x)) / (e - 1)``: the
  literal form subtracts two numbers near 1/e and rounds every ``|t w| < ~0.013`` to exactly 0
  in float32, which would tie most small weights at the hard prune.

  Args:
    w: float weights.
    t: the temperature (per layer or one for the net), > 0.
    n: the exponent, a positive integer (4 in the paper).

  Returns:
    ``h_t(w)`` in [0, 1), elementwise.

  Raises:
    TypeError: non-floating weights.
    ValueError: ``n`` not a positive integer.

  Example:
    >>> round(float(reparam_gate(jnp.float32(0.01))), 3)
    0.378

  References:
    Dupont et al., "Weight Reparametrization for Budget-Aware Network Pruning", ICIP 2021.
  """
  _check_float(w, "w")
  if not (isinstance(n, int) and n > 0):
    raise ValueError(f"reparam_gate: n must be a positive integer, got {n!r}.")
  x = jnp.abs(t * w) ** n
  # C1 (exp(-1/(x+1)) - 1/e) = C1/e (exp(x/(x+1)) - 1) and C1/e = 1/(e - 1)
  return jnp.expm1(x / (1.0 + x)) / (math.e - 1.0)

"""Argument checks shared by the library: one place, one message form.

Every message says where (the argument or pytree path), what was expected, what was found, and
how to fix it. Static values (Python and NumPy scalars, concrete 0-d arrays) are checked when
a function is called; traced values cannot be read at trace time, so :func:`check_traced`
raises at run time, from inside the compiled computation, only when a value is actually bad.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pruning_jax.tree import static_value


def scalar(value: Any, where: str) -> float | None:
  """``value`` as a Python float when it is a concrete real scalar, None when it is traced.

  Args:
    value: a Python/NumPy number, a 0-d array, or a tracer.
    where: the argument's name, for the message.

  Returns:
    The float, or None for a traced scalar.

  Raises:
    TypeError: a string, None, a bool, a complex number, or a non-scalar array.

  Example:
    >>> scalar(np.float32(0.5), "sparsity")
    0.5
  """
  if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, (str, bytes)):
    raise TypeError(f"{where} must be a real number, got {type(value).__name__} {value!r}.")
  if isinstance(value, numbers.Real):
    return float(value)
  if not hasattr(value, "shape") or not hasattr(value, "dtype"):
    raise TypeError(f"{where} must be a real number or a 0-d array, got {type(value).__name__} {value!r}.")
  if tuple(value.shape) != ():
    raise TypeError(
      f"{where} must be a scalar, got an array of shape {tuple(value.shape)}. Fix: pass one number "
      "(per-leaf values go in a pytree where the function accepts one)."
    )
  if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
    raise TypeError(f"{where} must be a real number, got dtype {value.dtype}.")
  v = static_value(value)
  return None if v is None else float(v)


def fraction(
  value: Any, where: str, *, upper_open: bool = True, what: str = "fraction", traced: bool = False
) -> float | None:
  """Checks a static fraction in ``[0, 1)`` (or ``[0, 1]``); returns it, or None when traced.

  Args:
    value: the value.
    where: the argument's name.
    upper_open: exclude 1 (a sparsity of 1 would remove every weight).
    what: what the value means, for the message.
    traced: a traced value gets the same range check at run time (:func:`check_traced`);
      without it a traced value is returned unchecked (as None) for the caller to handle.

  Returns:
    The float, or None for a traced value.

  Raises:
    TypeError: not a real scalar.
    ValueError: outside the range, or NaN.

  Example:
    >>> fraction(0.9, "sparsity")
    0.9
  """
  bound = "[0, 1)" if upper_open else "[0, 1]"
  v = scalar(value, where)
  if v is None:
    if traced:
      t = jnp.asarray(value, jnp.float32)
      check_traced(
        (t >= 0) & ((t < 1) if upper_open else (t <= 1)),
        f"{where} must be in {bound} (a {what}); a traced value outside it was passed.",
      )
    return None
  if not (np.isfinite(v) and 0.0 <= v and (v < 1.0 if upper_open else v <= 1.0)):
    raise ValueError(f"{where} must be a {what} in {bound}, got {v!r}.")
  return v


def positive(
  value: Any, where: str, *, allow_zero: bool = False, traced: bool = False, fix: str = ""
) -> float | None:
  """Checks a static value ``> 0`` (``>= 0`` with ``allow_zero``); None when traced.

  Args:
    value: the value.
    where: the argument's name.
    allow_zero: accept 0.
    traced: a traced value gets the same check at run time (:func:`check_traced`).
    fix: how to fix a bad value, appended to the message.

  Returns:
    The float, or None for a traced value.

  Raises:
    TypeError: not a real scalar.
    ValueError: out of range or NaN.

  Example:
    >>> positive(2, "temperature")
    2.0
  """
  bound = ">= 0" if allow_zero else "> 0"
  fix = f" {fix}" if fix else ""
  v = scalar(value, where)
  if v is None:
    if traced:
      t = jnp.asarray(value, jnp.float32)
      ok = (t >= 0) if allow_zero else (t > 0)
      check_traced(ok, f"{where} must be {bound}; a traced value outside that (or NaN) was passed.{fix}")
    return None
  if not (np.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
    raise ValueError(f"{where} must be {bound}, got {v!r}.{fix}")
  return v


def prng_key(key: Any, where: str) -> None:
  """Checks that ``key`` is one PRNG key: a typed key (``jax.random.key``) of shape ``()`` or a
  raw ``uint32`` key (``jax.random.PRNGKey``) of shape ``(2,)`` (``(4,)`` for the rbg
  implementations).

  Args:
    key: the value passed as a key.
    where: the function and argument, for the message.

  Raises:
    TypeError: anything else (an int seed, a float array, a batch of keys, a missing key).

  Example:
    >>> prng_key(jax.random.key(0), "sample: key")
  """
  fix = (
    "Fix: pass one key, e.g. jax.random.key(seed), split per use with jax.random.split / "
    "jax.random.fold_in(key, step)."
  )
  dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
  if dtype is None or shape is None:
    raise TypeError(f"{where} must be a PRNG key, got {type(key).__name__} {key!r}. {fix}")
  if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    if tuple(shape) != ():
      raise TypeError(f"{where} must be one PRNG key, got an array of keys of shape {tuple(shape)}. {fix}")
    return
  if dtype != jnp.uint32 or tuple(shape) not in ((2,), (4,)):
    raise TypeError(
      f"{where} must be a PRNG key, got an array of dtype {dtype} and shape {tuple(shape)} (a raw "
      f"key is uint32 of shape (2,), or (4,) for rbg). {fix}"
    )


def _raise(message: str, bad) -> None:
  if bool(np.asarray(bad)):
    raise ValueError(message)


def check_traced(ok: jax.Array, message: str) -> None:
  """Raises ``ValueError(message)`` at run time where the traced condition ``ok`` is False.

  The check costs one predicate and a branch that is not taken for good values; a bad value
  stops the computation instead of giving a silently wrong result.

  Args:
    ok: a boolean scalar (traced or concrete).
    message: what is wrong and how to fix it.

  Raises:
    ValueError: ``ok`` is concrete and False (eagerly), or at run time under jit.

  Example:
    >>> import jax.numpy as jnp
    >>> check_traced(jnp.asarray(True), "never raised")
  """
  concrete = static_value(ok)
  if concrete is not None:
    _raise(message, ~np.asarray(concrete, bool))
    return
  bad = jnp.logical_not(ok)
  jax.lax.cond(bad, lambda: jax.debug.callback(functools.partial(_raise, message), bad), lambda: None)


__all__ = ["check_traced", "fraction", "positive", "prng_key", "scalar"]

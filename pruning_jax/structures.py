"""How per-weight scores group into prunable units.

A :class:`Structure` turns one leaf's scores into unit scores (``reduce``) and a kept/removed
decision per unit back into a mask of the leaf's shape (``expand``). Units are what sparsity
counts: with ``channels()`` a sparsity of 0.5 removes half of the channels. N:M is local (a fixed
N of every M along an axis), so it has ``local`` instead of a threshold.

Example:
  >>> import jax.numpy as jnp
  >>> s = channels(axis=-1)
  >>> s.reduce(jnp.ones((3, 3, 2, 4)), ()).shape
  (1, 1, 1, 4)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pruning_jax.thresholds import ordered_keys
from pruning_jax.tree import KeyPath, keystr

__all__ = ["STRUCTURES", "Structure", "blocks", "channels", "nm", "resolve", "unstructured"]


class Structure(NamedTuple):
  """A grouping of weights into units.

  Attributes:
    name: short name used in messages and summaries.
    reduce: ``(scores_leaf, path) -> unit_scores``; raises ValueError naming ``path`` for a leaf
      the structure cannot apply to.
    expand: ``(unit_keep, shape) -> keep`` of ``shape``.
    local: for structures with a fixed pattern per group (N:M), ``(scores_leaf, path) -> keep``
      that replaces thresholding; None otherwise.
    fixed_sparsity: the sparsity a ``local`` structure always gives.
  """

  name: str
  reduce: Callable[[jax.Array, KeyPath], jax.Array]
  expand: Callable[[jax.Array, tuple[int, ...]], jax.Array]
  local: Callable[[jax.Array, KeyPath], jax.Array] | None = None
  fixed_sparsity: float | None = None


_REDUCERS: dict[str, Callable[..., jax.Array]] = {
  "l1": lambda x, axis: jnp.sum(jnp.abs(x), axis=axis, keepdims=True),
  "l2": lambda x, axis: jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True)),
  "sum": lambda x, axis: jnp.sum(x, axis=axis, keepdims=True),
  "mean": lambda x, axis: jnp.mean(x, axis=axis, keepdims=True),
  "max": lambda x, axis: jnp.max(x, axis=axis, keepdims=True),
}


def _reducer(name: str) -> Callable[..., jax.Array]:
  if name not in _REDUCERS:
    raise ValueError(f"Unknown reduce={name!r}; expected one of {sorted(_REDUCERS)}.")
  return _REDUCERS[name]


def _axis(axis: int, ndim: int, path: KeyPath, what: str) -> int:
  if not -ndim <= axis < ndim:
    raise ValueError(
      f"{what}: axis {axis} is out of range for the leaf at {keystr(path)} with ndim {ndim}. "
      "Fix: choose an axis that exists in every selected leaf, or narrow the selection."
    )
  return axis % ndim


def _full_expand(unit_keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  return jnp.broadcast_to(unit_keep, shape)


def unstructured() -> Structure:
  """Every weight is its own unit.

  Returns:
    The identity :class:`Structure`.

  Example:
    >>> import jax.numpy as jnp
    >>> unstructured().reduce(jnp.ones((2, 3)), ()).shape
    (2, 3)
  """
  return Structure("unstructured", lambda s, path: s, _full_expand)


def channels(axis: int = -1, reduce: str = "l1") -> Structure:
  """One unit per index along ``axis`` (filters / output channels with the default ``-1`` for
  Flax HWIO conv kernels and (in, out) dense kernels; ``-2`` for input channels; ``0`` for the
  (out, in) kernels of Equinox/PyTorch layouts).

  Args:
    axis: the channel axis.
    reduce: how per-weight scores aggregate into a channel score: ``"l1"`` (sum of |s|),
      ``"l2"``, ``"sum"``, ``"mean"`` or ``"max"``.

  Returns:
    A :class:`Structure`; at use, an axis missing from a leaf is a ValueError naming it.

  Raises:
    ValueError: an unknown ``reduce``.

  Example:
    >>> import jax.numpy as jnp
    >>> s = channels(axis=-1)
    >>> s.reduce(jnp.array([[1.0, -2.0], [3.0, 0.0]]), ()).tolist()
    [[4.0, 2.0]]
  """
  agg = _reducer(reduce)

  def reduce_fn(scores, path):
    a = _axis(axis, scores.ndim, path, "channels")
    others = tuple(i for i in range(scores.ndim) if i != a)
    return agg(scores, others) if others else scores

  return Structure(f"channels(axis={axis})", reduce_fn, _full_expand)


def blocks(block_shape: tuple[int, ...], axes: tuple[int, ...] = (-2, -1), reduce: str = "l1") -> Structure:
  """Units are blocks of ``block_shape`` over ``axes`` (other axes index separate blocks).

  Args:
    block_shape: the block's size along each of ``axes``, each >= 1.
    axes: the blocked axes, distinct.
    reduce: how scores aggregate into a block score (as in :func:`channels`).

  Returns:
    A :class:`Structure`.

  Raises:
    ValueError: mismatched lengths, a size < 1, a repeated axis, an unknown ``reduce``; at use,
      a leaf whose size along an axis is not divisible by the block size (named).

  Example:
    >>> import jax.numpy as jnp
    >>> blocks((2, 2)).reduce(jnp.ones((4, 6)), ()).shape  # 2 x 3 blocks of 2 x 2
    (2, 3)
  """
  if len(block_shape) != len(axes):
    raise ValueError(f"blocks: block_shape {block_shape} and axes {axes} must have equal length.")
  if any(b < 1 for b in block_shape):
    raise ValueError(f"blocks: block sizes must be >= 1, got {block_shape}.")
  if len(set(axes)) != len(axes):
    raise ValueError(f"blocks: axes {axes} name an axis twice. Fix: give each blocked axis once.")
  agg = _reducer(reduce)

  def split_shape(shape, path):
    ax = [_axis(a, len(shape), path, "blocks") for a in axes]
    if len(set(ax)) != len(ax):
      raise ValueError(
        f"blocks: axes {axes} name the same axis twice for the leaf at {keystr(path)} with ndim "
        f"{len(shape)}. Fix: use axes that are distinct for every selected leaf (e.g. all negative)."
      )
    sizes = dict(zip(ax, block_shape, strict=True))
    for a, b in sizes.items():
      if shape[a] % b:
        raise ValueError(
          f"blocks: the leaf at {keystr(path)} has size {shape[a]} along axis {a}, not divisible "
          f"by the block size {b}. Fix: choose a block size that divides it or exclude the leaf."
        )
    split, red = [], []
    for i, d in enumerate(shape):
      if i in sizes:
        split += [d // sizes[i], sizes[i]]
        red.append(len(split) - 1)
      else:
        split.append(d)
    return split, tuple(red), sizes

  def reduce_fn(scores, path):
    split, red, _ = split_shape(scores.shape, path)
    return jnp.squeeze(agg(scores.reshape(split), red), axis=red)

  def expand(unit_keep, shape):
    _, _, sizes = split_shape(shape, ())
    for a, b in sizes.items():
      unit_keep = jnp.repeat(unit_keep, b, axis=a)
    return unit_keep

  return Structure(f"blocks({block_shape})", reduce_fn, expand)


def nm(n: int, m: int, axis: int = -1) -> Structure:
  """N:M sparsity: in every group of ``m`` consecutive weights along ``axis`` keep the ``n``
  highest-scoring (earlier index wins ties). Sparsity is fixed at ``1 - n / m``.

  Args:
    n: weights kept per group.
    m: group size, ``0 < n <= m``.
    axis: the grouped axis; its size must be a multiple of ``m`` in every selected leaf.

  Returns:
    A local :class:`Structure`.

  Raises:
    ValueError: not ``0 < n <= m`` integers; at use, an axis size not divisible by m (named).

  Example:
    >>> import jax.numpy as jnp
    >>> nm(2, 4).local(jnp.array([[0.1, 0.9, 0.5, 0.2]]), ()).tolist()
    [[False, True, True, False]]

  References:
    Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021 (2:4 on Ampere).
  """
  if not (isinstance(n, int) and isinstance(m, int) and 0 < n <= m):
    raise ValueError(f"nm: need integers 0 < n <= m, got n={n!r}, m={m!r}.")

  def local(scores, path):
    a = _axis(axis, scores.ndim, path, f"nm({n}:{m})")
    if scores.shape[a] % m:
      raise ValueError(
        f"N:M ({n}:{m}) needs the size along axis {a} to be divisible by {m}, but the leaf at "
        f"{keystr(path)} has shape {scores.shape}. Fix: choose an axis whose size is a multiple "
        f"of {m} (nm(..., axis=...)) or exclude this leaf from the selection."
      )
    moved = jnp.moveaxis(scores, a, -1)
    grouped = ordered_keys(moved).reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    # stable argsort of the bit-flipped keys = descending order with earlier index first
    order = jnp.argsort(~grouped, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1)
    keep = (rank < n).reshape(moved.shape)
    return jnp.moveaxis(keep, -1, a)

  return Structure(f"nm({n}:{m})", lambda s, path: s, _full_expand, local, 1 - n / m)


STRUCTURES: dict[str, Callable[[], Structure]] = {
  "unstructured": unstructured,
  "channels": channels,
  "filters": lambda: channels(axis=-1),
  "input_channels": lambda: channels(axis=-2),
}


def resolve(structure: str | Structure) -> Structure:
  """A Structure from itself or its name.

  Args:
    structure: a :class:`Structure`, or one of ``"unstructured"``, ``"channels"``,
      ``"filters"`` (output channels) and ``"input_channels"``.

  Returns:
    The :class:`Structure`.

  Raises:
    ValueError: an unknown name.

  Example:
    >>> resolve("filters").name
    'channels(axis=-1)'
  """
  if isinstance(structure, Structure):
    return structure
  if isinstance(structure, str) and structure in STRUCTURES:
    return STRUCTURES[structure]()
  raise ValueError(
    f"Unknown structure {structure!r}. Expected one of {sorted(STRUCTURES)} or a Structure from "
    "pruning_jax.structures (channels(axis=...), blocks(...), nm(n, m, axis=...))."
  )

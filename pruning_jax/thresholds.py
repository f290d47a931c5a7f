"""Exact rank thresholds by bisection on order-preserving integer bit patterns.

To remove the k lowest-scoring of N values we need the k-th smallest value T. A float's bit
pattern, with the sign bit flipped (and all bits flipped for negatives), is an unsigned integer
whose order is the float's order. The k-th smallest key is then found by bisection over the
integer range: each pass is one fused compare-and-count over the data, and 32 passes (64 for
float64) pin T exactly. That is a handful of memory-bound reductions instead of a sort, and
it works unchanged over many leaves at once (a global threshold is a sum of per-leaf counts)
and over sharded arrays (the counts become all-reduces).

Ties at T are broken deterministically: among equal scores, units that come later (in leaf
flatten order, then row-major index) are removed first, which is also what ``lax.top_k``
keeps. A second bisection over the index finds the cut inside the tie, and only runs when a
tie actually straddles the threshold.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_INDEX_LIMIT = 2**31 - 1


def ordered_keys(x: jax.Array) -> jax.Array:
  """Unsigned integers whose order is the order of the floats ``x`` (-0.0 and 0.0 equal).

  bfloat16/float16 are widened to float32 first, which is exact. NaN sorts above +inf.
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"ordered_keys needs floating scores, got {x.dtype}.")
  if x.dtype == jnp.float64:
    utype, sign = jnp.uint64, jnp.uint64(1 << 63)
  else:
    x = x.astype(jnp.float32)
    utype, sign = jnp.uint32, jnp.uint32(1 << 31)
  # -0.0 and 0.0 are equal scores; give them one bit pattern.
  x = jnp.where(x == 0, jnp.zeros((), x.dtype), x)
  bits = lax.bitcast_convert_type(x, utype)
  return jnp.where((bits & sign) != 0, ~bits, bits | sign)


def _group_totals(per_leaf: Sequence[jax.Array], groups: Sequence[int], n_groups: int) -> jax.Array:
  totals = [jnp.zeros((), jnp.int32)] * n_groups
  for g, c in zip(groups, per_leaf, strict=True):
    totals[g] = totals[g] + c
  return jnp.stack(totals)


def _count(keys, groups, n_groups, cmp, thresholds):
  return _group_totals(
    [jnp.sum(cmp(k, thresholds[g]), dtype=jnp.int32) for k, g in zip(keys, groups, strict=True)],
    groups,
    n_groups,
  )


def removal_keep_masks(
  scores: Sequence[jax.Array],
  n_remove: jax.Array | Sequence[int],
  groups: Sequence[int] | None = None,
) -> list[jax.Array]:
  """Keep-masks that remove exactly ``n_remove[g]`` lowest scores within each group.

  Args:
    scores: floating arrays (any shapes, any float dtype).
    n_remove: int per group (may be traced), each in ``[0, size of group]``.
    groups: group id of each array (0..G-1); default: all arrays in one group (a global
      threshold). ``groups=range(len(scores))`` gives one threshold per array.

  Returns:
    One bool array per score array: True where the unit is kept.
  """
  groups = tuple(groups) if groups is not None else (0,) * len(scores)
  # jitted with static groups: eager callers compile once per layout instead of op by op
  return _removal_keep_masks(list(scores), jnp.asarray(n_remove, jnp.int32), groups)


@functools.partial(jax.jit, static_argnames="groups")
def _removal_keep_masks(scores, n_remove, groups):
  n_groups = max(groups) + 1 if groups else 0
  if n_groups == 0:
    return []
  shapes = [s.shape for s in scores]
  if any(s.dtype == jnp.float64 for s in scores):  # compare everything in one key space
    scores = [s.astype(jnp.float64) for s in scores]
  keys = [ordered_keys(s).reshape(-1) for s in scores]
  utype = keys[0].dtype
  nbits = jnp.iinfo(utype).bits
  sizes = [0] * n_groups
  offsets = []
  for k, g in zip(keys, groups, strict=True):
    offsets.append(sizes[g])
    sizes[g] += k.size
  if max(sizes) > _INDEX_LIMIT:
    raise ValueError(
      f"A threshold group holds {max(sizes)} units, more than int32 indexes ({_INDEX_LIMIT}). "
      "Fix: use scope='layer' or split the selection."
    )
  k = jnp.asarray(n_remove, jnp.int32).reshape(n_groups)

  # T[g] = smallest key with count(key <= T) >= k[g]  (k = 0 gives T = 0: nothing is below it).
  def key_step(_, carry):
    lo, hi = carry
    mid = lo + (hi - lo) // 2
    enough = _count(keys, groups, n_groups, jnp.less_equal, mid) >= k
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  lo0 = jnp.zeros(n_groups, utype)
  hi0 = jnp.full(n_groups, jnp.iinfo(utype).max, utype)
  _, t = lax.fori_loop(0, nbits, key_step, (lo0, hi0))

  n_below = _count(keys, groups, n_groups, jnp.less, t)
  n_tied = _count(keys, groups, n_groups, jnp.equal, t)
  keep_tied = n_tied - (k - n_below)  # ties at T that survive: the earliest ones

  def tie_counts(cut):
    # count of tied units with group-local index < cut[g]
    return _group_totals(
      [
        jnp.sum((kk == t[g]) & (jnp.arange(kk.size, dtype=jnp.int32) < cut[g] - off), dtype=jnp.int32)
        for kk, g, off in zip(keys, groups, offsets, strict=True)
      ],
      groups,
      n_groups,
    )

  def tie_search(_):
    def step(_, carry):
      lo, hi = carry
      mid = lo + (hi - lo) // 2
      enough = tie_counts(mid) >= keep_tied
      return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    n_steps = max(1, math.ceil(math.log2(max(sizes) + 1)))
    size_arr = jnp.asarray(sizes, jnp.int32)
    _, cut = lax.fori_loop(0, n_steps, step, (jnp.zeros(n_groups, jnp.int32), size_arr))
    return cut

  # Usually no tie straddles T (keep_tied == 0 everywhere): skip the index bisection.
  cut = lax.cond(
    jnp.any(keep_tied > 0), tie_search, lambda _: jnp.zeros(n_groups, jnp.int32), None
  )
  out = []
  for kk, g, off, shape in zip(keys, groups, offsets, shapes, strict=True):
    idx = jnp.arange(kk.size, dtype=jnp.int32)
    keep = (kk > t[g]) | ((kk == t[g]) & (idx < cut[g] - off))
    out.append(keep.reshape(shape))
  return out


def kth_smallest(x: jax.Array, k: int | jax.Array) -> jax.Array:
  """The k-th smallest element of ``x`` (1-based), exactly, without sorting.

  >>> import jax.numpy as jnp
  >>> float(kth_smallest(jnp.array([3., -1., 2., 2.]), 3))
  2.0
  """
  keep = removal_keep_masks([x], jnp.asarray(k, jnp.int32) - 1)[0]
  # the smallest kept value after removing k-1 values is the k-th smallest
  return jnp.min(jnp.where(keep, x, jnp.asarray(jnp.inf, x.dtype)))


def top_k_mask(x: jax.Array, k: int | jax.Array) -> jax.Array:
  """Bool mask of the ``k`` largest entries of ``x`` (earlier index wins ties), like
  ``lax.top_k`` over the flattened array but without sorting."""
  return removal_keep_masks([x], jnp.asarray(x.size - k, jnp.int32))[0]

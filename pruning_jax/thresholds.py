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
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_INDEX_LIMIT = 2**31 - 1

__all__ = ["kth_smallest", "ordered_keys", "removal_keep_masks", "top_k_mask"]


def ordered_keys(x: jax.Array) -> jax.Array:
  """Unsigned integers whose order is the order of the floats ``x`` (-0.0 and 0.0 equal).

  bfloat16/float16 are widened to float32 first, which is exact. NaN sorts below -inf: a
  NaN-scored unit is the least important and is removed first (a NaN score says nothing in
  the unit's favour, and keeping it would keep whatever produced the NaN).
  Backends that treat subnormal inputs as zero (XLA:CPU does, in comparisons) give subnormal
  scores the key of 0, so there they tie with 0.

  Args:
    x: a floating array.

  Returns:
    ``uint32`` keys (``uint64`` for float64) of ``x``'s shape.

  Raises:
    TypeError: a non-floating array.

  Example:
    >>> import jax.numpy as jnp
    >>> k = ordered_keys(jnp.array([1.0, -2.0, jnp.nan, 0.5]))
    >>> [int(i) for i in jnp.argsort(k)]  # NaN, -2, 0.5, 1
    [2, 1, 3, 0]
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
  keys = jnp.where((bits & sign) != 0, ~bits, bits | sign)
  # -inf maps to 0x007FFFFF; 0 is free for NaN (and for the pads of removal_keep_masks)
  return jnp.where(jnp.isnan(x), jnp.zeros((), utype), keys)


_B = 32  # block length of the compact layout: counts go through int8 partial sums per block
_CAP = 1 << 13  # candidates the compact layout gathers for its in-memory select
_SAMPLE_ABOVE = 1 << 17  # groups this large get their bisection range bracketed from a sample
_SAMPLE_SIZE = 1 << 16

Group = list[jax.Array]  # the key arrays of one threshold group, each in its leaf's own shape


def _count(group: Group, cmp, t: jax.Array) -> jax.Array:
  # one reduction per leaf: on sharded leaves each is a local count and an all-reduce of a scalar
  return sum((jnp.sum(cmp(kk, t), dtype=jnp.int32) for kk in group), jnp.zeros((), jnp.int32))


def _counts(groups: Sequence[Group], cmp, t: jax.Array) -> jax.Array:
  return jnp.stack([_count(g, cmp, t[i]) for i, g in enumerate(groups)])


def _kth_key(groups: Sequence[Group], k: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
  """Smallest key T per group with count(key <= T) >= k, searched in [lo, hi] by bisection."""

  def step(carry):
    lo, hi = carry
    mid = lo + (hi - lo) // 2
    enough = _counts(groups, jnp.less_equal, mid) >= k
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  return lax.while_loop(lambda c: jnp.any(c[0] < c[1]), step, (lo, hi))[1]


def _lattice_sample(x: jax.Array, stride: int) -> jax.Array:
  """About ``x.size / stride`` entries of ``x`` on a strided lattice, taken in ``x``'s own shape
  (no flattening, so a sharded ``x`` gives a sample sharded the same way): the largest axes
  are strided first."""
  strides = [1] * x.ndim
  left = stride
  for axis in sorted(range(x.ndim), key=lambda a: -x.shape[a]):
    strides[axis] = max(1, min(x.shape[axis], left))
    left = max(1, left // strides[axis])
  return x[tuple(slice(None, None, st) for st in strides)]


def _bracket(scores: Sequence[Group], k, sizes, utype, count2):
  """Per group, [lo, hi] holding T and the exact counts ``count(key < lo)``, ``count(key <= hi)``.

  The ends are an exact quantile bracket of a strided sample, verified on the full data; a side
  that fails falls back to the full range. ``scores`` holds each group's float leaves and
  ``count2(g, a, b)`` gives ``count(key < a)`` and ``count(key <= b)`` over group g's data.
  """
  n_groups = len(scores)
  top = jnp.asarray(jnp.iinfo(utype).max, utype)
  lo = jnp.zeros(n_groups, utype)
  hi = jnp.full(n_groups, top, utype)
  c_lo = jnp.zeros(n_groups, jnp.int32)
  c_hi = jnp.asarray(sizes, jnp.int32)
  big = [g for g in range(n_groups) if sizes[g] >= _SAMPLE_ABOVE]
  if not big:
    return lo, hi, c_lo, c_hi
  samples, ranks = [], []
  for g in big:
    sample = [ordered_keys(_lattice_sample(x, max(1, sizes[g] // _SAMPLE_SIZE))) for x in scores[g]]
    n = sum(int(x.size) for x in sample)
    p = jnp.clip(k[g].astype(jnp.float32) / sizes[g], 0.0, 1.0)
    margin = 5.0 * jnp.sqrt(n * p * (1.0 - p)) + 2.0
    samples += [sample, sample]  # one search for both ends of the bracket
    ranks += [
      jnp.clip(r, 1, n).astype(jnp.int32) for r in (jnp.floor(p * n - margin), jnp.ceil(p * n + margin))
    ]
  ranks = jnp.stack(ranks)
  ends = _kth_key(samples, ranks, jnp.zeros(len(samples), utype), jnp.full(len(samples), top, utype))
  lo_key, hi_key = ends[0::2], ends[1::2]
  kb = k[jnp.asarray(big)]
  below, upto = (
    jnp.stack(c) for c in zip(*(count2(g, lo_key[i], hi_key[i]) for i, g in enumerate(big)), strict=True)
  )
  lo_ok, hi_ok = below < kb, upto >= kb
  idx = jnp.asarray(big)
  lo = lo.at[idx].set(jnp.where(lo_ok, lo_key, jnp.zeros((), utype)))
  c_lo = c_lo.at[idx].set(jnp.where(lo_ok, below, 0))
  hi = hi.at[idx].set(jnp.where(hi_ok, hi_key, top))
  c_hi = c_hi.at[idx].set(jnp.where(hi_ok, upto, c_hi[idx]))
  return lo, hi, c_lo, c_hi


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
  """Row-major position of every entry, built in ``shape`` (elementwise: shards like the leaf)."""
  idx = jnp.zeros(shape, jnp.int32)
  stride = 1
  for axis in reversed(range(len(shape))):
    idx = idx + lax.broadcasted_iota(jnp.int32, shape, axis) * stride
    stride *= shape[axis]
  return idx


def _tie_cuts(group: Group, t: jax.Array, keep_tied: jax.Array) -> list[jax.Array]:
  """Per leaf of the group, the row-major index before which its ties at ``t`` are kept, so that
  exactly ``keep_tied`` ties survive, the earliest in (leaf, row-major) order: the leaves before
  the cut keep all their ties, those after none, and the one the cut falls in is searched by
  bisection over its index (counts only, no cumulative sum over the data)."""
  tied = [kk == t for kk in group]
  n_tied = jnp.stack([jnp.sum(x, dtype=jnp.int32) for x in tied])
  before = jnp.cumsum(n_tied) - n_tied
  want = jnp.clip(keep_tied - before, 0, n_tied)  # ties each leaf keeps
  index = [_flat_index(x.shape) for x in tied]
  sizes = jnp.asarray([x.size for x in tied], jnp.int32)

  def step(carry):
    lo, hi = carry
    mid = lo + (hi - lo) // 2
    n = jnp.stack(
      [jnp.sum(x & (i < mid[j]), dtype=jnp.int32) for j, (x, i) in enumerate(zip(tied, index, strict=True))]
    )
    enough = n >= want
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  # smallest J with count(tie & index < J) >= want: 0 where nothing is kept
  cut = lax.while_loop(lambda c: jnp.any(c[0] < c[1]), step, (jnp.zeros_like(sizes), sizes))[1]
  return [cut[j] for j in range(len(group))]


LAYOUTS = ("leaves", "compact")


def _block_count(pred: jax.Array) -> jax.Array:
  """Exact count of True in a ``(n, _B)`` block view: int8 sums per block, then int32.

  XLA:CPU lowers a plain ``sum(pred, dtype=int32)`` to a tree of reduce-windows over an int32
  copy of the whole mask; the int8 partials fuse into one pass (~6x faster at 10M entries)."""
  return jnp.sum(jnp.sum(pred, axis=1, dtype=jnp.int8), dtype=jnp.int32)


def _fresh(x: jax.Array, *deps: jax.Array) -> jax.Array:
  """``x``, tied to ``deps`` so that XLA keeps the keys computed from it inside this pass.

  Without the tie, common-subexpression elimination and loop-invariant code motion merge the
  passes' ``ordered_keys(x)`` into one materialised key array: a pass of page-faulting writes
  that costs about three counting passes (the barrier itself is free at run time)."""
  return lax.optimization_barrier((x, deps))[0]


class _Blocks:
  """A leaf seen as whole blocks of ``_B`` (a free reshape of its row-major order) and a tail of
  fewer than ``_B`` entries, so that counts, candidate flags and gathers work per block without
  copying or concatenating the leaf. Every pass recomputes the keys from the scores (see
  :func:`_fresh`): that fuses into the pass, where a key array would cost a pass of writes."""

  def __init__(self, x: jax.Array, offset: int):
    flat = x.reshape(-1)
    self.n_main = x.size - x.size % _B
    self.main = flat[: self.n_main].reshape(-1, _B)
    self.tail = flat[self.n_main :]
    self.offset = offset  # position of the leaf's first entry in its group's order

  def keys(self, *deps):
    """Keys of the blocks and of the tail, computed afresh for the pass that ``deps`` name."""
    return ordered_keys(_fresh(self.main, *deps)), ordered_keys(self.tail)

  def count2(self, a, b):
    """``count(key < a)`` and ``count(key <= b)`` from one read of the leaf."""
    main, tail = self.keys(a, b)
    below = jnp.sum(tail < a, dtype=jnp.int32)
    upto = jnp.sum(tail <= b, dtype=jnp.int32)
    if self.n_main:
      below, upto = below + _block_count(main < a), upto + _block_count(main <= b)
    return below, upto


def _narrow(count2, k, lo, hi, c_lo, c_hi, cap):
  """Shrink [lo, hi] per group until it holds at most ``cap`` entries or one key, keeping
  ``c_lo = count(key < lo)`` and ``c_hi = count(key <= hi)`` exact.

  Each step is one pass that counts at two pivots ``a <= b`` (``count2(a, b)`` gives
  ``count(key < a)`` and ``count(key <= b)``) around the key that linear interpolation of the
  end counts predicts for rank k, wide enough for about ``max(cap / 2, 8, 4%)`` of the entries
  left. That usually lands in one or two steps (a miss still moves an end next to T); after
  two misses in a row the step bisects, so the range at least halves every three steps
  whatever the distribution.
  """

  def active(c):
    lo, hi, c_lo, c_hi, _ = c
    return (lo < hi) & (c_hi - c_lo > cap) & (c_lo < k)  # k == 0 has nothing to search

  def step(c):
    lo, hi, c_lo, c_hi, misses = c
    on = active(c)
    left_n = c_hi - c_lo
    width = (hi - lo).astype(jnp.float32)
    per_entry = width / jnp.maximum(left_n, 1).astype(jnp.float32)  # keys per entry
    guess = ((k - c_lo).astype(jnp.float32) - 0.5) * per_entry
    entries = jnp.maximum(max(cap / 4, 4.0), 0.02 * left_n.astype(jnp.float32))
    half = jnp.maximum(per_entry * entries, 1.0)
    # float32 rounds a wide range up (2**32 - 1 becomes 2**32): clip below the key type's
    # top before converting, then to the range itself
    top = float(np.nextafter(np.float32(np.iinfo(lo.dtype).max), np.float32(0)))
    offset = lambda x: jnp.minimum(jnp.clip(x, 0.0, top).astype(lo.dtype), hi - lo)
    bisect = misses >= 2
    a = jnp.where(bisect, lo + (hi - lo) // 2, lo + offset(guess - half))
    b = jnp.where(bisect, lo + (hi - lo) // 2, lo + offset(guess + half))
    below_a, upto_b = count2(a, b)
    left, right = on & (below_a >= k), on & (upto_b < k)  # T < a, T > b
    inside = on & ~left & ~right
    stuck = inside & (a == lo) & (b == hi)  # the window was the whole range: bisect next
    return (
      jnp.where(right, b + 1, jnp.where(inside, a, lo)),
      jnp.where(left, a - 1, jnp.where(inside, b, hi)),
      jnp.where(right, upto_b, jnp.where(inside, below_a, c_lo)),
      jnp.where(left, below_a, jnp.where(inside, upto_b, c_hi)),
      jnp.where(stuck, 2, jnp.where(inside | bisect, 0, misses + 1)),
    )

  init = (lo, hi, c_lo, c_hi, jnp.zeros(lo.shape, jnp.int32))
  return lax.while_loop(lambda c: jnp.any(active(c)), step, init)[:4]


def _candidates(blocks: list[_Blocks], lo, hi, cap, utype):
  """The keys in [lo, hi] of one group (at most ``cap`` of them, by :func:`_narrow`) and their
  positions, gathered block by block into a small array; the other slots hold the largest key.

  The blocks holding a candidate are found with one nonzero over the group's block flags; each
  leaf then gathers its contiguous run of those blocks into a shared buffer, so the gather is
  at most ``cap`` blocks per leaf and no leaf is copied."""
  top = jnp.asarray(jnp.iinfo(utype).max, utype)

  def keep(keys):
    return jnp.where((keys >= lo) & (keys <= hi), keys, top)

  keys = [keep(ordered_keys(b.tail)) for b in blocks]
  pos = [b.offset + b.n_main + jnp.arange(b.tail.size, dtype=jnp.int32) for b in blocks]
  with_main = [b for b in blocks if b.n_main]
  if with_main:
    flags = []
    for b in with_main:
      main, _ = b.keys(lo, hi)
      flags.append(jnp.any((main >= lo) & (main <= hi), axis=1))
    n_blocks = [f.shape[0] for f in flags]
    total = sum(n_blocks)
    slots = min(cap, total)
    width = max(min(slots, n) for n in n_blocks)
    idx = _first_nonzero(jnp.concatenate(flags), slots)
    idx = jnp.concatenate([idx, jnp.full(width, total, idx.dtype)])
    runs = jnp.stack([jnp.sum(f, dtype=jnp.int32) for f in flags])
    starts = jnp.minimum(jnp.cumsum(runs) - runs, slots)  # where each leaf's run begins in idx
    buf_keys = jnp.full((slots + width, _B), top, utype)
    buf_pos = jnp.zeros((slots + width, _B), jnp.int32)
    first = 0
    for j, (b, n) in enumerate(zip(with_main, n_blocks, strict=True)):
      length = min(slots, n)
      local = lax.dynamic_slice_in_dim(idx, starts[j], length) - first
      ok = (local >= 0) & (local < n)
      local = jnp.clip(local, 0, n - 1)
      rows = jnp.where(ok[:, None], keep(ordered_keys(b.main[local])), top)
      at = b.offset + local[:, None] * _B + jnp.arange(_B, dtype=jnp.int32)
      # later leaves overwrite the tail of an earlier leaf's window: run j ends where j+1 starts
      buf_keys = lax.dynamic_update_slice_in_dim(buf_keys, rows, starts[j], 0)
      buf_pos = lax.dynamic_update_slice_in_dim(buf_pos, at, starts[j], 0)
      first += n
    keys.append(buf_keys[:slots].reshape(-1))
    pos.append(buf_pos[:slots].reshape(-1))
  return jnp.concatenate(keys), jnp.concatenate(pos)


_SUPER = 32  # blocks per super-block of the two-level nonzero


def _first_nonzero(flags: jax.Array, size: int) -> jax.Array:
  """Ascending indices of the first ``size`` True entries of ``flags``, padded with
  ``flags.size``: ``jnp.nonzero(flags, size=size)``, but in two levels when ``flags`` is long
  (the nonzero of XLA is a cumulative sum and a scatter over its whole input, ~9 ns an entry on
  CPU): first the super-blocks of ``_SUPER`` flags that hold one, then the flags inside them."""
  n = flags.size
  if n < 4 * size * _SUPER or n % _SUPER:
    return jnp.nonzero(flags, size=size, fill_value=n)[0].astype(jnp.int32)
  groups = flags.reshape(-1, _SUPER)
  hit = jnp.nonzero(jnp.any(groups, axis=1), size=size, fill_value=groups.shape[0])[0]
  inner = jnp.take(groups, hit, axis=0, mode="fill", fill_value=False).reshape(-1)
  at = jnp.nonzero(inner, size=size, fill_value=inner.size)[0]
  row, col = at // _SUPER, at % _SUPER
  found = at < inner.size
  return jnp.where(found, hit[jnp.minimum(row, size - 1)] * _SUPER + col, n).astype(jnp.int32)


def _first_positions(tied: jax.Array, pos: jax.Array, want: jax.Array, size: int) -> jax.Array:
  """Smallest P with ``count(tied & pos < P) >= want`` (0 when ``want`` is 0)."""

  def step(c):
    lo, hi = c
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(tied & (pos < mid), dtype=jnp.int32) >= want
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  return lax.while_loop(lambda c: c[0] < c[1], step, (jnp.int32(0), jnp.int32(size)))[1]


def removal_keep_masks(
  scores: Sequence[jax.Array],
  n_remove: jax.Array | Sequence[int],
  groups: Sequence[int] | None = None,
  *,
  layout: str | None = None,
) -> list[jax.Array]:
  """Keep-masks that remove exactly ``n_remove[g]`` lowest scores within each group.

  With ``layout="leaves"`` every pass over the data is a per-leaf count in the leaf's own
  shape, so scores sharded over a mesh give masks sharded the same way and move only counts
  between devices (scalars, or per-row partial counts where a leaf's last axis is sharded): no
  leaf is flattened, concatenated or gathered. ``"compact"`` is the one-device layout: each
  leaf is viewed as blocks of 32 (counted through int8 partial sums), the search over the full
  data stops once at most 8192 candidates are left, and those are gathered into a small array
  where the exact select and the tie cut finish: fewer full passes than ``"leaves"``, identical
  in result (``make bench`` times both). The default is ``"leaves"`` when the
  process sees more than one device (where scores may be sharded) and ``"compact"`` otherwise.

  Args:
    scores: floating arrays (any shapes, any float dtype).
    n_remove: int per group (may be traced), each in ``[0, size of group]``.
    groups: group id of each array (0..G-1); default: all arrays in one group (a global
      threshold). ``groups=range(len(scores))`` gives one threshold per array.
    layout: ``"leaves"``, ``"compact"`` or None (by device count, above).

  Returns:
    One bool array per score array: True where the unit is kept.

  Raises:
    ValueError: a group of more than ~2**31 units (int32 indexes), or an unknown layout.

  Example:
    >>> import jax.numpy as jnp
    >>> a, b = jnp.array([3.0, 1.0]), jnp.array([2.0, 0.0, 5.0])
    >>> [m.tolist() for m in removal_keep_masks([a, b], [2])]  # global: drop 0 and 1
    [[True, False], [True, False, True]]
  """
  groups = tuple(groups) if groups is not None else (0,) * len(scores)
  if layout is None:
    layout = "leaves" if jax.device_count() > 1 else "compact"
  if layout not in LAYOUTS:
    raise ValueError(f"removal_keep_masks: layout={layout!r} is unknown; expected one of {LAYOUTS} or None.")
  if not scores:
    return []
  # jitted with static groups: eager callers compile once per layout instead of op by op
  return _removal_keep_masks(list(scores), jnp.asarray(n_remove, jnp.int32), groups, layout)


@functools.partial(jax.jit, static_argnames=("groups", "layout", "cap"))
def _removal_keep_masks(scores, n_remove, groups, layout, cap=_CAP):
  n_groups = max(groups) + 1
  if any(s.dtype == jnp.float64 for s in scores):  # compare everything in one key space
    scores = [s.astype(jnp.float64) for s in scores]
  members = [[i for i, g in enumerate(groups) if g == gid] for gid in range(n_groups)]
  sizes = [sum(int(scores[i].size) for i in m) for m in members]
  if max(sizes) > _INDEX_LIMIT:
    raise ValueError(
      f"A threshold group holds {max(sizes)} units, more than int32 indexes. Fix: use "
      "scope='layer' or split the selection."
    )
  utype = jnp.uint64 if scores[0].dtype == jnp.float64 else jnp.uint32
  k = n_remove.reshape(n_groups)
  by_group = [[scores[i] for i in m] for m in members]
  # (leaf, row-major) position of each leaf's first entry in its group: the order ties follow
  offsets = [np.cumsum([0] + [scores[i].size for i in m])[:-1].tolist() for m in members]
  if layout == "compact":
    t, cuts = _compact_select(by_group, offsets, k, sizes, utype, cap)
  else:
    t, cuts = _leaves_select(by_group, k, sizes, utype)
  # k == 0 keeps everything: T is the smallest key and every tie at it survives
  nothing = k == 0
  t = jnp.where(nothing, jnp.zeros((), utype), t)
  cuts = [
    jnp.where(nothing[g], jnp.asarray([x.size for x in by_group[g]], jnp.int32), c)
    for g, c in enumerate(cuts)
  ]
  out: list[jax.Array] = [None] * len(scores)  # type: ignore[list-item]
  for gid, m in enumerate(members):
    for j, i in enumerate(m):
      kk = ordered_keys(_fresh(scores[i], t[gid]))
      out[i] = (kk > t[gid]) | ((kk == t[gid]) & (_flat_index(kk.shape) < cuts[gid][j]))
  return out


def _leaf_count(pred: jax.Array) -> jax.Array:
  """Exact count of True in ``pred``, in its own shape (so it shards like the leaf): partial
  sums along the last axis in the narrowest integer type that holds that axis's length (the
  fast form of :func:`_block_count`; a sharded last axis all-reduces those partials, which
  never exceed the axis length), then int32."""
  n = pred.shape[-1] if pred.ndim else 0
  if n < 2 or n > np.iinfo(np.int16).max:
    return jnp.sum(pred, dtype=jnp.int32)
  narrow = jnp.int8 if n <= np.iinfo(np.int8).max else jnp.int16
  return jnp.sum(jnp.sum(pred, axis=-1, dtype=narrow), dtype=jnp.int32)


def _per_group(count2, n_groups: int):
  """``count2(g, a, b)`` for one group lifted to all groups: pivots and counts per group."""
  return lambda a, b: (
    jnp.stack(c) for c in zip(*(count2(g, a[g], b[g]) for g in range(n_groups)), strict=True)
  )


def _full_tie_cuts(by_group, t, keep_tied):
  """Each leaf's tie cut from per-leaf counts over the full data (:func:`_tie_cuts`)."""
  return [
    jnp.stack(_tie_cuts([ordered_keys(x) for x in g], t[gid], keep_tied[gid]))
    for gid, g in enumerate(by_group)
  ]


def _no_cuts(by_group):
  """No tie straddles T: every tie at T is removed."""
  return [jnp.zeros(len(g), jnp.int32) for g in by_group]


def _leaves_select(by_group, k, sizes, utype):
  """T per group and each leaf's tie cut, from per-leaf counts only (the sharded layout): the
  bracket, then :func:`_narrow` all the way down to a single key, which is T, with its exact
  counts below and at it."""

  def count2(g, a, b):
    below = upto = jnp.zeros((), jnp.int32)
    for x in by_group[g]:
      kk = ordered_keys(_fresh(x, a, b))
      below = below + _leaf_count(kk < a)
      upto = upto + _leaf_count(kk <= b)
    return below, upto

  lo, hi, c_lo, c_hi = _bracket(by_group, k, sizes, utype, count2)
  t, _, _, n_upto = _narrow(_per_group(count2, len(by_group)), k, lo, hi, c_lo, c_hi, 0)
  keep_tied = n_upto - k  # ties at T that survive: the earliest ones
  # Usually no tie straddles T (keep_tied == 0 everywhere): skip the tie search.
  straddles = jnp.any((keep_tied > 0) & (k > 0))  # k == 0 is settled by the caller
  return t, lax.cond(straddles, lambda: _full_tie_cuts(by_group, t, keep_tied), lambda: _no_cuts(by_group))


def _compact_select(by_group, offsets, k, sizes, utype, cap):
  """T per group and each leaf's tie cut: :func:`_narrow` on the full data down to ``cap``
  candidates, then an exact select among the gathered candidates."""
  blocks = [
    [_Blocks(x, o) for x, o in zip(g, offs, strict=True)] for g, offs in zip(by_group, offsets, strict=True)
  ]

  def count2(g, a, b):
    below, upto = zip(*(blk.count2(a, b) for blk in blocks[g]), strict=True)
    return sum(below), sum(upto)

  lo, hi, c_lo, c_hi = _bracket(by_group, k, sizes, utype, count2)
  lo, hi, c_lo, c_hi = _narrow(_per_group(count2, len(blocks)), k, lo, hi, c_lo, c_hi, cap)
  # A group still wider than cap has lo == hi: T is that key, tied more than cap times.
  one_key = c_hi - c_lo > cap
  cands = [_candidates(b, lo[g], hi[g], cap, utype) for g, b in enumerate(blocks)]
  t_small = _kth_key([[c] for c, _ in cands], k - c_lo, lo, hi)
  t = jnp.where(one_key, lo, t_small)
  n_below = c_lo + jnp.stack([jnp.sum(c < t[g], dtype=jnp.int32) for g, (c, _) in enumerate(cands)])
  n_tied = jnp.where(
    one_key, c_hi - c_lo, jnp.stack([jnp.sum(c == t[g], dtype=jnp.int32) for g, (c, _) in enumerate(cands)])
  )
  keep_tied = n_tied - (k - n_below)
  leaf_sizes = [[int(x.size) for x in g] for g in by_group]

  def from_candidates():
    # the cut P is a position in the group; leaf j keeps its ties before P - offset_j
    out = []
    for g, (c, p) in enumerate(cands):
      cut = _first_positions(c == t[g], p, keep_tied[g], sizes[g])
      out.append(jnp.stack([jnp.clip(cut - o, 0, n) for o, n in zip(offsets[g], leaf_sizes[g], strict=True)]))
    return out

  straddles = (keep_tied > 0) & (k > 0)  # k == 0 is settled by the caller
  cuts = lax.cond(jnp.any(straddles & ~one_key), from_candidates, lambda: _no_cuts(by_group))
  wide = lax.cond(
    jnp.any(straddles & one_key), lambda: _full_tie_cuts(by_group, t, keep_tied), lambda: _no_cuts(by_group)
  )
  return t, [jnp.where(one_key[g], w, c) for g, (w, c) in enumerate(zip(wide, cuts, strict=True))]


def kth_smallest(x: jax.Array, k: int | jax.Array) -> jax.Array:
  """The k-th smallest element of ``x`` (1-based), exactly, without sorting.

  Args:
    x: a floating array.
    k: the rank, in ``[1, x.size]`` (may be traced).

  Returns:
    A 0-d array of ``x``'s dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> float(kth_smallest(jnp.array([3., -1., 2., 2.]), 3))
    2.0
  """
  keep = removal_keep_masks([x], jnp.asarray(k, jnp.int32) - 1)[0]
  # the smallest kept value after removing k-1 values is the k-th smallest
  return jnp.min(jnp.where(keep, x, jnp.asarray(jnp.inf, x.dtype)))


def top_k_mask(x: jax.Array, k: int | jax.Array) -> jax.Array:
  """Bool mask of the ``k`` largest entries of ``x`` (earlier index wins ties), like
  ``lax.top_k`` over the flattened array but without sorting.

  Args:
    x: a floating array.
    k: how many to keep, in ``[0, x.size]`` (may be traced).

  Returns:
    A bool array of ``x``'s shape with exactly ``k`` True.

  Example:
    >>> import jax.numpy as jnp
    >>> top_k_mask(jnp.array([1.0, 3.0, 3.0, 0.0]), 2).tolist()
    [False, True, True, False]
  """
  return removal_keep_masks([x], jnp.asarray(x.size - k, jnp.int32))[0]

"""Mask learning on frozen or trained weights: one real-valued variable per weight (scores,
logits, gate parameters) turned into a mask by an estimator inside the forward pass.

``learned_mask`` is the shared skeleton of straight-through (hard-threshold STE), edge-popup
(top-k STE), supermask (Bernoulli STE), ASLP (Gumbel-softmax) and hard-concrete gates: a method
is an estimator, the rule that reads the final deterministic mask off the variables, and two
optional pieces the subnetwork papers add around them:

* a signed constant: the forward pass sees ``sign(w) * c`` with one constant ``c`` per layer,
  computed once from the initial weights (the weights themselves are never written);
* a per-layer rescale of the masked kernel: a learned scalar (ASLP's smart rescale) or the
  dynamic ``numel / sum(mask)`` of the sampled mask (supermask's DWR).

The forward kernel of a selected leaf is ``rescale * W' * z`` with ``W'`` the (signed-constant)
weights and ``z`` the estimator's sample; the extracted subnetwork is the same with ``z`` the
final mask, so any rescale is folded into the returned weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from pruning_jax import selection as sel_lib
from pruning_jax import validation
from pruning_jax.estimators import aslp_sample, bernoulli_ste, hard_threshold_ste, topk_ste
from pruning_jax.pruner import Pruner, PrunerState, no_update
from pruning_jax.schedules import Schedule
from pruning_jax.tree import PyTree, split_key_like

# (key, variable) -> float mask; with counts_steps, (key, variable, step) -> float mask
Estimator = Callable[..., jax.Array]
Init = float | Callable[[jax.Array, jax.Array], jax.Array]  # constant or (key, weight) -> variable
Constant = Callable[[jax.Array], jax.Array]  # initial weight -> the layer's signed-constant magnitude
Rescale = Literal["learned", "dynamic"] | None
Layout = Literal["flax", "torch"] | Callable[[jax.Array], int]
LAYOUTS = ("flax", "torch")


def fan_in(w: jax.Array, layout: Layout = "flax") -> int:
  """Inputs per output unit of a kernel.

  Args:
    w: the kernel.
    layout: ``"flax"``: outputs last (conv HWIO, dense (in, out)): ``prod(shape[:-1])``;
      ``"torch"``: outputs first (Equinox and PyTorch: conv (O, I, H, W), linear (out, in)):
      ``prod(shape[1:])``; or ``w -> fan_in`` for any other layout (e.g. a Flax attention
      kernel (in, heads, head_dim) has fan-in ``shape[0]``).

  Returns:
    The fan-in.

  Raises:
    ValueError: an unknown layout name.

  Example:
    >>> import jax.numpy as jnp
    >>> fan_in(jnp.zeros((3, 3, 16, 32))), fan_in(jnp.zeros((32, 16, 3, 3)), "torch")
    (144, 144)
  """
  if callable(layout):
    return int(layout(w))
  if layout == "flax":
    return math.prod(w.shape[:-1])
  if layout == "torch":
    return math.prod(w.shape[1:])
  raise ValueError(f"fan_in: layout={layout!r} is unknown; expected one of {LAYOUTS} or a function w -> int.")


def empirical_std(w: jax.Array) -> jax.Array:
  """The standard deviation of this layer's initial weights (unbiased, like ``torch.std``).

  The signed constant of supermask and ASLP: ``sign(w) * empirical_std(w)``.

  Args:
    w: the layer's initial kernel.

  Returns:
    (), float32.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(empirical_std(jnp.array([1.0, -1.0, 1.0, -1.0]))), 4)
    1.1547
  """
  return jnp.std(w.astype(jnp.float32), ddof=1)


def kaiming_std(w: jax.Array, keep_fraction: float = 1.0, layout: Layout = "flax") -> jax.Array:
  """Edge-popup's signed Kaiming constant ``sqrt(2 / (fan_in * keep_fraction))``.

  Args:
    w: the layer's kernel (for its fan-in).
    keep_fraction: ``< 1`` is edge-popup's ``scale_fan`` (the fan-in of the kept subnetwork).
    layout: the kernel layout (see :func:`fan_in`).

  Returns:
    (), float32.

  Example:
    >>> import jax.numpy as jnp
    >>> float(kaiming_std(jnp.zeros((2, 5))))
    1.0
  """
  return jnp.asarray(math.sqrt(2.0 / (fan_in(w, layout) * keep_fraction)), jnp.float32)


def kaiming_uniform_scores(key: jax.Array, w: jax.Array, layout: Layout = "flax") -> jax.Array:
  """``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: edge-popup's
  score init (and PyTorch's default kernel init).

  Args:
    key: PRNG key.
    w: the kernel the scores belong to.
    layout: the kernel layout (see :func:`fan_in`).

  Returns:
    float32 scores of ``w``'s shape.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> s = kaiming_uniform_scores(jax.random.key(0), jnp.zeros((4, 3)))
    >>> bool(jnp.all(jnp.abs(s) <= 0.5))
    True
  """
  bound = 1.0 / math.sqrt(fan_in(w, layout))
  return jax.random.uniform(key, w.shape, jnp.float32, -bound, bound)


def _zeros_like_tree(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda _: jnp.zeros((), jnp.float32), tree)


def learned_mask(
  estimator: Estimator,
  *,
  init: Init = 0.0,
  final_mask: Callable[[jax.Array], jax.Array] = lambda m: m >= 0,
  stochastic_eval: bool = False,
  selection: sel_lib.SelectionLike = None,
  signed_constant: Constant | None = None,
  constant_selection: Callable[[PyTree], PyTree] | None = None,
  rescale: Rescale = None,
  name: str = "scores",
  stochastic: bool = False,
  counts_steps: bool = False,
  dtype: Any = jnp.float32,
) -> Pruner:
  """A Pruner whose forward kernels are ``rescale * W' * estimator(key_leaf, m)`` on selected leaves.

  Args:
    estimator: ``(key, m) -> mask`` with the gradient the method wants (see
      :mod:`pruning_jax.estimators`); deterministic estimators ignore the key. Each leaf gets
      its own key, split from the step's key.
    init: the variables' initial value, or ``(key, weight) -> m`` (e.g. edge-popup's
      kaiming-uniform scores).
    final_mask: the deterministic extracted mask ``m -> bool`` (default ``m >= 0``).
    stochastic_eval: evaluate (``train=False``) with the estimator's samples instead of
      ``final_mask`` (supermask's sampled test accuracy).
    selection: which leaves get a mask variable; the others (biases by default) pass unmasked.
    signed_constant: ``w0 -> c``; the forward pass sees ``sign(w) * c`` per selected layer, e.g.
      :func:`empirical_std` or :func:`kaiming_std`. ``c`` is computed once by ``init``.
    constant_selection: ``params -> bool tree``: the masked leaves that get the signed constant
      (default: all of them); the others keep their own weights.
    rescale: ``"learned"``: one scalar per layer (init 1) in ``variables["rescale"]``, labelled
      ``"rescale"`` so it gets its own transform; ``"dynamic"``: ``numel / sum(z)`` of the mask
      in use, recomputed on every forward pass (gradient flows through the sum, as in the
      reference code).
    name: the key of the mask variables in ``PrunerState.learned`` (``"scores"``,
      ``"logits"``); their optax label is ``"learned"``.
    stochastic: the estimator samples, so ``apply`` needs a key whenever it uses it.
    counts_steps: the estimator is ``(key, m, step) -> mask`` (e.g. an annealed temperature);
      the pruner counts optimizer steps in ``buffers["step"]`` (``update`` sets it to the
      step just taken + 1), so the forward pass of step t sees ``step = t``.
    dtype: the mask variables' dtype (``"bfloat16"`` halves their memory and that of their
      optimizer moments; the learned rescale stays float32).

  Returns:
    A :class:`pruning_jax.Pruner`. State: ``variables = {name: tree}`` (plus ``"rescale"``), a
    float array per selected leaf and a 0-d zero elsewhere; ``buffers = {"constant": tree}``
    with a signed constant (a 0-d zero, unused, on leaves without one), plus ``"step"`` (int32)
    with ``counts_steps``.

  Raises:
    ValueError: an unknown ``rescale`` or the reserved name ``"rescale"``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4)}
    >>> pruner = pj.methods.learned_mask(lambda key, m: pj.hard_threshold_ste(m), init=0.1)
    >>> state = pruner.init(jax.random.key(0), params)
    >>> pruner.apply(params, state, key=jax.random.key(1), train=True)["w"].sum().item()
    16.0
  """
  if rescale not in (None, "learned", "dynamic"):
    raise ValueError(f"learned_mask: rescale must be None, 'learned' or 'dynamic', got {rescale!r}.")
  if name == "rescale":
    raise ValueError("learned_mask: name='rescale' is reserved for the learned rescale; choose another.")
  var_dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(var_dtype, jnp.floating):
    raise ValueError(
      f"learned_mask: dtype={dtype!r} is not a floating dtype; mask variables are learned by gradient."
    )

  def init_fn(key, params, context=None):
    del context
    sel = sel_lib.resolve(selection, params)
    keys = split_key_like(key, params)

    def make(p, s, k):
      if not s:
        return jnp.zeros((), var_dtype)
      if callable(init):
        return jnp.asarray(init(k, p), var_dtype)
      return jnp.full(p.shape, init, var_dtype)

    variables = {name: jax.tree.map(make, params, sel, keys)}
    if rescale == "learned":
      variables["rescale"] = jax.tree.map(lambda s: jnp.ones((), jnp.float32) * float(s), sel)
    buffers = {"step": jnp.zeros((), jnp.int32)} if counts_steps else {}
    if signed_constant is not None:
      buffers["constant"] = jax.tree.map(
        lambda p, c: jnp.asarray(signed_constant(p), jnp.float32) if c else jnp.zeros((), jnp.float32),
        params,
        constant_leaves(params),
      )
    return PrunerState(variables, buffers)

  def constant_leaves(params):
    """Static bools: the leaves whose forward kernel is ``sign(w) * c``."""
    sel = sel_lib.resolve(selection, params)
    if signed_constant is None:
      return jax.tree.map(lambda _: False, sel)
    csel = sel if constant_selection is None else constant_selection(params)
    return jax.tree.map(lambda s, c: bool(s and c), sel, csel)

  def _kernel(p, z, s, c, has_constant):
    w = jnp.sign(p) * c.astype(p.dtype) if has_constant else p
    w = w * z.astype(p.dtype)
    if rescale == "learned":
      w = s.astype(p.dtype) * w
    elif rescale == "dynamic":
      w = (z.size / jnp.maximum(jnp.sum(z), 1.0)).astype(p.dtype) * w
    return w

  def _leafwise(fn, params, state, *extra):
    v = state.learned
    scale = v["rescale"] if rescale == "learned" else _zeros_like_tree(v[name])
    const = state.buffers.get("constant", _zeros_like_tree(v[name]))
    return jax.tree.map(fn, params, v[name], scale, const, constant_leaves(params), *extra)

  def apply(params, state, *, key=None, train=True):
    sample = train or stochastic_eval
    if sample and stochastic and key is None:
      raise ValueError(
        "learned_mask.apply: this method samples its mask (train=True or a stochastic evaluation) and "
        "needs key=, a fresh PRNG key per step, e.g. jax.random.fold_in(key, step)."
      )
    if key is None:
      key = jax.random.key(0)  # a deterministic estimator ignores it
    keys = split_key_like(key, params)
    at = (state.buffers["step"],) if counts_steps else ()

    def leaf(p, m, s, c, has_c, k):
      if m.ndim == 0:
        return p
      z = estimator(k, m, *at) if sample else final_mask(m).astype(jnp.float32)
      return _kernel(p, z, s, c, has_c)

    return _leafwise(leaf, params, state, keys)

  def masks(params, state):
    del params
    return jax.tree.map(lambda m: final_mask(m) if m.ndim else jnp.asarray(True), state.learned[name])

  def finalize(params, state):
    def leaf(p, m, s, c, has_c):
      if m.ndim == 0:
        return p
      keep = final_mask(m)
      return jnp.where(keep, _kernel(p, keep.astype(jnp.float32), s, c, has_c), jnp.zeros((), p.dtype))

    return _leafwise(leaf, params, state), masks(params, state)

  def labels(learned):
    return {k: jax.tree.map(lambda _, k=k: "learned" if k == name else k, t) for k, t in learned.items()}

  def count_step(params, state, info):
    del params
    return state._replace(buffers={**state.buffers, "step": jnp.asarray(info.step, jnp.int32) + 1})

  return Pruner(init_fn, apply, count_step if counts_steps else no_update, finalize, masks, labels)


def _conv_kernels(params: PyTree) -> PyTree:
  """Leaves with ndim > 2: the conv kernels of a CNN (dense kernels are 2-D)."""
  return jax.tree.map(lambda p: bool(getattr(p, "ndim", 0) > 2), params)


SIGNED_CONSTANT_LAYERS = ("conv", "all")


def _signed_constant_layers(signed_constant: bool, layers: str) -> sel_lib.SelectionLike:
  if layers not in SIGNED_CONSTANT_LAYERS:
    raise ValueError(
      f"signed_constant_layers={layers!r} is unknown; expected one of {SIGNED_CONSTANT_LAYERS} "
      "('conv': conv kernels only, as the reference code; 'all': every masked layer)."
    )
  return _conv_kernels if (signed_constant and layers == "conv") else None


def straight_through_mask(
  *, threshold: float = 0.0, init: Init = 1.0, selection: sel_lib.SelectionLike = None
) -> Pruner:
  """Mask learning by hard-threshold STE: mask ``1[m > threshold]``, gradient straight to ``m``.

  Args:
    threshold: the keep threshold on the scores.
    init: the scores' initial value or ``(key, weight) -> scores``.
    selection: the masked leaves.

  Returns:
    A :class:`pruning_jax.Pruner` with ``variables["scores"]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
    >>> pruner = pj.methods.straight_through_mask(init=lambda k, w: w - 2.5)
    >>> pruner.finalize(params, pruner.init(jax.random.key(0), params))[0]["w"].tolist()
    [[0.0, 0.0], [3.0, 4.0]]
  """
  return learned_mask(
    lambda key, m: hard_threshold_ste(m, threshold),
    init=init,
    final_mask=lambda m: m > threshold,
    selection=selection,
  )


def aslp(
  *,
  temperature: float | Schedule = 1.0,
  noise_scale: float | Schedule = 1.0,
  smart_rescale: bool = False,
  signed_constant: bool = False,
  signed_constant_layers: str = "conv",
  init: float = 0.0,
  selection: sel_lib.SelectionLike = None,
  dtype: Any = jnp.float32,
) -> Pruner:
  """ASLP (Dupont et al., ICIP 2022): ``z = STGS([m, 0])`` on every forward pass, weights frozen.

  The keep probability is ``sigmoid(m)``; ``m`` starts at 0 (p = 0.5). The extracted subnetwork
  keeps ``m >= 0`` and the pruning rate is whatever fraction ends below 0. Evaluation with
  ``train=False`` samples (as the reference code validates); ``finalize`` is the deterministic
  subnetwork.

  Args:
    temperature: tau of the Gumbel-softmax (1 in the paper), or a schedule ``step -> tau``
      (temperature annealing; with the hard straight-through sample it scales the logits'
      gradient, not the forward mask).
    noise_scale: the scale of the Logistic noise (1 in the paper), or a schedule ``step -> a``
      (e.g. :func:`pruning_jax.schedules.anneal`); at 0 the forward pass is the extracted
      subnetwork ``1[m > 0]`` with the sigmoid's straight-through gradient, a deterministic
      fine-tune of the logits. Neither schedule is the paper's method.
    smart_rescale: one learned scalar per layer (init 1; give the ``"rescale"`` label its own
      optimizer, SGD lr 1e-3 in the paper).
    signed_constant: replace kernels by ``sign(w) * std(w)``, the empirical std of the layer's
      initial weights.
    signed_constant_layers: ``"conv"`` (the reference code: its dense layers are re-initialised
      after the constant is computed, so they keep random weights) or ``"all"``.
    init: the logits' initial value.
    selection: the masked leaves.
    dtype: the logits' dtype (``"bfloat16"``: half the memory of float32 logits and moments,
      and bfloat16's 8-bit mantissa for every update; see :func:`learned_mask`).

  Returns:
    A :class:`pruning_jax.Pruner` with ``variables["logits"]`` (and ``"rescale"``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.ones((8, 8))}
    >>> pruner = pj.methods.aslp(smart_rescale=True)
    >>> state = pruner.init(jax.random.key(0), params)
    >>> sorted(state.learned), int(pruner.masks(params, state)["w"].sum())  # m = 0 keeps all
    (['logits', 'rescale'], 64)
  """
  if not callable(temperature):
    validation.positive(temperature, "aslp: temperature")
  if not callable(noise_scale):
    validation.positive(noise_scale, "aslp: noise_scale", allow_zero=True)
  scheduled = callable(temperature) or callable(noise_scale)

  def at(value, step):
    return value(step) if callable(value) else value

  def sample(key, m, step=0):
    return aslp_sample(key, m, at(temperature, step), at(noise_scale, step))

  return learned_mask(
    sample,
    init=init,
    final_mask=lambda m: m >= 0,
    stochastic_eval=True,
    selection=selection,
    signed_constant=empirical_std if signed_constant else None,
    constant_selection=_signed_constant_layers(signed_constant, signed_constant_layers),
    rescale="learned" if smart_rescale else None,
    name="logits",
    stochastic=True,
    counts_steps=scheduled,
    dtype=dtype,
  )


def supermask(
  *,
  dynamic_rescale: bool = False,
  signed_constant: bool = False,
  init: float = 0.0,
  selection: sel_lib.SelectionLike = None,
  dtype: Any = jnp.float32,
) -> Pruner:
  """Supermask (Zhou et al., NeurIPS 2019): ``z ~ Bernoulli(sigmoid(m))`` with straight-through,
  weights frozen, sampled at evaluation too (``train=False``); ``finalize`` keeps ``m >= 0``.

  Args:
    dynamic_rescale: DWR, multiply each kernel by ``numel / sum(z)`` of the mask in use.
    signed_constant: use ``sign(w) * std(w)`` of the layer's initial weights.
    init: the logits' initial value.
    selection: the masked leaves.
    dtype: the logits' dtype (see :func:`learned_mask`).

  Returns:
    A :class:`pruning_jax.Pruner` with ``variables["logits"]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.ones((8, 8))}
    >>> pruner = pj.methods.supermask(init=-1.0)
    >>> int(pruner.masks(params, pruner.init(jax.random.key(0), params))["w"].sum())
    0
  """
  return learned_mask(
    bernoulli_ste,
    init=init,
    final_mask=lambda m: m >= 0,
    stochastic_eval=True,
    selection=selection,
    signed_constant=empirical_std if signed_constant else None,
    rescale="dynamic" if dynamic_rescale else None,
    name="logits",
    stochastic=True,
    dtype=dtype,
  )


def edge_popup(
  keep_fraction: float = 0.5,
  *,
  signed_constant: Literal["kaiming", "empirical"] | None = None,
  scale_fan: bool = False,
  layout: Layout = "flax",
  selection: sel_lib.SelectionLike = None,
  dtype: Any = jnp.float32,
) -> Pruner:
  """Edge-popup (Ramanujan et al., CVPR 2020): each layer keeps the top ``keep_fraction`` of
  ``|scores|`` (exactly ``round(k * numel)`` weights), gradient straight to the scores.

  Scores start at ``U(+-1/sqrt(fan_in))``; weights are frozen. Weight decay on the scores comes
  from their optimizer (``optax.add_decayed_weights``).

  Args:
    keep_fraction: k, the kept fraction of every layer, in (0, 1].
    signed_constant: ``"kaiming"``, the paper's ``usc`` (``+-sqrt(2/fan_in)``);
      ``"empirical"``, the layer's empirical std; None keeps the weights.
    scale_fan: compute the Kaiming constant with ``fan_in * k``.
    layout: the kernels' layout for the fan-in (``"flax"``, ``"torch"`` for Equinox and
      PyTorch-style kernels, or ``w -> fan_in``; see :func:`fan_in`).
    selection: the masked leaves.
    dtype: the scores' dtype (see :func:`learned_mask`).

  Returns:
    A :class:`pruning_jax.Pruner` with ``variables["scores"]``.

  Raises:
    ValueError: ``keep_fraction`` outside (0, 1], an unknown ``signed_constant`` or layout,
      or ``scale_fan`` without the Kaiming constant.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> params = {"w": jnp.ones((10, 10))}
    >>> pruner = pj.methods.edge_popup(0.3)
    >>> int(pruner.masks(params, pruner.init(jax.random.key(0), params))["w"].sum())
    30
  """
  k = validation.fraction(keep_fraction, "edge_popup: keep_fraction", upper_open=False, what="kept fraction")
  if k == 0.0:
    raise ValueError("edge_popup: keep_fraction is the kept fraction k in (0, 1], got 0.0.")
  if signed_constant not in (None, "kaiming", "empirical"):
    raise ValueError(
      f"edge_popup: signed_constant must be None, 'kaiming' or 'empirical', got {signed_constant!r}."
    )
  if scale_fan and signed_constant != "kaiming":
    raise ValueError("edge_popup: scale_fan rescales the Kaiming constant; pass signed_constant='kaiming'.")
  if not callable(layout) and layout not in LAYOUTS:
    raise ValueError(f"edge_popup: layout={layout!r} is unknown; expected one of {LAYOUTS} or w -> fan_in.")
  constants = {
    None: None,
    "empirical": empirical_std,
    "kaiming": lambda w: kaiming_std(w, keep_fraction if scale_fan else 1.0, layout),
  }
  return learned_mask(
    lambda key, s: topk_ste(s, keep_fraction),
    init=lambda key, w: kaiming_uniform_scores(key, w, layout),
    final_mask=lambda s: topk_ste(s, keep_fraction) > 0,
    selection=selection,
    signed_constant=constants[signed_constant],
    dtype=dtype,
  )


__all__ = [
  "aslp",
  "edge_popup",
  "empirical_std",
  "fan_in",
  "kaiming_std",
  "kaiming_uniform_scores",
  "learned_mask",
  "straight_through_mask",
  "supermask",
]

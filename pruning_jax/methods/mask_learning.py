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

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jnp.ones((4, 4)), "b": jnp.zeros(4)}
  >>> pruner = pj.methods.learned_mask(lambda key, m: pj.hard_threshold_ste(m), init=0.1)
  >>> state = pruner.init(jax.random.key(0), params)
  >>> pruner.apply(params, state, key=jax.random.key(1), train=True)["w"].sum().item()
  16.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

from pruning_jax import selection as sel_lib
from pruning_jax.estimators import aslp_sample, bernoulli_ste, hard_threshold_ste, topk_ste
from pruning_jax.pruner import Pruner, PrunerState, no_update
from pruning_jax.tree import split_key_like

Estimator = Callable[[jax.Array, jax.Array], jax.Array]  # (key, variable) -> float mask
Init = float | Callable[[jax.Array, jax.Array], jax.Array]  # constant or (key, weight) -> variable
Constant = Callable[[jax.Array], jax.Array]  # initial weight -> the layer's signed-constant magnitude
Rescale = Literal["learned", "dynamic"] | None


def fan_in(w: jax.Array) -> int:
  """Inputs per output unit of a Flax kernel: ``prod(shape[:-1])`` (conv HWIO and dense IO)."""
  return math.prod(w.shape[:-1])


def empirical_std(w: jax.Array) -> jax.Array:
  """The standard deviation of this layer's initial weights (unbiased, like ``torch.std``).

  The signed constant of supermask and ASLP: ``sign(w) * empirical_std(w)``.
  """
  return jnp.std(w.astype(jnp.float32), ddof=1)


def kaiming_std(w: jax.Array, keep_fraction: float = 1.0) -> jax.Array:
  """Edge-popup's signed Kaiming constant ``sqrt(2 / (fan_in * keep_fraction))``.

  ``keep_fraction < 1`` is edge-popup's ``scale_fan`` (the fan-in of the kept subnetwork).
  """
  return jnp.asarray(math.sqrt(2.0 / (fan_in(w) * keep_fraction)), jnp.float32)


def kaiming_uniform_scores(key: jax.Array, w: jax.Array) -> jax.Array:
  """``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: edge-popup's
  score init (and PyTorch's default kernel init)."""
  bound = 1.0 / math.sqrt(fan_in(w))
  return jax.random.uniform(key, w.shape, jnp.float32, -bound, bound)


def learned_mask(
  estimator: Estimator,
  *,
  init: Init = 0.0,
  final_mask: Callable[[jax.Array], jax.Array] = lambda m: m >= 0,
  stochastic_eval: bool = False,
  selection: sel_lib.SelectionLike = None,
  signed_constant: Constant | None = None,
  rescale: Rescale = None,
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
    rescale: ``"learned"``: one scalar per layer (init 1) in ``variables["rescale"]``, labelled
      ``"rescale"`` so it gets its own transform; ``"dynamic"``: ``numel / sum(z)`` of the mask
      in use, recomputed on every forward pass (gradient flows through the sum, as in the
      reference code).

  State: ``variables = {"mask": tree}`` (plus ``"rescale"``), a float array per selected leaf and
  a 0-d zero elsewhere; ``buffers = {"constant": tree}`` with a signed constant, else ``{}``.
  """
  if rescale not in (None, "learned", "dynamic"):
    raise ValueError(f"rescale must be None, 'learned' or 'dynamic', got {rescale!r}.")

  def init_fn(key, params):
    sel = sel_lib.resolve(selection, params)
    keys = split_key_like(key, params)

    def make(p, s, k):
      if not s:
        return jnp.zeros((), jnp.float32)
      if callable(init):
        return jnp.asarray(init(k, p), jnp.float32)
      return jnp.full(p.shape, init, jnp.float32)

    variables = {"mask": jax.tree.map(make, params, sel, keys)}
    if rescale == "learned":
      variables["rescale"] = jax.tree.map(lambda s: jnp.ones((), jnp.float32) * float(s), sel)
    buffers = {}
    if signed_constant is not None:
      buffers["constant"] = jax.tree.map(
        lambda p, s: jnp.asarray(signed_constant(p), jnp.float32) if s else jnp.zeros((), jnp.float32),
        params,
        sel,
      )
    return PrunerState(variables, buffers)

  def _leafwise(fn, params, state, *extra):
    v = state.variables
    scale = v["rescale"] if rescale == "learned" else jax.tree.map(lambda _: None, v["mask"])
    const = state.buffers.get("constant", jax.tree.map(lambda _: None, v["mask"]))
    return jax.tree.map(fn, params, v["mask"], scale, const, *extra, is_leaf=lambda x: x is None)

  def _kernel(p, z, s, c):
    w = p if c is None else jnp.sign(p) * c.astype(p.dtype)
    w = w * z.astype(p.dtype)
    if rescale == "learned":
      w = s.astype(p.dtype) * w
    elif rescale == "dynamic":
      w = (z.size / jnp.maximum(jnp.sum(z), 1.0)).astype(p.dtype) * w
    return w

  def apply(params, state, *, key=None, train=True):
    keys = split_key_like(key, params) if key is not None else jax.tree.map(lambda _: None, params)

    def leaf(p, m, s, c, k):
      if m.ndim == 0:
        return p
      z = estimator(k, m) if (train or stochastic_eval) else final_mask(m).astype(jnp.float32)
      return _kernel(p, z, s, c)

    return _leafwise(leaf, params, state, keys)

  def masks(params, state):
    del params
    return jax.tree.map(lambda m: final_mask(m) if m.ndim else jnp.asarray(True), state.variables["mask"])

  def finalize(params, state):
    def leaf(p, m, s, c):
      if m.ndim == 0:
        return p
      keep = final_mask(m)
      return jnp.where(keep, _kernel(p, keep.astype(jnp.float32), s, c), jnp.zeros((), p.dtype))

    return _leafwise(leaf, params, state), masks(params, state)

  def labels(variables):
    return {
      k: jax.tree.map(lambda _, k=k: "variables" if k == "mask" else k, t) for k, t in variables.items()
    }

  return Pruner(init_fn, apply, no_update, finalize, masks, labels)


def straight_through(
  *, threshold: float = 0.0, init: Init = 1.0, selection: sel_lib.SelectionLike = None
) -> Pruner:
  """Hard-threshold STE: mask ``1[m > threshold]``, gradient passed straight to ``m``."""
  return learned_mask(
    lambda key, m: hard_threshold_ste(m, threshold),
    init=init,
    final_mask=lambda m: m > threshold,
    selection=selection,
  )


def aslp(
  *,
  temperature: float = 1.0,
  smart_rescale: bool = False,
  signed_constant: bool = False,
  init: float = 0.0,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """ASLP (Dupont et al., ICIP 2022): ``z = STGS([m, 0])`` on every forward pass, weights frozen.

  The keep probability is ``sigmoid(m)``; ``m`` starts at 0 (p = 0.5). The extracted subnetwork
  keeps ``m >= 0`` and the pruning rate is whatever fraction ends below 0. ``smart_rescale``
  adds one learned scalar per layer (init 1; give the ``"rescale"`` label its own optimizer,
  SGD lr 1e-3 in the paper); ``signed_constant`` replaces each kernel by ``sign(w) * std(w)``
  with the empirical std of the layer's initial weights. Evaluation with ``train=False`` samples
  (as the reference code validates); ``finalize`` is the deterministic subnetwork.
  """
  return learned_mask(
    lambda key, m: aslp_sample(key, m, temperature),
    init=init,
    final_mask=lambda m: m >= 0,
    stochastic_eval=True,
    selection=selection,
    signed_constant=empirical_std if signed_constant else None,
    rescale="learned" if smart_rescale else None,
  )


def supermask(
  *,
  dynamic_rescale: bool = False,
  signed_constant: bool = False,
  init: float = 0.0,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """Supermask (Zhou et al., NeurIPS 2019): ``z ~ Bernoulli(sigmoid(m))`` with straight-through,
  weights frozen, sampled at evaluation too (``train=False``); ``finalize`` keeps ``m >= 0``.

  ``dynamic_rescale`` (DWR) multiplies each kernel by ``numel / sum(z)`` of the mask in use;
  ``signed_constant`` uses ``sign(w) * std(w)`` of the layer's initial weights.
  """
  return learned_mask(
    bernoulli_ste,
    init=init,
    final_mask=lambda m: m >= 0,
    stochastic_eval=True,
    selection=selection,
    signed_constant=empirical_std if signed_constant else None,
    rescale="dynamic" if dynamic_rescale else None,
  )


def edge_popup(
  keep_fraction: float = 0.5,
  *,
  signed_constant: Literal["kaiming", "empirical"] | None = None,
  scale_fan: bool = False,
  selection: sel_lib.SelectionLike = None,
) -> Pruner:
  """Edge-popup (Ramanujan et al., CVPR 2020): each layer keeps the top ``keep_fraction`` of
  ``|scores|`` (exactly ``round(k * numel)`` weights), gradient straight to the scores.

  Scores start at ``U(+-1/sqrt(fan_in))``; weights are frozen. ``signed_constant="kaiming"`` is
  the paper's ``usc`` (``+-sqrt(2/fan_in)``, with ``scale_fan`` the fan-in times k);
  ``"empirical"`` uses the layer's empirical std. Weight decay on the scores comes from their
  optimizer (``optax.add_decayed_weights``).
  """
  if not 0.0 < keep_fraction <= 1.0:
    raise ValueError(f"edge_popup: keep_fraction is the kept fraction k in (0, 1], got {keep_fraction!r}.")
  if signed_constant not in (None, "kaiming", "empirical"):
    raise ValueError(
      f"edge_popup: signed_constant must be None, 'kaiming' or 'empirical', got {signed_constant!r}."
    )
  if scale_fan and signed_constant != "kaiming":
    raise ValueError("edge_popup: scale_fan rescales the Kaiming constant; pass signed_constant='kaiming'.")
  constants = {
    None: None,
    "empirical": empirical_std,
    "kaiming": lambda w: kaiming_std(w, keep_fraction if scale_fan else 1.0),
  }
  return learned_mask(
    lambda key, s: topk_ste(s, keep_fraction),
    init=kaiming_uniform_scores,
    final_mask=lambda s: topk_ste(s, keep_fraction) > 0,
    selection=selection,
    signed_constant=constants[signed_constant],
  )

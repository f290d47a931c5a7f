"""ASLP step for step against an independent NumPy re-implementation of the reference code's
semantics (N0ciple/ASLP: ``strategies/ASLP/layer_functions.py`` and its SGD optimizers).

The reference draws ``gumbel_softmax(stack([m, 0]), tau, hard=True)[0]`` per weight: forward the
one-hot's keep entry ``1[m + g1 > g0]``, backward the gradient of the soft keep probability
``softmax([m + g1, g0] / tau)[0]``; the kernel is ``s * W * z`` (``s`` the smart-rescale scalar),
``W`` frozen (``sign(W) * std(W)`` with the signed constant), biases frozen and unmasked; the
logits take SGD (lr 50, momentum 0.9) and the rescales SGD (lr 1e-3, momentum 0.9), PyTorch's
rule (the first step's buffer is the gradient, no dampening). Given the same weights, batch and
noise, our jitted train step must give the same loss, logit gradient and logits after each step.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import pruning_jax as pj
from experiments import build
from experiments.configs import aslp as aslp_config
from pruning_jax import training

IN, HIDDEN, OUT, BATCH, TAU = 8, 6, 3, 5, 1.0


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(HIDDEN, name="Dense_0")(x))
    return nn.Dense(OUT, name="Dense_1")(h)


def np_step(weights, biases, logits, rescales, noise, x, y, sc, wr):
  """Loss, logit and rescale gradients of one reference forward/backward pass (NumPy, float64)."""
  if sc:  # the reference writes sign(W) * std(W) (unbiased) into the frozen weights
    weights = [np.sign(w) * np.std(w, ddof=1) for w in weights]
  scale = rescales if wr else [1.0] * len(weights)
  soft, hard = [], []
  for m, g in zip(logits, noise, strict=True):
    two = np.stack([m + g, np.zeros_like(m)]) / TAU  # [m, 0] with the noise difference on channel 0
    p = np.exp(two - two.max(0)) / np.exp(two - two.max(0)).sum(0)
    soft.append(p[0])
    hard.append((p[0] > p[1]).astype(np.float64))
  kernels = [s * w * z for s, w, z in zip(scale, weights, hard, strict=True)]
  h = [x]
  pre = []
  for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
    a = h[-1] @ k + b
    pre.append(a)
    h.append(np.maximum(a, 0.0) if i < len(kernels) - 1 else a)
  out = h[-1]
  shifted = out - out.max(1, keepdims=True)
  logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
  loss = -logp[np.arange(len(y)), y].mean()
  da = (np.exp(logp) - np.eye(OUT)[y]) / len(y)
  g_logits, g_scale = [None] * len(kernels), [None] * len(kernels)
  for i in reversed(range(len(kernels))):
    g_kernel = h[i].T @ da
    # straight-through: d z / d m is that of the soft keep probability, y (1 - y) / tau
    g_logits[i] = g_kernel * scale[i] * weights[i] * soft[i] * (1 - soft[i]) / TAU
    g_scale[i] = float((g_kernel * weights[i] * hard[i]).sum())
    if i:
      da = (da @ kernels[i].T) * (pre[i - 1] > 0)
  return loss, g_logits, g_scale


def sgd(lr, momentum, values, grads, buffers):
  """torch.optim.SGD: buf = g on the first step, then momentum * buf + g; value -= lr * buf."""
  buffers = [g if b is None else momentum * b + g for b, g in zip(buffers, grads, strict=True)]
  return [v - lr * b for v, b in zip(values, buffers, strict=True)], buffers


# the plain variant in the slow suite: (True, True) covers every term of the plain one
@pytest.mark.parametrize("sc, wr", [pytest.param(False, False, marks=pytest.mark.slow), (True, True)])
def test_two_train_steps_equal_the_reference_semantics(sc, wr):
  model = MLP()
  x = np.asarray(jax.random.normal(jax.random.key(1), (BATCH, IN)))
  y = np.array([0, 2, 1, 1, 0])
  variables = model.init(jax.random.key(0), jnp.zeros((1, IN)))
  pruner = pj.methods.aslp(smart_rescale=wr, signed_constant=sc, signed_constant_layers="all")
  kw = {"steps_per_epoch": 1, "total_steps": 2}
  learned_tx = {"learned": build.optimizer(aslp_config.MASK_SGD, "mask", **kw)}
  if wr:
    learned_tx["rescale"] = build.optimizer(aslp_config.RESCALE_SGD, "rescale", **kw)
  tx = training.optimizer(build.optimizer(aslp_config.FROZEN, "w", **kw), learned_tx, pruner=pruner)
  state = training.init_train_state(jax.random.key(2), variables, pruner, tx)
  step = jax.jit(training.make_train_step(training.linen_apply(model), pruner, tx))

  layers = ("Dense_0", "Dense_1")
  params = state.params
  weights = [np.asarray(params[n]["kernel"], np.float64) for n in layers]
  biases = [np.asarray(params[n]["bias"], np.float64) for n in layers]
  logits = [np.zeros_like(w) for w in weights]  # m starts at 0
  rescales = [1.0, 1.0]
  buf_m, buf_s = [None, None], [None, None]
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  for t in range(2):
    # the noise our step draws: its apply key, split per leaf, one Logistic(0, 1) = g1 - g0 each
    k_apply, _ = jax.random.split(jax.random.fold_in(state.key, t))
    keys = pj.tree.split_key_like(k_apply, params)
    noise = [
      np.asarray(jax.random.logistic(keys[n]["kernel"], w.shape))
      for n, w in zip(layers, weights, strict=True)
    ]
    loss, g_m, g_s = np_step(weights, biases, logits, rescales, noise, x, y, sc, wr)

    def loss_of(learned, st=state, k=k_apply):
      seen = pruner.apply(st.params, st.pruner_state._replace(learned=learned), key=k, train=True)
      out = model.apply({"params": seen}, batch["image"])
      return jnp.mean(-jax.nn.log_softmax(out)[jnp.arange(BATCH), batch["label"]])

    ours = jax.jit(jax.grad(loss_of))(state.pruner_state.learned)
    new_state, metrics = step(state, batch)
    np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
    for i, n in enumerate(layers):
      np.testing.assert_allclose(np.asarray(ours["logits"][n]["kernel"]), g_m[i], rtol=1e-4, atol=1e-7)
      if wr:
        np.testing.assert_allclose(float(ours["rescale"][n]["kernel"]), g_s[i], rtol=1e-4, atol=1e-7)
    logits, buf_m = sgd(50.0, 0.9, logits, g_m, buf_m)
    if wr:
      rescales, buf_s = sgd(1e-3, 0.9, rescales, g_s, buf_s)
    state = new_state
    for i, n in enumerate(layers):  # the logits (and rescales) after the update
      np.testing.assert_allclose(
        np.asarray(state.pruner_state.learned["logits"][n]["kernel"]), logits[i], rtol=1e-4, atol=1e-4
      )
      if wr:
        np.testing.assert_allclose(
          float(state.pruner_state.learned["rescale"][n]["kernel"]), rescales[i], rtol=1e-6
        )
    chex.assert_trees_all_equal(state.params, variables["params"])  # weights and biases stay frozen


def test_annealed_noise_counts_steps_and_ends_on_the_extracted_network():
  # noise 1 for two steps, then 0: from step 2 on the training forward pass is the extraction
  model = MLP()
  variables = model.init(jax.random.key(0), jnp.zeros((1, IN)))
  schedule = pj.schedules.anneal(1.0, 0.0, end_step=2, shape="step")
  pruner = pj.methods.aslp(noise_scale=schedule, temperature=pj.schedules.anneal(1.0, 0.5, end_step=4))
  tx = training.optimizer(optax.set_to_zero(), optax.sgd(50.0, momentum=0.9), pruner=pruner)
  state = training.init_train_state(jax.random.key(2), variables, pruner, tx)
  step = jax.jit(training.make_train_step(training.linen_apply(model), pruner, tx))
  batch = {"image": jax.random.normal(jax.random.key(1), (BATCH, IN)), "label": jnp.array([0, 2, 1, 1, 0])}
  for t in range(3):
    assert int(state.pruner_state.buffers["step"]) == t
    seen = pruner.apply(state.params, state.pruner_state, key=jax.random.key(t), train=True)
    extracted, _ = pruner.finalize(state.params, state.pruner_state)
    if t < 2:  # still sampled: some weight differs from the extraction (p = 0.5 at m = 0)
      same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), seen, extracted)
      assert not all(jax.tree.leaves(same))
    else:
      chex.assert_trees_all_equal(seen, extracted)
    state, _ = step(state, batch)
  # the logit gradient at step 3 uses tau_3 = 0.5 ** (3 / 4): y (1 - y) / tau with y = sigmoid(m / tau)
  tau = 0.5 ** (3 / 4)

  def kernel_sum(logits):
    st = state.pruner_state._replace(learned={"logits": logits})
    return jnp.sum(pruner.apply(state.params, st, key=jax.random.key(9), train=True)["Dense_1"]["kernel"])

  grads = jax.jit(jax.grad(kernel_sum))(state.pruner_state.learned["logits"])
  y = jax.nn.sigmoid(state.pruner_state.learned["logits"]["Dense_1"]["kernel"] / tau)
  want = state.params["Dense_1"]["kernel"] * y * (1 - y) / tau
  np.testing.assert_allclose(grads["Dense_1"]["kernel"], want, rtol=1e-5, atol=1e-7)


def test_bfloat16_logits_halve_the_state_and_stay_bfloat16_through_a_step():
  model = MLP()
  variables = model.init(jax.random.key(0), jnp.zeros((1, IN)))
  batch = {"image": jax.random.normal(jax.random.key(1), (BATCH, IN)), "label": jnp.array([0, 2, 1, 1, 0])}

  def run(dtype):
    pruner = pj.methods.aslp(signed_constant=True, signed_constant_layers="all", dtype=dtype)
    tx = training.optimizer(optax.set_to_zero(), optax.sgd(50.0, momentum=0.9), pruner=pruner)
    state = training.init_train_state(jax.random.key(2), variables, pruner, tx)
    state, metrics = jax.jit(training.make_train_step(training.linen_apply(model), pruner, tx))(state, batch)
    return state, float(metrics["loss"])

  full, loss32 = run(jnp.float32)
  half, loss16 = run("bfloat16")
  kernels = [x for x in jax.tree.leaves(half.pruner_state.learned) if x.ndim]
  assert kernels and all(x.dtype == jnp.bfloat16 for x in kernels)
  moments = [x for x in jax.tree.leaves(half.opt_state) if getattr(x, "ndim", 0) == 2]
  assert moments and all(x.dtype == jnp.bfloat16 for x in moments)  # the momentum follows the logits
  nbytes = lambda t: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(t) if x.ndim)  # noqa: E731
  assert nbytes(half.pruner_state.learned) * 2 == nbytes(full.pruner_state.learned)
  assert loss16 == pytest.approx(loss32, rel=1e-2)  # step 0: m = 0 exactly in both; same noise
  with pytest.raises(ValueError, match="dtype='int8' is not a floating dtype"):
    pj.methods.aslp(dtype="int8")

"""Hard-concrete L0 gates: the expected-L0 penalty and its gradient against the formula, the
sampled gate's law, the deterministic test-time gate, exact masks, the channel variant's shrink,
and L0 training that sparsifies."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning_jax as pj
from pruning_jax import models, surgery, training

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _p_nonzero(a):  # Louizos et al. eq. 12
  return _sigmoid(a - BETA * np.log(-GAMMA / ZETA))


def _test_gate(a):
  return np.clip(_sigmoid(a) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {
    "l1": {"kernel": jax.random.normal(k1, (6, 5)), "bias": jnp.zeros(5)},
    "l2": {"kernel": jax.random.normal(k2, (5, 3)), "bias": jnp.zeros(3)},
  }


def _with_log_alpha(pruner, params, fn):
  state = pruner.init(jax.random.key(1), params)
  la = jax.tree.map(lambda a: fn(a) if a.ndim else a, state.learned["log_alpha"])
  return state._replace(learned={"log_alpha": la})


@settings(max_examples=15, deadline=None)
@given(lam=st.floats(1e-4, 10.0), seed=st.integers(0, 10_000))
def test_the_penalty_gradient_is_lambda_times_the_derivative_of_the_expected_l0(lam, seed):
  params = _params()
  pruner = pj.methods.l0_gates(lam)
  state = _with_log_alpha(pruner, params, lambda a: 3 * jax.random.normal(jax.random.key(seed), a.shape))
  tree = {"params": params, "learned": state.learned}
  update = jax.jit(pruner.penalty.update)
  u, _ = update(jax.tree.map(jnp.zeros_like, tree), pruner.penalty.init(tree), tree)
  for path in ("l1", "l2"):
    a = np.asarray(state.learned["log_alpha"][path]["kernel"], np.float64)
    s = _p_nonzero(a)
    np.testing.assert_allclose(
      u["learned"]["log_alpha"][path]["kernel"], lam * s * (1 - s), rtol=1e-4, atol=lam * 1e-7
    )
    assert float(u["learned"]["log_alpha"][path]["bias"]) == 0.0  # the unselected placeholder
  chex.assert_trees_all_equal(u["params"], jax.tree.map(jnp.zeros_like, params))  # weights: no term
  # and the metric is the mean of the same probabilities
  every = np.concatenate([np.asarray(state.learned["log_alpha"][p]["kernel"]).ravel() for p in ("l1", "l2")])
  np.testing.assert_allclose(
    pruner.metrics(params, state)["l0_expected"], _p_nonzero(every).mean(), rtol=1e-5
  )


def test_a_sampled_gate_is_nonzero_with_the_probability_the_penalty_counts():
  a = jnp.array([-3.0, -1.0, 0.0, 1.5, 4.0])
  params = {"w": jnp.ones((5,))}
  pruner = pj.methods.l0_gates(0.1, selection=lambda p: {"w": True})
  state = pruner.init(jax.random.key(0), params)._replace(learned={"log_alpha": {"w": a}})
  keys = jax.random.split(jax.random.key(1), 40_000)
  z = jax.jit(jax.vmap(lambda k: pruner.apply(params, state, key=k, train=True)["w"]))(keys)
  z = np.asarray(z)
  assert z.min() >= 0.0 and z.max() <= 1.0
  # 40k samples: the standard error of a frequency is at most 0.0025
  np.testing.assert_allclose((z != 0).mean(0), _p_nonzero(np.asarray(a, np.float64)), atol=0.01)
  assert ((z == 1).mean(0)[-1] > 0.5) and ((z == 0).mean(0)[0] > 0.5)  # exact zeros and ones occur


def test_evaluation_and_finalize_use_the_deterministic_gate_and_masks_count_exactly():
  params = _params()
  pruner = pj.methods.l0_gates(1e-3)
  state = _with_log_alpha(pruner, params, lambda a: 3 * jax.random.normal(jax.random.key(7), a.shape))
  out = jax.jit(lambda p, s: pruner.apply(p, s, train=False))(params, state)
  fin, masks = jax.jit(pruner.finalize)(params, state)
  for path in ("l1", "l2"):
    a = np.asarray(state.learned["log_alpha"][path]["kernel"], np.float64)
    want = np.asarray(params[path]["kernel"]) * _test_gate(a)
    np.testing.assert_allclose(out[path]["kernel"], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fin[path]["kernel"], want, rtol=1e-5, atol=1e-7)
    # the gate is 0 exactly where log_alpha <= log(-gamma / zeta) (up to float rounding at it)
    np.testing.assert_array_equal(masks[path]["kernel"], _test_gate(a) > 0)
    chex.assert_trees_all_equal(fin[path]["bias"], params[path]["bias"])
  n_kept = sum(
    int((_test_gate(np.asarray(state.learned["log_alpha"][p]["kernel"])) > 0).sum()) for p in ("l1", "l2")
  )
  assert int(pj.count_params(fin, masks).nonzero) == n_kept  # the biases are zeros here, and ungated
  assert float(pruner.metrics(params, state)["gate_density"]) == pytest.approx(n_kept / 45)


def test_log_alpha_starts_at_the_drop_rate_and_training_needs_a_key():
  params = _params()
  state = pj.methods.l0_gates(1e-3, droprate_init=0.3).init(jax.random.key(0), params)
  a = np.asarray(state.learned["log_alpha"]["l1"]["kernel"])
  assert abs(a.mean() - np.log(0.7 / 0.3)) < 0.01 and 0.003 < a.std() < 0.02
  pruner = pj.methods.l0_gates(1e-3)
  with pytest.raises(ValueError, match="needs key="):
    pruner.apply(params, pruner.init(jax.random.key(0), params), train=True)


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [
    ({"weight": -1.0}, "lambda"),
    ({"weight": 1.0, "structure": "filter"}, "structure='filter' is unknown"),
    ({"weight": 1.0, "droprate_init": 1.0}, "droprate_init"),
    ({"weight": 1.0, "gamma": 0.1}, "gamma < 0"),
    ({"weight": 1.0, "beta": 0.0}, "beta"),
    ({"weight": 1.0, "structure": "channel", "selection": r"kernel"}, "selection="),
  ],
)
def test_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pj.methods.l0_gates(**kwargs)


def test_channel_gates_need_the_forward_pass():
  with pytest.raises(ValueError, match="InitContext with apply_fn and example_input"):
    pj.methods.l0_gates(1e-3, structure="channel").init(jax.random.key(0), _params())


def _vgg():
  m = models.vgg11(widths=(8, 8, 12, 12, 16, 16, 16, 16))
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  v = jax.jit(m.init)(jax.random.key(0), x)
  batch = {"image": x, "label": jnp.arange(4)}
  ctx = training.init_context(training.linen_apply(m), {"batch_stats": v["batch_stats"]}, batches=[batch])
  return m, v, x, ctx


def test_channel_gates_remove_whole_channels_and_the_shrunk_network_computes_the_same():
  m, v, x, ctx = _vgg()
  pruner = pj.methods.l0_gates(1e-3, structure="channel")
  state = pruner.init(jax.random.key(0), v["params"], ctx)
  assert len(state.learned["log_alpha"]) == 8  # every conv-BN-ReLU of the VGG
  la = {
    k: jax.random.normal(jax.random.key(int(k)), a.shape) * 3 for k, a in state.learned["log_alpha"].items()
  }
  state = state._replace(learned={"log_alpha": la})
  params, masks = jax.jit(pruner.finalize)(v["params"], state)
  groups = surgery.channel_groups(lambda v, x: m.apply(v, x), v, x[:1])
  keep = surgery.keep_from_masks(v, groups, {"params": masks})
  for i, _ in state.buffers.gated.value:  # a channel goes exactly where its test gate is 0
    np.testing.assert_array_equal(keep[i], _test_gate(np.asarray(la[str(i)])) > 0)
  removed = sum(int((~k).sum()) for k in keep.values())
  assert removed > 0
  small, v_small = surgery.shrink_module(m, {**v, "params": params}, groups, keep, x[:1])
  np.testing.assert_allclose(
    small.apply(v_small, x), m.apply({**v, "params": params}, x), atol=1e-4, rtol=1e-4
  )
  # evaluation (train=False) is the same gated network as finalize's, before the masks
  evaluated = pruner.apply(v["params"], state, train=False)
  np.testing.assert_allclose(
    m.apply({**v, "params": evaluated}, x), m.apply({**v, "params": params}, x), atol=1e-5, rtol=1e-5
  )


def test_l0_training_drives_gates_to_zero_as_lambda_grows():
  """A jitted train step: the penalty reaches the log-odds, and a larger lambda keeps fewer gates."""
  params = _params()

  def apply_fn(p, s, x, *, train):
    h = jax.nn.relu(x @ p["l1"]["kernel"] + p["l1"]["bias"])
    return h @ p["l2"]["kernel"] + p["l2"]["bias"], s

  x = jax.random.normal(jax.random.key(3), (64, 6))
  batch = {"image": x, "label": jnp.argmax(x[:, :3], -1)}
  density = {}
  for lam in (0.0, 0.05):
    pruner = pj.methods.l0_gates(lam)
    tx = training.optimizer(optax.adam(1e-2), optax.adam(0.1), pruner=pruner)
    state = training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx)
    step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
    for _ in range(150):
      state, metrics = step(state, batch)
    density[lam] = float(pruner.metrics(state.params, state.pruner_state)["gate_density"])
  assert density[0.05] < 0.5 * density[0.0], density

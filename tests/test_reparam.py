"""Budget-aware pruning by weight reparametrization (paper 2) as a Pruner with its budget penalty."""

import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning_jax as pj
from pruning_jax import models, training


def _params(seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  return {
    "a": {"kernel": 0.02 * jax.random.normal(k[0], (30, 20)), "bias": jnp.zeros(20)},
    "b": {"kernel": 0.02 * jax.random.normal(k[1], (20, 5)), "bias": jnp.zeros(5)},
  }


def _h_numpy(w, t, n=4):
  """The paper's formula in float64, literally."""
  c2 = math.exp(-1.0)
  return (np.exp(-1.0 / ((t * np.asarray(w, np.float64)) ** n + 1.0)) - c2) / (1.0 - c2)


def test_forward_is_w_times_gate_and_biases_pass():
  p = _params()
  pruner = pj.methods.reparam(0.5, budget_weight=1.0)
  state = pruner.init(jax.random.key(0), p)
  state = state._replace(
    learned={"t": {**state.learned["t"], "b": {"kernel": jnp.float32(60.0), "bias": 0.0}}}
  )
  seen = jax.jit(lambda s: pruner.apply(p, s))(state)
  for layer, t in (("a", 100.0), ("b", 60.0)):
    w = np.asarray(p[layer]["kernel"])
    np.testing.assert_allclose(np.asarray(seen[layer]["kernel"]), w * _h_numpy(w, t), rtol=2e-5, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(seen[layer]["bias"]), np.asarray(p[layer]["bias"]))


@pytest.mark.parametrize("per_layer_t", [True, False])
def test_budget_penalty_gradient_equals_jax_grad_of_formula(per_layer_t):
  p, s, lam = _params(), 0.8, 3.0
  pruner = pj.methods.reparam(s, budget_weight=lam, per_layer_t=per_layer_t)
  state = pruner.init(jax.random.key(0), p)
  tree = {"params": p, "learned": state.learned}
  opt_state = pruner.penalty.init(tree)
  n_prunable = 30 * 20 + 20 * 5
  c_target = (1 - s) * n_prunable

  def cost(tr):
    t = tr["learned"]["t"]
    ta, tb = (t["a"]["kernel"], t["b"]["kernel"]) if per_layer_t else (t, t)
    return jnp.sum(pj.reparam_gate(tr["params"]["a"]["kernel"], ta)) + jnp.sum(
      pj.reparam_gate(tr["params"]["b"]["kernel"], tb)
    )

  c0 = float(cost(tree))
  np.testing.assert_allclose(float(opt_state.initial_cost), c0, rtol=1e-6)
  np.testing.assert_allclose(float(opt_state.target), c_target, rtol=1e-6)
  moved = jax.tree.map(lambda x: x * 1.2, tree)
  zeros = jax.tree.map(jnp.zeros_like, moved)
  updates, _ = jax.jit(pruner.penalty.update)(zeros, opt_state, moved)
  ref = jax.grad(lambda tr: lam * ((cost(tr) - c_target) / c0) ** 2)(moved)
  chex.assert_trees_all_close(updates, ref, rtol=1e-4, atol=1e-7)
  # t gets a gradient (the budget moves the gate too)
  assert any(float(jnp.abs(g)) > 0 for g in jax.tree.leaves(updates["learned"]))
  m = pruner.metrics(moved["params"], state._replace(learned=moved["learned"]))
  np.testing.assert_allclose(float(m["budget_cost"]), float(cost(moved)), rtol=1e-5)
  np.testing.assert_allclose(float(m["budget_ratio"]), float(cost(moved)) / c_target, rtol=1e-5)


@settings(max_examples=10)  # each example compiles afresh
@given(s=st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.97, 0.99]), seed=st.integers(0, 1000))
def test_effective_pruning_removes_exactly_the_target_by_gate_value(s, seed):
  p = _params(seed)
  pruner = pj.methods.reparam(s, budget_weight=1.0)
  state = pruner.init(jax.random.key(0), p)
  state = state._replace(
    learned={
      "t": {"a": {"kernel": jnp.float32(80.0), "bias": 0.0}, "b": {"kernel": jnp.float32(130.0), "bias": 0.0}}
    }
  )
  params, masks = jax.jit(pruner.finalize)(p, state)
  n = 30 * 20 + 20 * 5
  kept, total = pj.count_kept(masks)
  assert int(total) == n and int(kept) == n - round(s * n)
  h = {layer: _h_numpy(p[layer]["kernel"], t) for layer, t in (("a", 80.0), ("b", 130.0))}
  kept_h = np.concatenate([h[k][np.asarray(masks[k]["kernel"])] for k in h])
  removed_h = np.concatenate([h[k][~np.asarray(masks[k]["kernel"])] for k in h])
  if kept_h.size and removed_h.size:
    assert kept_h.min() >= removed_h.max() - 1e-6  # the smallest gates go
  for k, t in (("a", 80.0), ("b", 130.0)):
    w = np.asarray(p[k]["kernel"])
    expected = np.where(np.asarray(masks[k]["kernel"]), w * _h_numpy(w, t), 0.0)
    np.testing.assert_allclose(np.asarray(params[k]["kernel"]), expected, rtol=2e-5, atol=1e-9)


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="sparsity must be a removed fraction"):
    pj.methods.reparam(1.0, budget_weight=1.0)
  with pytest.raises(ValueError, match="t_init"):
    pj.methods.reparam(0.9, budget_weight=1.0, t_init=0.0)
  with pytest.raises(ValueError, match="n must be a positive integer"):
    pj.methods.reparam(0.9, budget_weight=1.0, n=2.5)
  with pytest.raises(ValueError, match="lambda"):
    pj.methods.reparam(0.9, budget_weight=-1.0)


def _fashion_mnist():
  from experiments import data as data_lib

  root = os.environ.get("TFDS_DATA_DIR", "")
  if not os.path.isdir(os.path.join(root, "fashion_mnist")):
    pytest.skip("Fashion-MNIST is not in $TFDS_DATA_DIR (the Makefile points it at ../shared/tfds)")
  ds = data_lib.load("fashion_mnist", val_size=5000, seed=0, train_subset=20_000)
  norm = lambda im: data_lib.normalize(jnp.asarray(im), ds.mean, ds.std)  # noqa: E731
  return norm(ds.train_image), jnp.asarray(ds.train_label), norm(ds.val_image), jnp.asarray(ds.val_label)


def test_mlp_on_fashion_mnist_meets_the_budget_and_prunes_exactly():
  """LeNet-300-100, 300 Adam steps at 90%: C reaches C_target within 2% and the hard prune
  (exactly 90% removed, no fine-tuning) costs under one point of validation accuracy."""
  x, y, xv, yv = _fashion_mnist()
  model = models.LeNet300100()
  pruner = pj.methods.reparam(0.9, budget_weight=1000.0)
  tx = training.optimizer(optax.adam(1e-3), optax.adam(1.0), pruner=pruner)
  state = training.init_train_state(jax.random.key(0), model.init(jax.random.key(1), x[:1]), pruner, tx)
  step = jax.jit(training.make_train_step(training.linen_apply(model), pruner, tx))
  for i in range(300):
    idx = jax.random.randint(jax.random.key(i), (128,), 0, x.shape[0])
    state, metrics = step(state, {"image": x[idx], "label": y[idx]})
  assert abs(float(metrics["budget_ratio"]) - 1.0) < 0.02
  params, masks = pruner.finalize(state.params, state.pruner_state)
  n = 784 * 300 + 300 * 100 + 100 * 10
  assert int(pj.count_kept(masks)[0]) == n - round(0.9 * n)

  def accuracy(p):
    return float(jnp.mean(jnp.argmax(model.apply({"params": p}, xv), -1) == yv))

  soft, hard = accuracy(pruner.apply(state.params, state.pruner_state)), accuracy(params)
  assert hard > 0.75 and abs(soft - hard) < 0.01


def test_study_config_reparam_has_no_fine_tuning_and_baselines_share_the_budget():
  from experiments import train
  from experiments.configs import reparam as cfg

  c = cfg.get_config("method=reparam,rate=0.97,lam=10")
  assert len(c.stages) == 1 and c.stages[0].pruner.name == "reparam"  # trained, then hard-pruned: no FT
  assert c.stages[0].pruner.sparsity == 0.97 and c.stages[0].pruner.budget_weight == 10.0
  dense, gmp = cfg.get_config("method=dense"), cfg.get_config("method=gmp,rate=0.97")
  assert c.stages[0].epochs == dense.stages[0].epochs == gmp.stages[0].epochs
  assert c.stages[0].optimizer == dense.stages[0].optimizer == gmp.stages[0].optimizer
  assert c.train_subset == dense.train_subset == gmp.train_subset and c.seed == dense.seed
  mp = cfg.get_config("method=mp,rate=0.97,runs=/r")
  assert mp.stages[0].epochs == 0 and mp.init_from == "/r/conv4_dense_cpu_seed0"
  for arg in cfg.grid("select_cpu") + [a for a in cfg.grid("cpu") if "method=reparam" not in a]:
    train.validate_config(cfg.get_config(arg))
  assert cfg.grid("cpu")[0] == "method=dense,model=conv4,budget=cpu"  # mp and mp_ft start from it
  assert all("model=vgg19,budget=gpu" in a for a in cfg.grid("gpu_vgg19") + cfg.grid("select_gpu_vgg19"))
  unselected = "no lambda selected yet for model=resnet18, budget=gpu.*select_gpu_resnet18"
  with pytest.raises(ValueError, match=unselected):
    cfg.get_config("method=reparam,model=resnet18,budget=gpu")
  with pytest.raises(ValueError, match=r"\[select_\]<budget>\[_<model>\]"):
    cfg.grid("tpu")
  with pytest.raises(ValueError, match="method='l1'"):
    cfg.get_config("method=l1")


def test_recorded_lambda_is_the_committed_selection_winner():
  import os

  from experiments.configs import reparam as cfg
  from experiments.report import load_summaries

  folder = os.path.join(os.path.dirname(__file__), "..", "experiments", "results", "reparam", "selection")
  selection = [s for s in load_summaries(folder) if s.get("study") == "reparam"]
  assert {cfg.budget_weight(s) for s in selection} == set(cfg.SELECTION_LAMBDAS)
  assert cfg.LAMBDA[("conv4", "cpu")] == cfg.selected_lambda(selection)
  assert cfg.get_config("method=reparam").stages[0].pruner.budget_weight == cfg.LAMBDA[("conv4", "cpu")]

"""Thresholds and masks on arrays sharded over 8 virtual CPU devices match the 1-device result."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  import pruning_jax as pj
  assert jax.device_count() == 8, jax.devices()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  k = jax.random.split(jax.random.key(0), 3)
  scores = {
    "a": jnp.round(jax.random.normal(k[0], (4096, 64)) * 8),  # ties
    "b": jnp.abs(jax.random.normal(k[1], (3, 3, 16, 64))),
    "bias": jnp.ones(64),
  }
  spec = {"a": P("data", None), "b": P(None, None, None, "data"), "bias": P()}
  sharded = jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), scores, spec)
  for scope, structure in [("global", "unstructured"), ("layer", "unstructured"), ("global", "channels")]:
    f = jax.jit(lambda s: pj.masks_from_scores(s, 0.83, scope=scope, structure=structure))
    ref = jax.device_get(f(scores))
    got = f(sharded)
    assert got["a"].sharding.num_devices == 8 or structure == "channels", got["a"].sharding
    assert pj.masks_equal(jax.device_get(got), ref), (scope, structure)
  print("OK")
  """
)


def eight_device_env() -> dict[str, str]:
  """The parent's environment (and its XLA_FLAGS) with 8 virtual CPU devices."""
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  return dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")


def test_masks_match_on_8_virtual_devices():
  env = eight_device_env()
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


TRAIN_SCRIPT = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np, optax
  from jax.sharding import Mesh
  import pruning_jax as pj
  from pruning_jax import models, training
  assert jax.device_count() == 8
  replicate, shard_batch = training.data_parallel(Mesh(np.array(jax.devices()), ("data",)))
  # small images and one block per stage: compile time dominates this test
  x = jax.random.normal(jax.random.key(0), (16, 8, 8, 3)); y = jnp.arange(16) % 10

  def both(model):
    pruner = pj.methods.magnitude_pruning(0.7)
    tx = training.optimizer(optax.sgd(0.1, momentum=0.9), pruner=pruner)
    init = jax.jit(lambda k: training.init_train_state(k, model.init(jax.random.key(2), x), pruner, tx))
    state = init(jax.random.key(1))  # eager init dispatches op by op: slow on 8 devices
    step = jax.jit(training.make_train_step(training.linen_apply(model), pruner, tx))
    ref, m_ref = step(state, {"image": x, "label": y})
    batch = shard_batch({"image": x, "label": y})
    assert batch["image"].sharding.num_devices == 8
    got, m_got = step(replicate(state), batch)
    assert abs(float(m_got["loss"]) - float(m_ref["loss"])) < 1e-5
    for a, b in zip(jax.tree.leaves(got.pruner_state), jax.tree.leaves(ref.pruner_state)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return state, ref, got

  # no BatchNorm: each update equals the 1-device one up to float reassociation of the sums
  state, ref, got = both(models.get_model("conv2", conv_widths=(4, 4), dense_widths=(8, 8)))
  leaves = jax.tree.leaves
  for a, b, s0 in zip(leaves(got.params), leaves(ref.params), leaves(state.params)):
    da, db = np.asarray(a) - np.asarray(s0), np.asarray(b) - np.asarray(s0)
    np.testing.assert_allclose(da, db, rtol=1e-3, atol=1e-4 * np.abs(db).max() + 1e-12)
  # BatchNorm: the batch statistics are global (a missing all-reduce would be off by O(1))
  state, ref, got = both(models.get_model("resnet20", stage_widths=(4, 8, 8), blocks_per_stage=(1, 1, 1)))
  for a, b in zip(jax.tree.leaves(got.model_state), jax.tree.leaves(ref.model_state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
  print("OK")
  """
)


def test_data_parallel_train_step_matches_one_device():
  env = eight_device_env()
  out = subprocess.run(
    [sys.executable, "-c", TRAIN_SCRIPT], env=env, capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]

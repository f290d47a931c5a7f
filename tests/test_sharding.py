"""Thresholds and masks on arrays sharded over 8 virtual CPU devices match the 1-device result."""

import os
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import pruning_jax as pj
from pruning_jax import training

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
  # what crosses the devices: the compiled program may all-reduce counts, and move at most a
  # strided sample (< 2**15 keys); it never gathers a score leaf
  def moved(compiled):
    return [c for c in pj.sharding.collectives(compiled) if c.op != "all-reduce"]

  for scope, structure in [("global", "unstructured"), ("layer", "unstructured"), ("global", "channels")]:
    f = jax.jit(lambda s: pj.masks_from_scores(s, 0.83, scope=scope, structure=structure))
    ref = jax.device_get(f(scores))
    got = f(sharded)
    assert got["a"].sharding == sharded["a"].sharding or structure == "channels", got["a"].sharding
    assert pj.masks_equal(jax.device_get(got), ref), (scope, structure)
    traffic = moved(f.lower(sharded).compile())
    assert all(c.op != "all-gather" and c.elements < 2**15 for c in traffic), (scope, structure, traffic)
  # a magnitude update on the sharded tree: the same, and the 1-device masks bit for bit
  pruner = pj.methods.magnitude_pruning(0.83)
  state = pruner.init(jax.random.key(1), scores)
  update = jax.jit(lambda p, s: pruner.update(p, s, pj.StepInfo(step=jnp.int32(0))))
  ref = jax.device_get(pruner.masks(scores, update(scores, state)))
  got = pruner.masks(sharded, update(sharded, state))
  assert pj.masks_equal(jax.device_get(got), ref)
  traffic = moved(update.lower(sharded, state).compile())
  assert all(c.op != "all-gather" and c.elements < 2**15 for c in traffic), traffic
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


FSDP_SCRIPT = textwrap.dedent(
  """
  import flax.linen as nn, jax, jax.numpy as jnp, numpy as np, optax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  import pruning_jax as pj
  from pruning_jax import training
  assert jax.device_count() == 8

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(8)(nn.relu(nn.Dense(64)(nn.relu(nn.Dense(32)(x)))))

  model = MLP()
  x = jax.random.normal(jax.random.key(0), (16, 16)); y = jnp.arange(16) % 8
  v = model.init(jax.random.key(1), x)
  batch = {"image": x, "label": y}

  def check(state, shardings, where):
    for (path, leaf), want in zip(jax.tree_util.tree_flatten_with_path(state)[0], jax.tree.leaves(shardings)):
      assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (where, pj.tree.path_str(path), leaf.sharding)

  pruners = {
    "magnitude": pj.methods.magnitude_pruning(0.7),
    "aslp": pj.methods.aslp(smart_rescale=True),
    "rigl": pj.methods.dynamic_sparse(0.7, grow="gradient", every_steps=1, end_step=10),
  }
  for mesh_shape, axes, tensor_axis in (((8,), ("data",), None), ((2, 4), ("data", "model"), "model")):
    mesh = Mesh(np.array(jax.devices()).reshape(mesh_shape), axes)
    param_shardings = pj.sharding.fsdp(v["params"], mesh, tensor_axis=tensor_axis, min_elements=64)
    kernel = param_shardings["Dense_1"]["kernel"].spec  # (32, 64)
    assert kernel == (P(None, "data") if tensor_axis is None else P("data", "model")), kernel
    for name, pruner in pruners.items():
      learned = {"learned": optax.sgd(1.0, momentum=0.9)}
      if name == "aslp":
        learned["rescale"] = optax.sgd(1e-3, momentum=0.9)
      tx = training.optimizer(optax.adam(1e-2), learned, pruner=pruner)
      run = training.sharded(
        jax.random.key(2), v, pruner, tx, training.linen_apply(model), param_shardings,
        NamedSharding(mesh, P("data")),
      )
      sh = run.shardings
      # every weight-shaped leaf of the pruner and optimizer state has its weight's sharding
      masks = pruner.masks(run.state.params, run.state.pruner_state)
      assert masks["Dense_1"]["kernel"].sharding.is_equivalent_to(param_shardings["Dense_1"]["kernel"], 2)
      moments = [  # of the kernel and of its mask variables (the per-layer rescale is a scalar)
        s
        for (p, s), leaf in zip(
          jax.tree_util.tree_flatten_with_path(sh.opt_state)[0], jax.tree.leaves(run.state.opt_state)
        )
        if pj.tree.path_str(p).endswith("Dense_1/kernel") and leaf.ndim == 2
      ]
      assert moments and all(s == param_shardings["Dense_1"]["kernel"] for s in moments), (name, moments)
      check(run.state, sh, (name, axes, "init"))
      state = run.state
      ref_step = jax.jit(training.make_train_step(training.linen_apply(model), pruner, tx))
      ref = jax.device_get(run.state)
      for t in range(2):  # the steps run the pruner's update (RigL regrows at every step here)
        state, metrics = run.step(state, batch)
        ref, m_ref = ref_step(ref, batch)
        check(state, sh, (name, axes, t))
        assert abs(float(metrics["loss"]) - float(m_ref["loss"])) < 1e-4, (name, t)
      got = jax.device_get(pruner.masks(state.params, state.pruner_state))
      assert pj.masks_equal(got, jax.device_get(pruner.masks(ref.params, ref.pruner_state))), name
    # the one-call API: masks placed like the sharded params
    params = pj.sharding.shard(v["params"], param_shardings)
    masks = pj.prune(params, 0.8, criterion="magnitude", scope="global")
    for (path, m), s in zip(jax.tree_util.tree_flatten_with_path(masks)[0], jax.tree.leaves(param_shardings)):
      if m.ndim:
        assert m.sharding.is_equivalent_to(s, m.ndim), (jax.tree_util.keystr(path), m.sharding, s)
    assert pj.masks_equal(jax.device_get(masks), pj.prune(jax.device_get(v["params"]), 0.8))
  print("OK")
  """
)


@pytest.mark.slow  # ~40 s of compiles on 2 cores; the rule itself is checked in-process below
def test_fully_sharded_training_derives_every_sharding_from_the_params():
  out = subprocess.run(
    [sys.executable, "-c", FSDP_SCRIPT], env=eight_device_env(), capture_output=True, text=True, timeout=900
  )
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_shardings_like_gives_weight_shaped_state_its_weights_sharding_and_replicates_the_rest():
  # one device, but the specs still say which leaves follow which weight
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  model = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(4)])
  v = model.init(jax.random.key(0), jnp.ones((1, 8)))
  param_shardings = pj.sharding.fsdp(v["params"], mesh, min_elements=64)  # the (16, 4) kernel too
  pruner = pj.methods.aslp(smart_rescale=True)
  learned = {"learned": optax.sgd(50.0, momentum=0.9), "rescale": optax.sgd(1e-3, momentum=0.9)}
  tx = training.optimizer(optax.adam(1e-3), learned, pruner=pruner)
  shapes = jax.eval_shape(lambda: training.init_train_state(jax.random.key(1), v, pruner, tx))
  got = pj.sharding.shardings_like(shapes, v["params"], param_shardings)
  specs = {
    pj.tree.path_str(p): (leaf.shape, s.spec)
    for (p, leaf), s in zip(
      jax.tree_util.tree_flatten_with_path(shapes)[0], jax.tree.leaves(got), strict=True
    )
  }
  kernel_spec = param_shardings["layers_0"]["kernel"].spec
  assert kernel_spec == P(None, "data")  # (8, 16): its largest divisible dimension
  for path, (shape, spec) in specs.items():
    weight_shaped = path.endswith("kernel") and len(shape) == 2
    want = param_shardings[path.split("/")[-2]]["kernel"].spec if weight_shaped else P()
    assert spec == want, (path, shape, spec)
  assert specs["pruner_state/learned/logits/layers_2/kernel"][1] == P("data")  # (16, 4)
  logit_moments = [
    p for p in specs if p.startswith("opt_state") and p.endswith("learned/logits/layers_0/kernel")
  ]
  assert logit_moments and all(specs[p][1] == kernel_spec for p in logit_moments)
  with pytest.raises(ValueError, match="one NamedSharding per param leaf"):
    pj.sharding.shardings_like(shapes, v["params"], {"layers_0": param_shardings["layers_0"]})
  with pytest.raises(ValueError, match=r"the mesh has axes \('data',\), not 'model'"):
    pj.sharding.fsdp(v["params"], mesh, tensor_axis="model")


def test_collectives_reads_ops_and_element_counts_from_hlo_text():
  text = """
  %ar = s32[] all-reduce(s32[] %x), channel_id=1
  %ag = u32[3,3,16,64]{2,1,0,3} all-gather(u32[3,3,16,8]{2,1,0,3} %k), dimensions={3}
  %t = (s32[], f32[64]{0}) all-reduce(s32[] %a, f32[64]{0} %b), channel_id=2
  %cp = pred[8]{0} collective-permute(pred[8]{0} %m), source_target_pairs={{0,1}}
  """
  got = [(c.op, c.elements) for c in pj.sharding.collectives(text)]
  assert got == [("all-reduce", 1), ("all-gather", 9216), ("all-reduce", 65), ("collective-permute", 8)]
  assert [c.op for c in pj.sharding.collectives(text, ops=("all-gather",))] == ["all-gather"]
  chex.assert_trees_all_equal(pj.sharding.collectives(jax.jit(jnp.sin).lower(jnp.ones(3)).compile()), [])

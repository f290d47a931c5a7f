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


def test_masks_match_on_8_virtual_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]

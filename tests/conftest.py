import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile far more than they run, and LLVM's optimisation passes dominate XLA:CPU compile
# time for the threefry / erf_inv code behind every random initializer (several times longer than
# at level 0). Set before jax initialises its backend.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402

# Many tests rebuild the same jitted steps (every train_and_evaluate call makes fresh closures with
# identical HLO), so compilation dominates the suite. A persistent cache scoped to this pytest
# process turns the repeats into cache hits without sharing anything between runs; only compiles over a
# second are worth the serialization.
_XLA_CACHE = tempfile.mkdtemp(prefix="pruning-jax-test-xla-cache-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

from hypothesis import HealthCheck, settings  # noqa: E402

# jit compilation dominates the first examples; deadlines would only measure the machine.
settings.register_profile("ci", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

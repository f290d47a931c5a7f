"""The sharded transformer example: its generated corpus, its 2:4 masks, and one short run."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pruning_jax as pj
from experiments import transformer_lm as lm


def test_the_corpus_entropy_is_the_chains_conditional_entropy_of_its_samples():
  train, val, entropy = lm.markov_corpus(0, 4096, 64)
  assert train.shape == (4096, lm.LENGTH + 1) and val.shape == (64, lm.LENGTH + 1)
  pairs = np.stack([train[:, :-1].ravel(), train[:, 1:].ravel()], 1)
  counts = np.zeros((lm.VOCAB, lm.VOCAB))
  np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1)
  assert np.all((counts > 0).sum(1) <= lm.SUCCESSORS)  # each token has at most 4 successors
  p = counts / counts.sum(1, keepdims=True).clip(1)
  empirical = -np.sum(counts * np.log(np.where(p > 0, p, 1))) / counts.sum()
  assert empirical == pytest.approx(entropy, abs=0.02)


@pytest.mark.slow  # make test time (~8 s of compiles); N:M itself: test_masks.test_nm_keeps_n_of_every_m
def test_the_2_4_variant_keeps_2_of_every_4_inputs_of_each_projection_and_mlp_kernel():
  model = lm.Decoder()
  v = model.init(jax.random.key(0), jnp.zeros((1, lm.LENGTH), jnp.int32))
  steps = 30
  pruner = lm.variants(steps, v["params"])["2:4 N:M"]
  state = pruner.init(jax.random.key(1), v["params"])
  state = jax.jit(pruner.update)(v["params"], state, pj.StepInfo(step=jnp.int32(steps // 3)))
  masks = pruner.masks(v["params"], state)
  pruned = [(pj.tree.path_str(p), m) for p, m in jax.tree_util.tree_flatten_with_path(masks)[0] if m.ndim]
  names = {path.split("/")[-2] for path, _ in pruned}
  assert names == {"query", "key", "value", "out", "mlp_in_0", "mlp_in_1", "mlp_out_0", "mlp_out_1"}
  for path, m in pruned:
    groups = np.asarray(m).reshape(m.shape[0] // 4, 4, -1)
    assert np.all(groups.sum(1) == 2), path


@pytest.mark.slow  # 8 virtual devices in a subprocess; compile-bound
def test_a_short_sharded_run_writes_its_summary(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.transformer_lm",
      "--out",
      str(tmp_path),
      "--steps",
      "6",
      "--log-every",
      "3",
    ],
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  s = json.loads((tmp_path / "summary.json").read_text())
  assert [r["variant"] for r in s["rows"]] == ["dense", "2:4 N:M", "global 50%"]
  assert [r["sparsity_of_pruned_kernels"] for r in s["rows"]] == [0.0, 0.5, 0.5]
  assert all(r["mesh"] == {"data": 2, "model": 4} for r in s["rows"])
  assert (tmp_path / "RESULTS.md").exists() and (tmp_path / "loss.png").exists()

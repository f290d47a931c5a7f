"""A small decoder-only transformer, pruned while fully sharded over 8 virtual CPU devices.

    python -m experiments.transformer_lm --out experiments/results/transformer_lm

The corpus is generated, never downloaded: sequences of a seeded first-order Markov chain over
64 tokens, each token with 4 possible successors (Dirichlet(1) probabilities), so the best
achievable next-token loss is the chain's conditional entropy, computed exactly and reported
beside the curves. The model: token and position embeddings, 2 pre-LayerNorm blocks of causal
4-head attention and a 256-wide GELU MLP, d_model 64.

Variants, trained by the same recipe (AdamW 3e-3, batch 32 x 64 tokens, one seed): dense; 2:4
N:M magnitude masks (groups of 4 along each kernel's input axis) on every attention projection
(query, key, value, out) and MLP kernel, applied at a third of the run; and unstructured global
magnitude pruning of the same kernels to the same 50%, at the same step. Every run is fully
sharded over a 2 x 4 mesh (FSDP over ``data`` x tensor parallelism over ``model``):
``pruning_jax.training.sharded`` derives every sharding of the masks and optimizer state from
the params'. The dense step's time per example on the 8 virtual devices is reported against a
1-device mesh in the same process (virtual devices share 2 cores: reported, not a target).
Writes ``summary.json``, ``loss.png`` and ``RESULTS.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import pruning_jax as pj
from pruning_jax import training

DEVICES = 8

VOCAB, LENGTH, SUCCESSORS = 64, 64, 4
PRUNED = r"(attn_\d+/(query|key|value|out)|mlp_(in|out)_\d+)/kernel"


class Decoder(nn.Module):
  """Pre-LayerNorm decoder-only transformer with learned positions."""

  vocab: int = VOCAB
  d: int = 64
  heads: int = 4
  layers: int = 2
  mlp: int = 256
  length: int = LENGTH

  @nn.compact
  def __call__(self, tokens):
    pos = self.param("pos", nn.initializers.normal(0.02), (self.length, self.d))
    x = nn.Embed(self.vocab, self.d)(tokens) + pos[: tokens.shape[1]]
    causal = nn.make_causal_mask(tokens)
    for i in range(self.layers):
      h = nn.LayerNorm()(x)
      x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, name=f"attn_{i}")(h, h, mask=causal)
      h = nn.LayerNorm()(x)
      x = x + nn.Dense(self.d, name=f"mlp_out_{i}")(nn.gelu(nn.Dense(self.mlp, name=f"mlp_in_{i}")(h)))
    return nn.Dense(self.vocab, name="head")(nn.LayerNorm()(x))


def markov_corpus(seed: int, n_train: int, n_val: int):
  """Token sequences of length LENGTH + 1 and the chain's conditional entropy (nats)."""
  rng = np.random.default_rng(seed)
  trans = np.zeros((VOCAB, VOCAB))
  for a in range(VOCAB):
    nxt = rng.choice(VOCAB, SUCCESSORS, replace=False)
    trans[a, nxt] = rng.dirichlet(np.ones(SUCCESSORS))
  # the stationary distribution, by power iteration from uniform
  pi = np.full(VOCAB, 1.0 / VOCAB)
  for _ in range(2000):
    pi = pi @ trans
  rows = -np.sum(np.where(trans > 0, trans * np.log(np.where(trans > 0, trans, 1.0)), 0.0), axis=1)
  entropy = float(pi @ rows)
  n = n_train + n_val
  seqs = np.zeros((n, LENGTH + 1), np.int32)
  seqs[:, 0] = rng.choice(VOCAB, n, p=pi / pi.sum())
  cum = np.cumsum(trans, axis=1)
  for t in range(1, LENGTH + 1):
    u = rng.random(n)
    seqs[:, t] = np.minimum((u[:, None] > cum[seqs[:, t - 1]]).sum(1), VOCAB - 1)
  return seqs[:n_train], seqs[n_train:], entropy


def language_model() -> training.Task:
  """Next-token cross-entropy, averaged over each sequence's positions."""

  def per_example(logits, batch):
    targets = batch["tokens"][:, 1:]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return {"loss": ce.mean(-1), "accuracy": (jnp.argmax(logits, -1) == targets).mean(-1)}

  return training.Task(inputs=lambda batch: batch["tokens"][:, :-1], per_example=per_example)


def variants(steps: int, params) -> dict[str, pj.Pruner]:
  selection = pj.select(params, PRUNED)
  at = steps // 3
  return {
    "dense": pj.methods.dense(),
    "2:4 N:M": pj.methods.magnitude_pruning(
      pj.schedules.one_shot(0.5, at),
      final_sparsity=0.5,
      structure=pj.structures.nm(2, 4, axis=0),
      distribution="uniform",
      selection=selection,
    ),
    "global 50%": pj.methods.magnitude_pruning(pj.schedules.one_shot(0.5, at), selection=selection),
  }


def run(name, pruner, model, v, mesh, train, val, steps, batch_size, log_every, seed):
  apply_fn = training.linen_apply(model)
  task = language_model()
  tx = training.optimizer(optax.adamw(3e-3, weight_decay=0.01), pruner=pruner)
  param_shardings = pj.sharding.fsdp(
    v["params"], mesh, tensor_axis="model" if "model" in mesh.shape else None, min_elements=1024
  )
  data = NamedSharding(mesh, P("data"))
  job = training.sharded(jax.random.key(seed), v, pruner, tx, apply_fn, param_shardings, data, task=task)
  evaluate = jax.jit(
    lambda st, tokens: jnp.mean(
      task.per_example(
        apply_fn(pruner.finalize(st.params, st.pruner_state)[0], st.model_state, tokens[:, :-1], train=False)[
          0
        ],
        {"tokens": tokens},
      )["loss"]
    )
  )
  order = np.random.default_rng(seed + 1)
  state, curve, times = job.state, [], []
  for t in range(steps):
    idx = order.integers(0, len(train), batch_size)
    batch = jax.device_put({"tokens": jnp.asarray(train[idx])}, data)
    t0 = time.perf_counter()
    state, metrics = job.step(state, batch)
    loss = float(metrics["loss"])  # blocks: the step's time includes its transfer back
    times.append(time.perf_counter() - t0)
    if (t + 1) % log_every == 0 or t + 1 == steps:
      curve.append({"step": t + 1, "train_loss": loss, "val_loss": float(evaluate(state, jnp.asarray(val)))})
  masks = pruner.masks(state.params, state.pruner_state)
  kept, total = pj.count_kept(jax.device_get(masks), params=jax.device_get(state.params))
  return state, {
    "variant": name,
    "final_val_loss": curve[-1]["val_loss"],
    "sparsity_of_pruned_kernels": 1.0 - int(kept) / int(total),
    "curve": curve,
    "step_s_median": statistics.median(times[steps // 2 :]),
    "mesh": dict(mesh.shape),
  }


def plot(rows, entropy, path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.2))
  for r in rows:
    ax.plot([c["step"] for c in r["curve"]], [c["val_loss"] for c in r["curve"]], label=r["variant"])
  ax.axhline(entropy, color="k", ls=":", label=f"the chain's entropy ({entropy:.3f})")
  ax.set_xlabel("step")
  ax.set_ylabel("validation loss (nats per token)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def results_md(summary) -> str:
  lines = [
    "# A decoder-only transformer pruned while fully sharded (8 virtual CPU devices)",
    "",
    "Generated by `python -m experiments.transformer_lm --out experiments/results/transformer_lm` (module",
    "docstring: corpus, model, recipe). One seed; "
    f"{summary['steps']} steps of {summary['batch_size']} sequences of {LENGTH} tokens; pruning at step "
    f"{summary['steps'] // 3}; device {summary['device']}.",
    "",
    f"The best achievable loss is the chain's conditional entropy, {summary['entropy']:.4f} nats per token.",
    "",
    "| variant | mesh | sparsity of the pruned kernels | final validation loss | above the entropy |",
    "| --- | --- | --- | --- | --- |",
  ]
  for r in summary["rows"]:
    mesh = " x ".join(f"{k} {v}" for k, v in r["mesh"].items())
    lines.append(
      f"| {r['variant']} | {mesh} | {r['sparsity_of_pruned_kernels']:.4f} | {r['final_val_loss']:.4f} "
      f"| {r['final_val_loss'] - summary['entropy']:+.4f} |"
    )
  t = summary["timing"]
  lines += [
    "",
    "![validation loss](loss.png)",
    "",
    "Dense step time per example, median over the second half of the run: "
    f"{t['sharded_s_per_example']:.2e} s on the 2 x 4 mesh",
    f"against {t['one_device_s_per_example']:.2e} s on one device ({t['ratio']:.2f}x; the 8",
    "virtual devices share this machine's 2 cores, so this measures the partitioned program's overhead, not",
    "a speed-up).",
    "",
  ]
  return "\n".join(lines)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", required=True)
  ap.add_argument("--steps", type=int, default=900)
  ap.add_argument("--batch-size", type=int, default=32)
  ap.add_argument("--log-every", type=int, default=50)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # read when jax creates its CPU backend, i.e. at the first device query below
    flag = f"--xla_force_host_platform_device_count={DEVICES}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
  if jax.device_count() < DEVICES:
    raise SystemExit(
      f"transformer_lm: needs {DEVICES} devices, found {jax.device_count()} (XLA_FLAGS set too late?)."
    )
  train, val, entropy = markov_corpus(args.seed, 8192, 512)
  model = Decoder()
  v = model.init(jax.random.key(args.seed), jnp.asarray(train[:1, :-1]))
  mesh = Mesh(np.array(jax.devices()[:DEVICES]).reshape(2, 4), ("data", "model"))
  rows = []
  for name, pruner in variants(args.steps, v["params"]).items():
    _, row = run(
      name, pruner, model, v, mesh, train, val, args.steps, args.batch_size, args.log_every, args.seed
    )
    rows.append(row)
    loss, sparsity = row["final_val_loss"], row["sparsity_of_pruned_kernels"]
    print(f"{name}: val loss {loss:.4f} (entropy {entropy:.4f}), sparsity {sparsity:.4f}")
  one = Mesh(np.array(jax.devices()[:1]), ("data",))
  timing_steps = max(40, args.steps // 10)
  _, single = run(
    "dense",
    pj.methods.dense(),
    model,
    v,
    one,
    train,
    val,
    timing_steps,
    args.batch_size,
    timing_steps,
    args.seed,
  )
  sharded_t = rows[0]["step_s_median"] / args.batch_size
  single_t = single["step_s_median"] / args.batch_size
  summary = {
    "study": "transformer_lm",
    "device": jax.devices()[0].device_kind,
    "devices": DEVICES,
    "steps": args.steps,
    "batch_size": args.batch_size,
    "seed": args.seed,
    "entropy": entropy,
    "rows": rows,
    "timing": {
      "sharded_s_per_example": sharded_t,
      "one_device_s_per_example": single_t,
      "ratio": sharded_t / single_t,
      "one_device_steps": timing_steps,
    },
  }
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  plot(rows, entropy, os.path.join(args.out, "loss.png"))
  with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
    f.write(results_md(summary))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

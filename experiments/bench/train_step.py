"""Train-step time of Conv4 on CIFAR-shaped batches of 128, per pruning variant, as ratios to the
dense step measured side by side in one process (variants interleaved round by round; the
median of the rounds is reported).

Variants: dense; fixed mask (masked forward + keep_masked); hard-threshold STE; top-k STE
(edge-popup, per layer); ASLP sampling; magnitude masks recomputed every 10 steps (amortized
over the 10). Mask-learning variants freeze the weights and train the mask variables, as the
methods do. Usage: ``python -m experiments.bench.train_step [--rounds 3 --steps 10]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import optax

import pruning_jax as pj
from pruning_jax import models, training


def variants():
  sgd = optax.sgd(0.01, momentum=0.9)
  frozen = optax.set_to_zero()
  masks_sgd = optax.sgd(50.0, momentum=0.9)
  return {
    "dense": (pj.methods.dense(), sgd, None),
    "fixed_mask": (pj.methods.magnitude_pruning(0.9), sgd, None),
    "hard_threshold_ste": (pj.methods.straight_through_mask(), frozen, masks_sgd),
    "topk_ste": (
      pj.methods.learned_mask(
        lambda k, m: pj.topk_ste(m, 0.5), init=lambda k, w: jax.random.uniform(k, w.shape)
      ),
      frozen,
      masks_sgd,
    ),
    "aslp": (pj.methods.learned_mask(pj.aslp_sample), frozen, masks_sgd),
    "magnitude_every_10": (
      pj.methods.magnitude_pruning(pj.schedules.polynomial(0.9, 0, 10_000, frequency=10), final_sparsity=0.9),
      sgd,
      None,
    ),
  }


def interleaved_times(steps, batch, rounds: int, n: int) -> dict[str, list[float]]:
  """Seconds per step of each ``name -> (jitted step, state)``, one list entry per round.

  Every step is compiled (and run once) first; then the variants take turns, ``n`` steps each
  per round, so slow phases of a shared machine hit all of them alike.
  """
  runs = {}
  for name, (step, state) in steps.items():
    state, _ = step(state, batch)  # compile + first masks
    jax.block_until_ready(state)
    runs[name] = [step, state, []]
  for _ in range(rounds):
    for run in runs.values():
      step, state, times = run
      t = time.perf_counter()
      for _ in range(n):
        state, metrics = step(state, batch)
      jax.block_until_ready(metrics)
      times.append((time.perf_counter() - t) / n)
      run[1] = state
  return {name: run[2] for name, run in runs.items()}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--json", help="also write the results to this file")
  args = ap.parse_args(argv)
  model = models.conv4()
  apply_fn = training.linen_apply(model)
  x = jax.random.normal(jax.random.key(0), (128, 32, 32, 3))
  batch = {"image": x, "label": jax.random.randint(jax.random.key(1), (128,), 0, 10)}
  init_vars = model.init(jax.random.key(2), x[:1])
  steps = {}
  for name, (pruner, wtx, vtx) in variants().items():
    tx = training.optimizer(wtx, vtx, pruner=pruner)
    state = training.init_train_state(jax.random.key(3), init_vars, pruner, tx)
    steps[name] = (jax.jit(training.make_train_step(apply_fn, pruner, tx)), state)
  runs = interleaved_times(steps, batch, args.rounds, args.steps)
  base = statistics.median(runs["dense"])
  device = jax.devices()[0].device_kind
  print(f"device: {device}; Conv4, batch 128; median of {args.rounds} rounds x {args.steps} steps")
  print(f"{'variant':<22} {'s/step':>8} {'vs dense':>9}")
  rows = {}
  for name, times in runs.items():
    med = statistics.median(times)
    rows[name] = {"s_per_step": med, "ratio_to_dense": med / base}
    print(f"{name:<22} {med:>8.3f} {med / base:>8.3f}x")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        {"device": jax.devices()[0].device_kind, "rounds": args.rounds, "steps": args.steps, "rows": rows},
        f,
        indent=1,
      )


if __name__ == "__main__":
  main()

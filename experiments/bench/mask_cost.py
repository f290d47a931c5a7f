"""The cost of computing a pruning-at-initialization mask, as seconds and as a multiple of one
training step of the same network and batch size.

Each method's ``init`` is jitted (compiled once first, then timed), and the timings take turns
with a jitted dense training step, so a slow phase of the shared machine hits all alike; the
figure is the median over rounds.

    python -m experiments.bench.mask_cost --json experiments/results/init_lottery/mask_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import jax
import numpy as np
import optax

import pruning_jax as pj
from experiments.bench.structured_latency import interleaved_calls
from pruning_jax import models, training

SHAPES = {"lenet300100": ((28, 28, 1), 60), "resnet20": ((32, 32, 3), 128)}
METHODS = {
  "snip": lambda: pj.methods.snip(0.98),
  "grasp": lambda: pj.methods.grasp(0.98),
  "synflow (100 rounds)": lambda: pj.methods.synflow(0.98),
  "random": lambda: pj.methods.random_pruning(0.98),
  "magnitude": lambda: pj.methods.magnitude_pruning(0.98),
}


def rows_for(name: str, rounds: int) -> list[dict]:
  shape, batch = SHAPES[name]
  model = models.get_model(name, num_classes=10)
  x = np.asarray(jax.random.normal(jax.random.key(1), (batch, *shape)))
  batch_data = {"image": x, "label": np.arange(batch) % 10}
  v = jax.jit(model.init)(jax.random.key(0), x[:1])
  apply_fn = training.linen_apply(model)
  state = {k: a for k, a in v.items() if k != "params"}
  ctx = training.init_context(apply_fn, state, batches=[batch_data])
  dense = pj.methods.dense()
  tx = training.optimizer(optax.sgd(0.1, momentum=0.9), pruner=dense)
  train_state = training.init_train_state(jax.random.key(2), v, dense, tx, ctx)
  step = jax.jit(training.make_train_step(apply_fn, dense, tx))
  fns = {"train step": (step, (train_state, batch_data))}
  for method, build in METHODS.items():
    pruner = build()
    fns[method] = (
      jax.jit(lambda p, k, pruner=pruner: pruner.init(k, p, ctx)),
      (v["params"], jax.random.key(3)),
    )
  times = interleaved_calls(fns, rounds, 1)
  base = statistics.median(times["train step"])
  out = []
  for method in METHODS:
    med = statistics.median(times[method])
    out.append({"model": name, "method": method, "batch": batch, "s": med, "steps": med / base})
    print(f"{name:<12} {method:<22} {med:8.4f} s = {med / base:7.1f} train steps", flush=True)
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--models", default="lenet300100,resnet20")
  ap.add_argument("--json", help="also write the results to this file")
  args = ap.parse_args(argv)
  rows = [r for name in args.models.split(",") for r in rows_for(name, args.rounds)]
  if args.json:
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
      json.dump({"device": jax.devices()[0].device_kind, "rounds": args.rounds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()

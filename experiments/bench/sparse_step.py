"""Amortized train-step time of dynamic sparse training (RigL, SET at delta_T = 100) and of
hard-concrete L0 gates, as ratios to the dense step measured side by side in one process.

Each variant trains by the runner's step (``training.train_step_for``: the program without the
pruner's update where ``update_due`` says it changes nothing, the one with it, whose drop-and-grow
runs under ``lax.cond``, on one step in delta_T). Each round times ``--steps`` ordinary steps and
``--steps`` update steps (the same state with its step counter at an update point) of every
variant in turn;
the amortized step is ``((delta_T - 1) t_ordinary + t_update) / delta_T`` and the median over
rounds is reported. Issue targets: <= 1.02x dense for RigL and SET, <= 1.08x for L0.

Models: SET's Fashion-MNIST MLP (784-1000-1000-1000-10, batch 128) and ResNet-20 on CIFAR-shaped
batches of 128. Usage: ``python -m experiments.bench.sparse_step [--models mlp,resnet20]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import pruning_jax as pj
from pruning_jax import models, training

DELTA_T = 100
SPARSITY = 0.9
MODELS = {
  "mlp": (lambda: models.LeNet300100(widths=(1000, 1000, 1000)), (28, 28, 1)),
  "resnet20": (models.resnet20, (32, 32, 3)),
}


def variants(total_steps: int):
  sgd = optax.sgd(0.01, momentum=0.9)
  dst = {"end_step": total_steps, "every_steps": DELTA_T}
  return {
    "dense": (pj.methods.dense(), sgd, None),
    "static": (pj.methods.random_pruning(SPARSITY, distribution="erk"), sgd, None),
    "rigl": (pj.methods.rigl(SPARSITY, **dst), sgd, None),
    "set": (pj.methods.set_training(SPARSITY, **dst), sgd, None),
    "l0": (pj.methods.l0_gates(1e-5), sgd, optax.adam(1e-2)),
    "l0_channel": (pj.methods.l0_gates(1e-5, structure="channel"), sgd, optax.adam(1e-2)),
  }


def _time(step, state, batch, n: int) -> float:
  at = int(state.step)
  t = time.perf_counter()
  for _ in range(n):
    out, metrics = step(state, batch, at)  # the same state each time: the same program each time
  jax.block_until_ready(metrics)
  return (time.perf_counter() - t) / n


def measure(model_name: str, rounds: int, n: int) -> dict:
  make, shape = MODELS[model_name]
  model = make()
  apply_fn = training.linen_apply(model)
  x = jax.random.normal(jax.random.key(0), (128, *shape))
  batch = {"image": x, "label": jax.random.randint(jax.random.key(1), (128,), 0, 10)}
  init_vars = model.init(jax.random.key(2), x[:1])
  context = training.init_context(
    apply_fn, {k: v for k, v in init_vars.items() if k != "params"}, batches=[batch]
  )
  runs = {}
  for name, (pruner, wtx, vtx) in variants(10 * DELTA_T).items():
    tx = training.optimizer(wtx, vtx, pruner=pruner)
    state = training.init_train_state(jax.random.key(3), init_vars, pruner, tx, context)
    # the runner's step: without the update where update_due says it changes nothing
    step = training.train_step_for(apply_fn, pruner, tx)
    ordinary = state._replace(step=jnp.int32(DELTA_T // 2))  # (t + 1) % delta_T != 0
    update = state._replace(step=jnp.int32(DELTA_T - 1))  # an update step
    for s in (ordinary, update):
      jax.block_until_ready(step(s, batch, int(s.step)))  # compile both programs
    runs[name] = (step, ordinary, update, [], [])
  for _ in range(rounds):
    for step, ordinary, update, t_ord, t_up in runs.values():
      t_ord.append(_time(step, ordinary, batch, n))
      t_up.append(_time(step, update, batch, n))
  rows = {}
  for name, (_, _, _, t_ord, t_up) in runs.items():
    amortized = [((DELTA_T - 1) * a + b) / DELTA_T for a, b in zip(t_ord, t_up, strict=True)]
    rows[name] = {
      "s_ordinary": statistics.median(t_ord),
      "s_update": statistics.median(t_up),
      "s_amortized": statistics.median(amortized),
    }
  base = rows["dense"]["s_amortized"]
  for r in rows.values():
    r["ratio_to_dense"] = r["s_amortized"] / base
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--models", default="mlp,resnet20")
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--json", help="also write the results to this file")
  args = ap.parse_args(argv)
  device = jax.devices()[0].device_kind
  out = {"device": device, "rounds": args.rounds, "steps": args.steps, "delta_t": DELTA_T, "models": {}}
  for name in args.models.split(","):
    rows = measure(name, args.rounds, args.steps)
    out["models"][name] = rows
    print(f"device: {device}; {name}, batch 128, sparsity {SPARSITY}; median of {args.rounds} rounds")
    print(f"{'variant':<12} {'ordinary':>9} {'update':>9} {'amortized':>10} {'vs dense':>9}")
    for v, r in rows.items():
      print(
        f"{v:<12} {r['s_ordinary']:>9.4f} {r['s_update']:>9.4f} {r['s_amortized']:>10.4f} "
        f"{r['ratio_to_dense']:>8.3f}x"
      )
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()

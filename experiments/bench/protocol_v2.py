"""Train-step time of protocol v2 against the protocol it replaced, in one process.

The train step of the commit before protocol v2 (``--commit``, default ed34608) and today's run
interleaved round by round on the same Conv4 batch, so machine noise hits both alike; the old
package is extracted from git into a temporary folder under another name (``variants`` builds
its pruners with that commit's names, e.g. ``methods.magnitude``). Reported per variant:
seconds per step of each, their ratio, and each one's ratio to its own dense step (the figure
``experiments/results/bench_train_step`` tracks). Timings on a shared CPU move by several percent
from run to run, so each step's compiled program is also compared without running it: XLA's
cost analysis (FLOPs, bytes accessed) and its counts of fusions, conditionals and while loops,
which are the same on every run. ``--rounds 0`` reports those only. Usage:

    python -m experiments.bench.protocol_v2 [--rounds 5 --steps 6] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

import jax
import optax

import pruning_jax as pj
from experiments.bench.train_step import interleaved_times
from pruning_jax import models, training

OLD = "pruning_jax_before_v2"
ORDER = ("dense", "fixed_mask", "hard_threshold_ste", "aslp", "magnitude_every_10")


def load_old(commit: str, folder: str):
  """The package as it was at ``commit``, importable as :data:`OLD`."""
  root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
  archive = subprocess.run(
    ["git", "-C", root.stdout.strip(), "archive", commit, "pruning_jax"], capture_output=True, check=True
  )
  subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
  os.rename(os.path.join(folder, "pruning_jax"), os.path.join(folder, OLD))
  for path in pathlib.Path(folder, OLD).rglob("*.py"):
    path.write_text(path.read_text().replace("pruning_jax", OLD))
  sys.path.insert(0, folder)
  return importlib.import_module(OLD), importlib.import_module(f"{OLD}.training")


def variants(po):
  """name -> (today's pruner, the old commit's pruner, weight optimizer, mask optimizer)."""
  sgd, frozen, masks_sgd = optax.sgd(0.01, momentum=0.9), optax.set_to_zero(), optax.sgd(50.0, momentum=0.9)

  def sched(lib):
    return lib.schedules.polynomial(0.9, 0, 10_000, frequency=10)

  return {
    "dense": (pj.methods.dense(), po.methods.dense(), sgd, None),
    "fixed_mask": (pj.methods.magnitude_pruning(0.9), po.methods.magnitude(0.9), sgd, None),
    "hard_threshold_ste": (
      pj.methods.straight_through_mask(),
      po.methods.straight_through(),
      frozen,
      masks_sgd,
    ),
    "aslp": (
      pj.methods.learned_mask(pj.aslp_sample),
      po.methods.learned_mask(po.aslp_sample),
      frozen,
      masks_sgd,
    ),
    "magnitude_every_10": (
      pj.methods.magnitude_pruning(sched(pj), final_sparsity=0.9),
      po.methods.magnitude(sched(po), final_sparsity=0.9),
      sgd,
      None,
    ),
  }


def compiled_cost(step, state, batch) -> dict[str, float]:
  """XLA's cost analysis of the compiled step and its count of fusions, conditionals, loops."""
  compiled = step.lower(state, batch).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  hlo = compiled.as_text()
  return {
    "gflops": cost.get("flops", 0.0) / 1e9,
    "mbytes_accessed": cost.get("bytes accessed", 0.0) / 1e6,
    "fusions": hlo.count(" fusion("),
    "conditionals": hlo.count(" conditional("),
    "while_loops": hlo.count(" while("),
    "hlo_instructions": sum(1 for line in hlo.splitlines() if " = " in line),
  }


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--commit", default="ed34608")
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--json")
  args = ap.parse_args(argv)
  with tempfile.TemporaryDirectory() as folder:
    po, old_training = load_old(args.commit, folder)
    model = models.conv4()
    x = jax.random.normal(jax.random.key(0), (128, 32, 32, 3))
    batch = {"image": x, "label": jax.random.randint(jax.random.key(1), (128,), 0, 10)}
    init_vars = model.init(jax.random.key(2), x[:1])
    steps = {}
    for name, (new_p, old_p, wtx, vtx) in variants(po).items():
      for tag, tr, pruner in (("new", training, new_p), ("old", old_training, old_p)):
        tx = tr.optimizer(wtx, vtx, pruner=pruner)
        state = tr.init_train_state(jax.random.key(3), init_vars, pruner, tx)
        steps[(name, tag)] = (jax.jit(tr.make_train_step(tr.linen_apply(model), pruner, tx)), state)
    costs = {k: compiled_cost(step, state, batch) for k, (step, state) in steps.items()}
    runs = interleaved_times(steps, batch, args.rounds, args.steps) if args.rounds else {}
  rows = {name: {f"{tag}_compiled": costs[(name, tag)] for tag in ("new", "old")} for name in ORDER}
  print(f"device: {jax.devices()[0].device_kind}; Conv4, batch 128; compiled step, new | old")
  for name in ORDER:
    n, o = costs[(name, "new")], costs[(name, "old")]
    print(
      f"{name:<20} GFLOP {n['gflops']:.3f} | {o['gflops']:.3f}  MB {n['mbytes_accessed']:.1f} | "
      f"{o['mbytes_accessed']:.1f}  fusions {n['fusions']} | {o['fusions']}  conditionals "
      f"{n['conditionals']} | {o['conditionals']}"
    )
  if runs:
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"timed: median of {args.rounds} rounds x {args.steps} steps")
    print(f"{'variant':<20} {'new s':>7} {'old s':>7} {'new/old':>8} {'new/dense':>10} {'old/dense':>10}")
    for name in ORDER:
      n, o = med[(name, "new")], med[(name, "old")]
      rows[name].update(
        new_s_per_step=n,
        old_s_per_step=o,
        new_over_old=n / o,
        new_ratio_to_dense=n / med[("dense", "new")],
        old_ratio_to_dense=o / med[("dense", "old")],
      )
      r = rows[name]
      print(
        f"{name:<20} {n:7.3f} {o:7.3f} {r['new_over_old']:8.3f} {r['new_ratio_to_dense']:10.3f} "
        f"{r['old_ratio_to_dense']:10.3f}"
      )
  if args.json:
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
      out = {"device": jax.devices()[0].device_kind, "old_commit": args.commit, "rounds": args.rounds}
      json.dump({**out, "steps": args.steps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()

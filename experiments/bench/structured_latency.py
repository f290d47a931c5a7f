"""Inference latency of physically shrunk networks against the dense and the masked dense one.

For VGG-16 and ResNet-56 (CIFAR-10 shapes) at MACs reductions of 30/50/70%, the structure is
found by :func:`pruning_jax.structured.keep_for_macs` (L2 filter norms of a random init, each
group's scores normalised by their maximum, one global ranking: the structure, not the
accuracy, is what is timed; reached within 0.5% relative, 2% with widths rounded to multiples
of 8, which XLA's CPU convolutions need to run fast), shrunk with
:func:`pruning_jax.surgery.shrink_module`, and the three jitted forward passes (dense, masked
dense, shrunk) take turns, ``n`` calls each per round, so a slow phase of the shared machine
hits all alike. The figure of merit is the speedup over dense divided by the MACs ratio (dense
/ shrunk); the target on CPU is at least 0.8.

    python -m experiments.bench.structured_latency --json experiments/results/bench_structured/summary.json

``--from-results FOLDER`` times instead the structures a study's runs reached (each summary's
``model_kwargs``) against that study's dense network, e.g. the Pruning from Scratch study:

    python -m experiments.bench.structured_latency --from-results experiments/results/pfs \
      --json experiments/results/pfs/latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np

import pruning_jax as pj
from pruning_jax import models, structured, surgery

TARGET = 0.8  # speedup / MACs ratio
# one channel of a ResNet's residual stream feeds ~20 convs (up to ~0.5% of the MACs), so a
# global ranking cannot always stop within 0.1%, nor widths rounded to multiples of 8 within
# 0.5%; the achieved reduction is reported exactly
RTOL = {None: 5e-3, 8: 2e-2}


def interleaved_calls(fns: dict, rounds: int, n: int) -> dict[str, list[float]]:
  """Seconds per call of each ``name -> (jitted fn, args)``, one entry per round (compiled and
  run once first)."""
  for fn, args in fns.values():
    jax.block_until_ready(fn(*args))
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(rounds):
    for name, (fn, args) in fns.items():
      t = time.perf_counter()
      for _ in range(n):
        out = fn(*args)
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - t) / n)
  return times


def structures(model, variables, x1, reductions, round_to):
  """``reduction -> (MacsTarget, small module, small variables, masked variables)``."""
  fn = lambda v, x: model.apply(v, x)  # noqa: E731
  groups = surgery.channel_groups(fn, variables, x1)
  scores = structured.group_scores(variables, groups, "l2")
  reference = pj.count_flops(fn, variables, x1).macs
  out = {}
  for r in reductions:
    t = structured.keep_for_macs(
      fn,
      variables,
      groups,
      scores,
      r,
      x1,
      reference_macs=reference,
      normalize="max",
      round_to=round_to,
      rtol=RTOL[round_to],
    )
    small, small_vars = surgery.shrink_module(model, variables, groups, t.keep, x1)
    masked = pj.apply_masks(variables, surgery.channel_masks(variables, groups, t.keep))
    out[r] = (t, small, small_vars, masked)
  return reference, out


WIDTH_PROBE = ((16, 32, 64), (15, 30, 60), (12, 24, 48), (11, 22, 45), (8, 16, 32))


def width_probe(rounds: int, batch: int = 128) -> list[dict]:
  """Dense ResNet-56 at uniform stage widths: time per forward pass against MACs, to show how
  XLA:CPU's convolutions depend on the width being a multiple of 8."""
  x = np.asarray(jax.random.normal(jax.random.key(1), (batch, 32, 32, 3)))
  fns, macs = {}, {}
  for widths in WIDTH_PROBE:
    m = models.resnet56(stage_widths=widths)
    v = jax.jit(m.init)(jax.random.key(0), x[:1])
    fns[str(widths)] = (jax.jit(lambda v, x, m=m: m.apply(v, x)), (v, x))
    macs[str(widths)] = pj.count_flops(lambda v, x, m=m: m.apply(v, x), v, x[:1]).macs
  times = interleaved_calls(fns, rounds, 2)
  full = str(WIDTH_PROBE[0])
  base = statistics.median(times[full])
  rows = []
  for name, t in times.items():
    med = statistics.median(t)
    rows.append(
      {
        "stage_widths": name,
        "batch": batch,
        "macs": macs[name],
        "s": med,
        "macs_ratio": macs[full] / macs[name],
        "speedup": base / med,
      }
    )
    print(
      f"resnet56 widths {name:<14} MACs ratio {macs[full] / macs[name]:5.2f}x speedup {base / med:5.2f}x",
      flush=True,
    )
  return rows


def study_structures(folder: str, rounds: int, batches) -> list[dict]:
  """Per run of a study (its summaries under ``folder``): the shrunk network its summary names
  against the study's dense network (same model, the dense run's ``model_kwargs``), timed
  interleaved at each batch size; weights are random (latency does not depend on them)."""
  from experiments import report
  from experiments.train import as_tuples

  runs = [s for s in report.load_summaries(folder) if s.get("model_kwargs") is not None]
  dense_runs = {s["model"]: s for s in runs if s["method"] == "dense"}
  rows = []
  for model_name, dense_run in sorted(dense_runs.items()):
    x1 = np.zeros((1, 32, 32, 3), np.float32)
    nets = {"dense": models.get_model(model_name, num_classes=10, **as_tuples(dense_run["model_kwargs"]))}
    for s in runs:
      if s["model"] == model_name and s["method"] != "dense":
        nets[f"{s['method']}|{s['variant']}|{s['seed']}"] = models.get_model(
          model_name, num_classes=10, **as_tuples(s["model_kwargs"])
        )
    variables = {k: jax.jit(m.init)(jax.random.key(0), x1) for k, m in nets.items()}
    macs = {k: pj.count_flops(m.apply, variables[k], x1).macs for k, m in nets.items()}
    for batch in batches:
      x = np.asarray(jax.random.normal(jax.random.key(1), (batch, 32, 32, 3)))
      fns = {k: (jax.jit(lambda v, x, m=m: m.apply(v, x)), (variables[k], x)) for k, m in nets.items()}
      times = interleaved_calls(fns, rounds, max(1, 256 // batch))
      base = statistics.median(times["dense"])
      for key in nets:
        if key == "dense":
          continue
        method, variant, seed = key.split("|")
        med = statistics.median(times[key])
        rows.append(
          {
            "model": model_name,
            "method": method,
            "variant": variant,
            "seed": int(seed),
            "batch": batch,
            "macs_dense": macs["dense"],
            "macs": macs[key],
            "macs_ratio": macs["dense"] / macs[key],
            "s_dense": base,
            "s": med,
            "speedup": base / med,
          }
        )
        print(
          f"{model_name} {key:<28} batch {batch:>3}: MACs ratio {macs['dense'] / macs[key]:5.2f}x, "
          f"speedup {base / med:5.2f}x",
          flush=True,
        )
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--models", default="vgg16,resnet56")
  ap.add_argument("--reductions", default="0.3,0.5,0.7")
  ap.add_argument("--batches", default="1,128")
  ap.add_argument("--round-to", default="none,8", help="widths rounded to multiples of these")
  ap.add_argument("--json", help="also write the results to this file")
  ap.add_argument("--width-probe", action="store_true", help="only time ResNet-56 at uniform widths")
  ap.add_argument("--from-results", help="time the structures of this study folder's runs instead")
  args = ap.parse_args(argv)
  if args.from_results:
    rows = study_structures(args.from_results, args.rounds, [int(b) for b in args.batches.split(",")])
    if args.json:
      os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
      with open(args.json, "w") as f:
        json.dump({"device": jax.devices()[0].device_kind, "rounds": args.rounds, "rows": rows}, f, indent=1)
    return
  if args.width_probe:
    rows = width_probe(args.rounds)
    if args.json:
      os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
      with open(args.json, "w") as f:
        json.dump({"device": jax.devices()[0].device_kind, "rounds": args.rounds, "rows": rows}, f, indent=1)
    return
  reductions = [float(r) for r in args.reductions.split(",")]
  rows = []
  device = jax.devices()[0].device_kind
  roundings = [None if r == "none" else int(r) for r in args.round_to.split(",")]
  for name in args.models.split(","):
    model = models.get_model(name, num_classes=10)
    x1 = np.zeros((1, 32, 32, 3), np.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x1)
    found_for = {r: structures(model, variables, x1, reductions, r) for r in roundings}
    for round_to, batch in ((r, int(b)) for r in roundings for b in args.batches.split(",")):
      reference, found = found_for[round_to]
      x = np.asarray(jax.random.normal(jax.random.key(1), (batch, 32, 32, 3)))
      n = max(1, 256 // batch)  # about the same work per round at every batch size
      dense = jax.jit(lambda v, x, m=model: m.apply(v, x))
      fns = {"dense": (dense, (variables, x))}
      for r, (_, small, small_vars, masked) in found.items():
        fns[f"masked_{r}"] = (dense, (masked, x))
        fns[f"shrunk_{r}"] = (jax.jit(lambda v, x, m=small: m.apply(v, x)), (small_vars, x))
      times = interleaved_calls(fns, args.rounds, n)
      base = statistics.median(times["dense"])
      for r, (t, *_rest) in found.items():
        shrunk, masked = statistics.median(times[f"shrunk_{r}"]), statistics.median(times[f"masked_{r}"])
        macs_ratio = reference / t.macs
        row = {
          "model": name,
          "batch": batch,
          "round_to": round_to,
          "macs_reduction_target": r,
          "macs_reduction": t.reduction,
          "macs_dense": reference,
          "macs_shrunk": t.macs,
          "channels_removed_fraction": t.amount,
          "s_dense": base,
          "s_masked": masked,
          "s_shrunk": shrunk,
          "speedup": base / shrunk,
          "masked_speedup": base / masked,
          "macs_ratio": macs_ratio,
          "speedup_per_macs_ratio": base / shrunk / macs_ratio,
          "meets_target": base / shrunk / macs_ratio >= TARGET,
        }
        rows.append(row)
        print(
          f"{name:<9} round_to {round_to} batch {batch:>3} MACs -{t.reduction:.3f}: dense {base * 1e3:8.2f} "
          f"ms, masked {masked * 1e3:8.2f} ms, shrunk {shrunk * 1e3:8.2f} ms; speedup {base / shrunk:5.2f}x "
          f"vs MACs ratio {macs_ratio:5.2f}x ({base / shrunk / macs_ratio:.2f})",
          flush=True,
        )
  if args.json:
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
      json.dump({"device": device, "rounds": args.rounds, "target": TARGET, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()

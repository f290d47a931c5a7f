"""Memory of each method's pruning state, in bytes per byte of params.

For every method of ``pruning_jax.methods`` built the way the studies build it, on ResNet-20
(CIFAR-10 shapes) and LeNet-300-100: the bytes of its ``PrunerState`` (learned mask variables
and buffers) and of the optimizer moments of its learned variables (SGD with momentum: one per
variable, as the studies train them), each divided by the bytes of the float32 params. The
counts are exact (they come from the arrays' shapes and dtypes), not timed, so one run says
everything. Usage: ``python -m experiments.bench.state_bytes --json FILE``.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import optax

import pruning_jax as pj
from pruning_jax import models, training

MODELS = {
  "resnet20": (models.resnet20, (32, 32, 3)),
  "lenet300100": (models.LeNet300100, (28, 28, 1)),
}


def methods(total_steps: int, reference_macs: int) -> dict[str, pj.Pruner]:
  """The variants measured: name -> Pruner (each as the studies configure it)."""
  return {
    "dense": pj.methods.dense(),
    "magnitude_pruning": pj.methods.magnitude_pruning(0.9),
    "rigl": pj.methods.rigl(0.9, end_step=total_steps),
    "set_training": pj.methods.set_training(0.9, end_step=total_steps),
    "snip": pj.methods.snip(0.9),
    "random_pruning (ERK)": pj.methods.random_pruning(0.9, distribution="erk"),
    "channel_pruning": pj.methods.channel_pruning(amount=0.5),
    "pruning_from_scratch": pj.methods.pruning_from_scratch(0.5, reference_macs=reference_macs),
    "l0_gates (weight)": pj.methods.l0_gates(1e-5),
    "l0_gates (channel)": pj.methods.l0_gates(1e-5, structure="channel"),
    "reparam": pj.methods.reparam(0.9, budget_weight=1.0),
    "aslp": pj.methods.aslp(smart_rescale=True),
    "aslp (bfloat16 logits)": pj.methods.aslp(smart_rescale=True, dtype="bfloat16"),
    "supermask": pj.methods.supermask(),
    "supermask (bfloat16 logits)": pj.methods.supermask(dtype="bfloat16"),
    "edge_popup": pj.methods.edge_popup(0.5),
    "edge_popup (bfloat16 scores)": pj.methods.edge_popup(0.5, dtype="bfloat16"),
  }


def _bytes(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype"))


def measure(model_name: str) -> list[dict]:
  make, shape = MODELS[model_name]
  model = make()
  x = jnp.zeros((8, *shape), jnp.float32)
  batch = {"image": x, "label": jnp.zeros(8, jnp.int32)}
  v = model.init(jax.random.key(0), x)
  model_state = {k: c for k, c in v.items() if k != "params"}
  apply_fn = training.linen_apply(model)
  context = training.init_context(apply_fn, model_state, batches=[batch])
  reference = pj.count_flops(
    lambda p, x: apply_fn(p, model_state, x, train=False)[0], v["params"], x[:1]
  ).macs
  param_bytes = _bytes(v["params"])
  rows = []
  for name, pruner in methods(1000, reference).items():
    state = jax.eval_shape(lambda pr=pruner: pr.init(jax.random.key(1), v["params"], context))
    moments = jax.eval_shape(lambda s=state: optax.sgd(0.1, momentum=0.9).init(s.learned))
    rows.append(
      {
        "model": model_name,
        "method": name,
        "param_bytes": param_bytes,
        "learned_bytes": _bytes(state.learned),
        "buffer_bytes": _bytes(state.buffers),
        "moment_bytes": _bytes(moments),
        "pruner_state_per_param_byte": (_bytes(state.learned) + _bytes(state.buffers)) / param_bytes,
        "with_moments_per_param_byte": (_bytes(state) + _bytes(moments)) / param_bytes,
      }
    )
  return rows


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--json", help="write the rows here")
  ap.add_argument("--models", default=",".join(MODELS))
  args = ap.parse_args(argv)
  rows = [r for m in args.models.split(",") for r in measure(m)]
  print("| model | method | pruner state / param bytes | with its optimizer moments |")
  print("| --- | --- | --- | --- |")
  for r in rows:
    print(
      f"| {r['model']} | {r['method']} | {r['pruner_state_per_param_byte']:.3f} "
      f"| {r['with_moments_per_param_byte']:.3f} |"
    )
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": jax.devices()[0].device_kind, "rows": rows}, f, indent=1)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

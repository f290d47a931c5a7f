"""How far one SGD step moves ASLP's logits at initialisation, per layer and net.

    python -m experiments.aslp_gradient_scale --out experiments/results/aslp/gradient_scale

ASLP keeps a weight iff ``m + L > 0`` with ``L ~ Logistic(0, 1)``: a logit decides its weight
only once ``|m|`` is of the order of the noise scale, 1. This measures, at the untrained net the
study starts from (Conv2/4/6, frozen He-normal weights, m = 0, one CIFAR-10 batch of 256 from the
seeded training split), the logit gradient under ``samples`` fresh Gumbel draws:

- ``rms_mean_grad``: RMS over a layer's logits of the gradient averaged over the draws (the part
  that points the same way step after step);
- ``rms_grad``: RMS of a single draw's gradient;
- ``steps_to_unit``: ``1 / (lr / (1 - momentum) * rms_mean_grad)``, the steps SGD (lr 50,
  momentum 0.9: the study's settings) needs to move a typical logit by 1 if the averaged
  gradient held still -- an optimistic lower bound, since it shrinks as masks change.

It explains what the CPU-budget runs (195 steps) can and cannot show; it is not a result of the
method. Writes ``summary.json`` (and prints a table).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import pruning_jax as pj
from experiments import data as data_lib
from experiments.configs.aslp import MASK_SGD
from pruning_jax.models import get_model


def _rms(x) -> float:
  return float(jnp.sqrt(jnp.mean(jnp.square(x))))


def layer_gradients(model_name: str, signed_constant: bool, images, labels, samples: int, seed: int = 0):
  """``{layer path: (rms of the draw-averaged gradient, rms of one draw's gradient, size)}``."""
  model = get_model(model_name, num_classes=10)
  params = model.init(jax.random.key(seed), images[:1])["params"]
  pruner = pj.methods.aslp(temperature=1.0, smart_rescale=False, signed_constant=signed_constant)
  state = pruner.init(jax.random.key(seed + 1), params)

  @jax.jit
  def grad(variables, key):
    def loss(v):
      seen = pruner.apply(params, state._replace(learned=v), key=key, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": seen}, images), labels
      ).mean()

    return jax.grad(loss)(variables)["logits"]

  draws = [grad(state.learned, jax.random.key(100 + i)) for i in range(samples)]
  mean = jax.tree.map(lambda *g: jnp.mean(jnp.stack(g), 0), *draws)
  out = {}
  for (path, m), one in zip(
    jax.tree_util.tree_leaves_with_path(mean), jax.tree.leaves(draws[0]), strict=True
  ):
    if m.ndim < 2:
      continue
    out[jax.tree_util.keystr(path, simple=True, separator="/")] = (_rms(m), _rms(one), int(m.size))
  return out


def measure(nets=("conv2", "conv4", "conv6"), samples: int = 8, batch: int = 256, seed: int = 0) -> dict:
  ds = data_lib.load("cifar10", seed=seed)
  idx = np.random.default_rng(seed).choice(len(ds.train_label), batch, replace=False)
  images = data_lib.normalize(ds.train_image[idx], ds.mean, ds.std)
  labels = ds.train_label[idx]
  lr_eff = MASK_SGD["lr"] / (1.0 - MASK_SGD["momentum"])
  rows = []
  for net in nets:
    for sc in (False, True):
      for layer, (mean_rms, one_rms, size) in layer_gradients(net, sc, images, labels, samples, seed).items():
        rows.append(
          {
            "net": net,
            "signed_constant": sc,
            "layer": layer,
            "size": size,
            "rms_mean_grad": mean_rms,
            "rms_grad": one_rms,
            "steps_to_unit": 1.0 / (lr_eff * mean_rms),
          }
        )
  return {
    "what": "ASLP logit gradients at initialisation (see experiments/aslp_gradient_scale.py)",
    "samples": samples,
    "batch": batch,
    "seed": seed,
    "mask_sgd": MASK_SGD,
    "device": jax.devices()[0].platform,
    "rows": rows,
  }


def markdown(summary: dict) -> str:
  lines = [
    "| net | SC | layer | logits | RMS grad (one draw) | RMS grad (mean of draws) | steps to move 1 |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for r in summary["rows"]:
    lines.append(
      f"| {r['net']} | {int(r['signed_constant'])} | {r['layer']} | {r['size']:,} | {r['rms_grad']:.2e} "
      f"| {r['rms_mean_grad']:.2e} | {r['steps_to_unit']:,.0f} |"
    )
  return "\n".join(lines)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="experiments/results/aslp/gradient_scale")
  p.add_argument("--samples", type=int, default=8)
  p.add_argument("--nets", default="conv2,conv4,conv6")
  a = p.parse_args(argv)
  t0 = time.time()
  summary = measure(tuple(a.nets.split(",")), samples=a.samples)
  summary["wall_time_s"] = time.time() - t0
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(markdown(summary))


if __name__ == "__main__":
  main()

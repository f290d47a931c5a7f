"""Why ASLP's extracted subnetwork falls behind the network it samples: probes of a finished run.

    python -m experiments.aslp_gap_probe \\
      --config 'experiments/configs/aslp_converged.py:method=aslp,sc=1,seed=0' \\
      --workdir runs/aslp_converged/lenet300100_aslp_mnist_sc_seed0 \\
      --out experiments/results/aslp_converged/gap_probe

On the run's reported checkpoint (``final_state/``: the one its first ``select_on`` view chose)
and its validation split (the test split stays untouched), it measures:

- ``noise_scale``: accuracy of the forward pass with the Logistic noise scaled by ``a``: 1 is
  the method's sampled network, 0 its extraction ``1[m > 0]``; in between, masks that keep each
  undecided weight with a probability pulled towards 0 or 1.
- ``layers``: per masked layer, the accuracy with only that layer extracted (the others
  sampled) and with only that layer sampled (the others extracted); the expected fraction of
  its weights where a sample and the extraction differ, ``mean(min(p, 1 - p))`` with
  ``p = sigmoid(m)``; the fraction of its logits with ``|m| < 1``; and how typical the
  extraction is among the samples: with every other layer extracted, the layer's outputs under
  ``samples`` draws of its mask give a per-output mean and std, and ``z_extracted`` is the mean
  ``|out_extracted - mean| / std`` against ``z_sample``, the same for one further draw. A
  typical draw has ``z`` near 0.8 (a Gaussian's mean |z|); an extraction far above it is not a
  network the training ever saw.

It is a diagnostic of one run, not a result of the method. Writes ``<out>/<run name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import build, sweep, train
from experiments import checkpoints as ckpt_lib
from experiments import data as data_lib
from pruning_jax import models as models_lib
from pruning_jax import tree as tree_lib

NOISE_SCALES = (1.0, 0.5, 0.25, 0.1, 0.0)


def _accuracy(apply, seen, x, y) -> float:
  return float(jnp.mean(jnp.argmax(apply(seen, x), -1) == y))


def _mix(base, other, path: str):
  """``base`` with the leaf at slash ``path`` taken from ``other``."""
  return jax.tree_util.tree_map_with_path(
    lambda p, a, b: b if tree_lib.path_str(p) == path else a, base, other
  )


def _module_output(model, variables, x, module: tuple[str, ...]):
  """What the submodule at ``module`` (its path of names) returns in the forward pass."""
  _, state = model.apply(
    variables, x, capture_intermediates=lambda mdl, _: mdl.path == module, mutable=["intermediates"]
  )
  node = state["intermediates"]
  for name in module:
    node = node[name]
  return node["__call__"][0]


def probe(config, workdir: str, *, passes: int = 5, samples: int = 32, z_examples: int = 200, seed: int = 0):
  """The measurements above, as a dict.

  Args:
    config: the run's config (``get_config`` of its study file).
    workdir: the finished run's directory.
    passes: sampled passes averaged per accuracy.
    samples: mask draws per layer for the typicality statistics.
    z_examples: validation examples those statistics use.
    seed: the probe's own PRNG seed.

  Returns:
    ``{"noise_scale": [...], "layers": [...], ...}``.
  """
  ds = train.load_dataset(config)
  x = data_lib.normalize(ds.val_image, ds.mean, ds.std)
  y = ds.val_label
  model = models_lib.get_model(config.model, num_classes=ds.num_classes, **dict(config.model_kwargs))
  variables = model.init(jax.random.fold_in(jax.random.PRNGKey(config.seed), 0), x[:1])
  model_state = {k: v for k, v in variables.items() if k != "params"}
  stage = config.stages[-1]
  spe = len(ds.train_label) // config.batch_size
  kw = {"steps_per_epoch": spe, "total_steps": int(round(stage.epochs * spe))}
  pruner_cfg = dict(stage.pruner)
  if pruner_cfg.get("name") != "aslp":
    raise ValueError(
      f"aslp_gap_probe: the run's pruner is {pruner_cfg.get('name')!r}; the probe scales ASLP's Gumbel "
      "noise (noise_scale), which only method=aslp has."
    )
  pruner = build.pruner(pruner_cfg, "stages[-1].pruner", **kw)
  shapes = jax.eval_shape(lambda: pruner.init(jax.random.key(0), variables["params"]))
  params, pstate = ckpt_lib.load_state(workdir, variables["params"], shapes)
  final_params, _ = ckpt_lib.load_final(workdir, variables["params"], model_state)
  extracted, _ = pruner.finalize(params, pstate)
  for a, b in zip(jax.tree.leaves(extracted), jax.tree.leaves(final_params), strict=True):
    if not np.array_equal(np.asarray(a), np.asarray(b)):
      raise ValueError(f"{workdir}: final_state/ does not extract to final/; the run's files disagree.")

  apply = jax.jit(lambda seen, inputs: model.apply({"params": seen, **model_state}, inputs))
  key = jax.random.key(seed)

  def sampled(pr, k):
    return pr.apply(params, pstate, key=k, train=True)

  out = {"noise_scale": []}
  for a in NOISE_SCALES:
    pr = build.pruner({**pruner_cfg, "noise_scale": a}, "probe", **kw)
    accs = [_accuracy(apply, sampled(pr, jax.random.fold_in(key, i)), x, y) for i in range(passes)]
    out["noise_scale"].append({"a": a, "val_accuracy": float(np.mean(accs)), "std": float(np.std(accs))})
  out["val_accuracy_extracted"] = _accuracy(apply, extracted, x, y)

  logits = pstate.learned["logits"]
  masked = [
    (tree_lib.path_str(p), m) for p, m in jax.tree_util.tree_flatten_with_path(logits)[0] if np.ndim(m) > 0
  ]
  xz = x[:z_examples]
  out["layers"] = []
  for li, (path, m) in enumerate(masked):
    p = jax.nn.sigmoid(m)
    draws = [sampled(pruner, jax.random.fold_in(key, 1000 * (li + 1) + i)) for i in range(passes)]
    only_extracted = [_accuracy(apply, _mix(d, extracted, path), x, y) for d in draws]
    only_sampled = [_accuracy(apply, _mix(extracted, d, path), x, y) for d in draws]
    module = tuple(path.split("/")[:-1])  # the layer's outputs: what its own module returns
    layer_out = jax.jit(
      lambda seen, module=module: _module_output(model, {"params": seen, **model_state}, xz, module)
    )

    total = total_sq = 0.0
    for i in range(samples):
      o = layer_out(_mix(extracted, sampled(pruner, jax.random.fold_in(key, 10**6 + 100 * li + i)), path))
      total, total_sq = total + o, total_sq + o * o
    mean = total / samples
    std = jnp.sqrt(jnp.maximum(total_sq / samples - mean * mean, 0.0))
    live = std > 1e-6  # outputs the mask of this layer does not touch carry no statistic
    held_out = layer_out(_mix(extracted, sampled(pruner, jax.random.fold_in(key, 999_999)), path))

    def z(o, mean=mean, std=std, live=live):
      return float(
        jnp.sum(jnp.where(live, jnp.abs(o - mean) / jnp.where(live, std, 1.0), 0.0)) / jnp.sum(live)
      )

    out["layers"].append(
      {
        "path": path,
        "size": int(m.size),
        "expected_disagreement": float(jnp.mean(jnp.minimum(p, 1 - p))),
        "undecided": float(jnp.mean(jnp.abs(m) < 1.0)),
        "val_accuracy_only_this_extracted": float(np.mean(only_extracted)),
        "val_accuracy_only_this_sampled": float(np.mean(only_sampled)),
        "z_extracted": z(layer_out(extracted)),
        "z_sample": z(held_out),
      }
    )
  return out


def run_one(config_arg: str, workdir: str, out: str, samples: int = 32) -> dict:
  """Probes one finished run and writes ``<out>/<run name>.json``."""
  path, _, arg = config_arg.partition(":")
  config = sweep.load_config_module(path, need_grid=False).get_config(arg)
  result = {
    "run": sweep.run_name(config),
    "config": config_arg,
    "device": jax.devices()[0].device_kind,
    **probe(config, workdir, samples=samples),
  }
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"{result['run']}.json"), "w") as f:
    json.dump(result, f, indent=1)
  return result


def config_of(summary: dict) -> str:
  """The ``file:argument`` a collected summary's run was started with (its ``command``)."""
  tokens = summary["command"].split()
  for i, token in enumerate(tokens):
    if token.startswith("--config="):
      return token.removeprefix("--config=")
    if token == "--config" and i + 1 < len(tokens):
      return tokens[i + 1]
  raise ValueError(f"summary of {summary.get('_file')}: its command {summary['command']!r} has no --config=.")


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--config", help="study config file:argument, as the run's")
  ap.add_argument("--workdir", help="the finished run's directory")
  ap.add_argument("--from-results", help="probe every ASLP run collected in this folder not probed yet")
  ap.add_argument("--runs", help="with --from-results: the sweep's runs folder (the workdirs)")
  ap.add_argument("--out", required=True, help="folder for <run name>.json")
  ap.add_argument("--samples", type=int, default=32)
  args = ap.parse_args(argv)
  if args.from_results:
    if not args.runs:
      ap.error("--from-results needs --runs (the folder holding each run's workdir)")
    from experiments import report

    for s in report.load_summaries(args.from_results):
      name = f"{s['model']}_{s['method']}_{s['variant']}_seed{s['seed']}"
      if s["method"] != "aslp" or os.path.exists(os.path.join(args.out, f"{name}.json")):
        continue
      workdir = os.path.join(args.runs, name)
      if not os.path.isdir(os.path.join(workdir, ckpt_lib.STATE_DIR)):
        print(f"[probe] {name}: no {ckpt_lib.STATE_DIR}/ (finished before the runner saved it); skipped")
        continue
      r = run_one(config_of(s), workdir, args.out, args.samples)
      print(f"[probe] {name}: extracted {r['val_accuracy_extracted']:.4f}, noise 1: {r['noise_scale'][0]}")
    return 0
  if not (args.config and args.workdir):
    ap.error("give --config and --workdir (one run) or --from-results and --runs")
  result = run_one(args.config, args.workdir, args.out, args.samples)
  print(json.dumps({k: result[k] for k in ("run", "noise_scale", "val_accuracy_extracted")}, indent=1))
  for r in result["layers"]:
    print(r)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

"""Quickstart (`make run`): gradual magnitude pruning of LeNet-300-100 on MNIST, built from the
pruning_jax core only: a Zhu & Gupta schedule, exact global magnitude masks recomputed every
`--mask-every` steps, `keep_masked` in the optax chain, FLOPs counted from the model's jaxpr.

    python -m experiments.quickstart --epochs 3 --sparsity 0.9 --workdir runs/quickstart

Model selection is not needed here (fixed recipe); the validation split (5,000 seeded images
carved from train) is reported next to the test split, which is evaluated once at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import pruning_jax as pj


class LeNet300100(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(300)(x))
    x = nn.relu(nn.Dense(100)(x))
    return nn.Dense(10)(x)


def load_mnist(data_dir: str | None):
  import tensorflow_datasets as tfds

  out = {}
  for split in ("train", "test"):
    try:
      src = tfds.data_source("mnist", split=split, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - TFDS raises several types for missing data
      raise SystemExit(
        f"MNIST is not prepared under TFDS_DATA_DIR={data_dir!r} ({type(e).__name__}: {e}).\n"
        "Fix: export TFDS_DATA_DIR=/path/to/prepared/tfds (this project: ../shared/tfds)."
      ) from None
    images, labels = [], []
    for start in range(0, len(src), 5000):
      batch = src.__getitems__(list(range(start, min(start + 5000, len(src)))))
      images.append(np.stack([b["image"] for b in batch]))
      labels.append(np.array([b["label"] for b in batch]))
    out[split] = (np.concatenate(images), np.concatenate(labels))
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--epochs", type=int, default=3)
  ap.add_argument("--sparsity", type=float, default=0.9)
  ap.add_argument("--mask-every", type=int, default=50)
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--lr", type=float, default=0.05)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--workdir", default="runs/quickstart")
  args = ap.parse_args(argv)
  t_start = time.time()

  data = load_mnist(os.environ.get("TFDS_DATA_DIR"))
  rng = np.random.default_rng(args.seed)
  perm = rng.permutation(len(data["train"][0]))
  val_idx, train_idx = perm[:5000], perm[5000:]
  to_x = lambda a: jnp.asarray(a, jnp.float32) / 255.0  # noqa: E731
  x_train, y_train = to_x(data["train"][0][train_idx]), jnp.asarray(data["train"][1][train_idx])
  x_val, y_val = to_x(data["train"][0][val_idx]), jnp.asarray(data["train"][1][val_idx])
  x_test, y_test = to_x(data["test"][0]), jnp.asarray(data["test"][1])

  model = LeNet300100()
  key = jax.random.key(args.seed)
  params = model.init(key, x_train[:1])["params"]
  steps_per_epoch = len(x_train) // args.batch
  total = args.epochs * steps_per_epoch
  schedule = pj.schedules.polynomial(
    args.sparsity, begin_step=total // 10, end_step=(7 * total) // 10, frequency=args.mask_every
  )
  tx = optax.chain(optax.sgd(args.lr, momentum=0.9), pj.keep_masked())
  opt_state = tx.init(params)
  masks = pj.init_masks(params)

  @jax.jit
  def update_masks(params, step):
    masks = pj.masks_from_scores(pj.criteria.magnitude(params), schedule(step), scope="global")
    return pj.apply_masks(params, masks), masks

  @jax.jit
  def train_step(params, opt_state, masks, x, y):
    def loss_fn(p):
      logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params, masks=masks)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def accuracy(params, x, y):
    return jnp.mean(jnp.argmax(model.apply({"params": params}, x), -1) == y)

  step = 0
  for epoch in range(args.epochs):
    order = jax.random.permutation(jax.random.fold_in(key, epoch), len(x_train))
    for i in range(steps_per_epoch):
      if step % args.mask_every == 0:
        params, masks = update_masks(params, step)
      idx = order[i * args.batch : (i + 1) * args.batch]
      params, opt_state, loss = train_step(params, opt_state, masks, x_train[idx], y_train[idx])
      step += 1
    print(
      f"epoch {epoch + 1}/{args.epochs}  loss {float(loss):.4f}  "
      f"sparsity {float(pj.sparsity(masks)):.4f}  val acc {float(accuracy(params, x_val, y_val)):.4f}"
    )

  params, masks = update_masks(params, step)  # the final target, exactly
  counts = pj.count_params(params)
  flops = pj.count_flops(lambda p, x: model.apply({"params": p}, x), params, x_test[:1])
  summary = {
    "study": "quickstart",
    "method": "gradual_magnitude",
    "model": "lenet300100",
    "dataset": "mnist",
    "seed": args.seed,
    "epochs": args.epochs,
    "steps": step,
    "val_accuracy": float(accuracy(params, x_val, y_val)),
    "test_accuracy": float(accuracy(params, x_test, y_test)),
    "sparsity": float(pj.sparsity(masks)),
    "params_total": counts.total,
    "params_nonzero": counts.nonzero,
    "flops_dense": flops.flops,
    "flops_effective": flops.effective_flops,
    "wall_time_s": time.time() - t_start,
    "device": jax.devices()[0].device_kind,
    "command": " ".join(
      ["python", "-m", "experiments.quickstart", *(argv if argv is not None else sys.argv[1:])]
    ),
    "config": vars(args),
  }
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print()
  print("| metric | value |\n| --- | --- |")
  for k in (
    "val_accuracy",
    "test_accuracy",
    "sparsity",
    "params_total",
    "params_nonzero",
    "flops_dense",
    "flops_effective",
  ):
    v = summary[k]
    print(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v:,} |")
  print("\nper-layer density (kernels):")
  for leaf in pj.mask_summary(masks):
    print(f"  {leaf.path:<24} {leaf.kept:>7,} / {leaf.total:>7,}  ({leaf.density:.3f})")
  print(f"summary: {os.path.join(args.workdir, 'summary.json')}")


if __name__ == "__main__":
  main()

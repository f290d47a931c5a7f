"""Thin CLI: ``python -m experiments.main --config experiments/configs/FILE.py:VARIANT --workdir DIR``
with ``--config.key=value`` overrides (ml_collections)."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import train

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "experiment config file[:variant]", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, metrics and summary.json go")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print(f"stopped at stage {summary['stage']} step {summary['step']}; rerun to resume")
    return
  keys = (
    "test_accuracy",
    "best_val_accuracy",
    "sparsity",
    "sparsity_all",
    "params_total",
    "params_nonzero",
    "flops_dense",
    "flops_effective",
  )
  print("\n| metric | value |\n| --- | --- |")
  for k in keys:
    v = summary[k]
    print(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v:,} |")


if __name__ == "__main__":
  app.run(main)

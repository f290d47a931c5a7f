"""Every study's RESULTS.md and plots from its run summaries: one module, a spec per study.

    python -m experiments.report FOLDER [--config STUDY_CONFIG.py] [--title T] [--notes N]

Reads every ``*.json`` under FOLDER that is a run summary (it has ``test_accuracy``) and writes
FOLDER/RESULTS.md (and the plots the page links) as the study's spec says. A spec is the
``REPORT`` dict of the study's config file:

- ``title``: the page title; ``notes``: markdown placed under it (both optional);
- ``study``: keep only the summaries whose ``"study"`` field equals it (optional);
- ``sections``: callables ``(runs, folder) -> list of markdown lines``, in page order; a section
  may write the plots it links into ``folder``. Default: :data:`DEFAULT_SECTIONS`, one table row
  per run and the accuracy-vs-sparsity and per-layer density plots.

Sections share the helpers below; every comparison of two methods is :func:`gap_text`, the
seed-paired gap (same seed = same data order, split and init, so only same-seed differences
compare like with like). Every number printed comes from the summaries, except figures a spec
marks as published context.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Summary = dict[str, Any]
Section = Callable[[list[Summary], str], list[str]]

COLUMNS = (
  ("method", "method", "{}"),
  ("model", "model", "{}"),
  ("variant", "variant", "{}"),
  ("seed", "seed", "{}"),
  ("epochs", "epochs", "{:g}"),
  ("test acc", "test_accuracy", "{:.4f}"),
  ("sampled test acc", "test_accuracy_sampled_mean", "{:.4f}"),
  ("best val acc", "best_val_accuracy", "{:.4f}"),
  ("sparsity", "sparsity", "{:.4f}"),
  ("non-zero params", "params_nonzero", "{:,}"),
  ("params", "params_total", "{:,}"),
  ("FLOPs (effective)", "flops_effective", "{:,}"),
  ("FLOPs (dense)", "flops_dense", "{:,}"),
  ("wall s", "wall_time_s", "{:.0f}"),
  ("device", "device", "{}"),
)


def load_summaries(folder: str) -> list[Summary]:
  """Every run summary (a JSON object with ``test_accuracy``) under ``folder``, recursively;
  each gets ``_file``, its path relative to the folder."""
  out = []
  for path in sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True)):
    with open(path) as f:
      try:
        s = json.load(f)
      except json.JSONDecodeError:
        continue
    if isinstance(s, dict) and "test_accuracy" in s:
      s["_file"] = os.path.relpath(path, folder)
      out.append(s)
  return out


def mean_std(values: Iterable[float], digits: int = 1, *, always_n: bool = True) -> str:
  """Accuracies (fractions) as percent ``mean +- std (n=k)``; the std only for k > 1, the count
  always or (``always_n=False``) only for k > 1."""
  v = 100 * np.asarray(list(values), float)
  text = f"{v.mean():.{digits}f}"
  if len(v) > 1:
    text += f" +- {v.std():.{digits}f}"
  if always_n or len(v) > 1:
    text += f" (n={len(v)})"
  return text


def by_seed(runs: Iterable[Summary], key: str = "test_accuracy") -> dict[int, float]:
  """``{seed: run[key]}``."""
  return {s["seed"]: s[key] for s in runs}


class Gap(NamedTuple):
  """Seed-paired differences ``a - b`` in points, over the seeds both ran."""

  seeds: list[int]
  points: list[float]

  @property
  def mean(self) -> float:
    return float(np.mean(self.points))


def paired_gap(a: Mapping[int, float], b: Mapping[int, float]) -> Gap:
  """``100 * (a[seed] - b[seed])`` for every seed in both (accuracies as fractions)."""
  seeds = sorted(set(a) & set(b))
  return Gap(seeds, [100 * (a[k] - b[k]) for k in seeds])


def gap_text(label: str, a: Mapping[int, float], b: Mapping[int, float], digits: int = 2) -> str:
  """``"<label> = +x points (seed 0: +y, seed 1: +z)"``: the seed-paired gap, per seed when
  either side ran more than one; ``"<label>: no seed in common"`` when none is shared."""
  gap = paired_gap(a, b)
  if not gap.seeds:
    return f"{label}: no seed in common"
  text = f"{label} = {gap.mean:+.{digits}f} points"
  if len(a) > 1 or len(b) > 1:
    text += (
      " (" + ", ".join(f"seed {k}: {g:+.{digits}f}" for k, g in zip(gap.seeds, gap.points, strict=True)) + ")"
    )
  return text


def save_figure(fig, ax, path: str, **legend) -> None:
  """Grid, legend, tight layout, PNG at 120 dpi, and the figure closed."""
  ax.grid(alpha=0.3)
  ax.legend(**{"fontsize": 8, **legend})
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def table(summaries: list[Summary]) -> str:
  """One markdown row per run with the :data:`COLUMNS` some run has (a cell is empty where its
  summary lacks the field)."""
  columns = [c for c in COLUMNS if any(c[1] in s for s in summaries)]
  head = "| " + " | ".join(c[0] for c in columns) + " |"
  sep = "| " + " | ".join("---" for _ in columns) + " |"
  rows = []
  for s in sorted(
    summaries, key=lambda s: (s.get("model", ""), s.get("method", ""), s.get("variant", ""), s.get("seed", 0))
  ):
    cells = []
    for _, key, fmt in columns:
      v = s.get(key, "")
      cells.append(fmt.format(v) if v != "" else "")
    rows.append("| " + " | ".join(cells) + " |")
  return "\n".join([head, sep, *rows])


def plot_accuracy_vs_sparsity(summaries: list[Summary], path: str) -> None:
  fig, ax = plt.subplots(figsize=(6, 4))
  for method in sorted({s["method"] for s in summaries}):
    pts = [(s["sparsity"], s["test_accuracy"]) for s in summaries if s["method"] == method]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=method)
  ax.set_xlabel("sparsity (removed fraction of prunable weights)")
  ax.set_ylabel("test accuracy")
  save_figure(fig, ax, path)


def plot_layer_density(summaries: list[Summary], path: str) -> bool:
  """Kept fraction per prunable layer, one bar group per run; False when no run has them."""
  runs = [s for s in summaries if s.get("layer_density")]
  if not runs:
    return False
  layers = [d["path"] for d in runs[0]["layer_density"]]
  fig, ax = plt.subplots(figsize=(max(6, len(layers) * 0.8), 4))
  width = 0.8 / len(runs)
  for i, s in enumerate(runs):
    dens = {d["path"]: d["kept"] / d["total"] for d in s["layer_density"]}
    xs = [j + i * width for j in range(len(layers))]
    ax.bar(
      xs,
      [dens.get(name, float("nan")) for name in layers],
      width,
      label=f"{s['method']} {s.get('variant', '')} s{s.get('seed', '')}",
    )
  ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))])
  ax.set_xticklabels([name.replace("/kernel", "") for name in layers], rotation=45, ha="right", fontsize=8)
  ax.set_ylabel("kept fraction")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def run_table_section(runs: list[Summary], folder: str) -> list[str]:
  """The generic page body: the run table and the two plots."""
  plot_accuracy_vs_sparsity(runs, os.path.join(folder, "accuracy_vs_sparsity.png"))
  has_density = plot_layer_density(runs, os.path.join(folder, "layer_density.png"))
  lines = [
    "Generated by `python -m experiments.report` from the summaries in this folder "
    "(accuracies and sparsities are fractions; test accuracy is measured once per run).",
    "",
    table(runs),
    "",
    "![accuracy vs sparsity](accuracy_vs_sparsity.png)",
    "",
  ]
  if has_density:
    lines += ["![per-layer density](layer_density.png)", ""]
  return lines


DEFAULT_SECTIONS: Sequence[Section] = (run_table_section,)


def render(folder: str, spec: Mapping[str, Any] | None = None) -> str:
  """The page of ``folder`` as ``spec`` (a study's ``REPORT``) lays it out; writes its plots."""
  spec = dict(spec or {})
  unknown = sorted(set(spec) - {"title", "notes", "study", "sections"})
  if unknown:
    raise ValueError(f"REPORT: unknown keys {unknown}; a report spec has title, notes, study and sections.")
  runs = load_summaries(folder)
  if spec.get("study") is not None:
    runs = [s for s in runs if s.get("study") == spec["study"]]
  if not runs:
    raise SystemExit(f"No run summaries (*.json with test_accuracy) under {folder} for this report.")
  lines = [f"# {spec.get('title') or os.path.basename(os.path.normpath(folder))}", ""]
  if spec.get("notes"):
    lines += [spec["notes"], ""]
  for section in spec.get("sections", DEFAULT_SECTIONS):
    lines += section(runs, folder)
  return "\n".join(lines)


def write_report(folder: str, spec: Mapping[str, Any] | None = None) -> str:
  """:func:`render`, written to ``folder/RESULTS.md``; returns the text."""
  text = render(folder, spec)
  with open(os.path.join(folder, "RESULTS.md"), "w") as f:
    f.write(text)
  return text


def study_spec(config_path: str | None) -> dict[str, Any]:
  """The ``REPORT`` dict of a study config file, or an empty spec."""
  if config_path is None:
    return {}
  from experiments.sweep import load_config_module

  module = load_config_module(config_path, need_grid=False)
  if not hasattr(module, "REPORT"):
    raise SystemExit(f"--config {config_path!r} has no REPORT spec (python -m experiments.report --help).")
  return dict(module.REPORT)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("folder")
  ap.add_argument("--config", help="a study config whose REPORT dict lays out the page")
  ap.add_argument("--title", help="overrides the spec's title")
  ap.add_argument("--notes", default=None, help="markdown placed above the body (overrides the spec's)")
  args = ap.parse_args(argv)
  spec = study_spec(args.config)
  if args.title:
    spec["title"] = args.title
  if args.notes is not None:
    spec["notes"] = args.notes
  print(write_report(args.folder, spec))


if __name__ == "__main__":
  main()

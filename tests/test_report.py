"""The one report module: the seed-paired gap, specs, and the generic page."""

import json

import pytest

from experiments import report


def test_paired_gap_uses_only_the_seeds_both_ran():
  a = {0: 0.60, 1: 0.50, 2: 0.70}
  b = {0: 0.40, 2: 0.75, 3: 0.10}
  gap = report.paired_gap(a, b)
  assert gap.seeds == [0, 2]
  assert gap.points == pytest.approx([20.0, -5.0])
  assert gap.mean == pytest.approx(7.5)


def test_gap_text_forms():
  assert report.gap_text("A - B", {0: 0.5}, {0: 0.25}) == "A - B = +25.00 points"
  assert (
    report.gap_text("A - B", {0: 0.5, 1: 0.6}, {0: 0.25}, digits=1) == "A - B = +25.0 points (seed 0: +25.0)"
  )
  assert report.gap_text("A - B", {1: 0.5}, {0: 0.25}) == "A - B: no seed in common"


def test_mean_std_forms():
  assert report.mean_std([0.5, 0.7]) == "60.0 +- 10.0 (n=2)"
  assert report.mean_std([0.5], 2, always_n=False) == "50.00"


def _run(tmp_path, name, **fields):
  s = {"method": "m", "model": "net", "seed": 0, "test_accuracy": 0.5, "sparsity": 0.9, **fields}
  (tmp_path / f"{name}.json").write_text(json.dumps(s))


def test_the_default_page_drops_columns_no_run_has(tmp_path):
  _run(tmp_path, "a", study="x")
  _run(tmp_path, "b", study="x", test_accuracy_sampled_mean=0.4)
  text = report.render(str(tmp_path))
  assert "| sampled test acc |" in text and "| wall s |" not in text
  (tmp_path / "b.json").unlink()
  assert "sampled test acc" not in report.render(str(tmp_path))
  assert (tmp_path / "accuracy_vs_sparsity.png").stat().st_size > 0


def test_a_spec_filters_by_study_and_lays_out_its_sections(tmp_path):
  _run(tmp_path, "a", study="x", test_accuracy=0.8)
  _run(tmp_path, "b", study="y", test_accuracy=0.2)

  def mean_section(runs, folder):
    del folder
    return [f"mean {sum(s['test_accuracy'] for s in runs) / len(runs):.2f}", ""]

  text = report.write_report(
    str(tmp_path), {"title": "T", "notes": "N", "study": "x", "sections": [mean_section]}
  )
  assert text == "# T\n\nN\n\nmean 0.80\n"
  assert (tmp_path / "RESULTS.md").read_text() == text


def test_a_spec_with_an_unknown_key_is_named(tmp_path):
  _run(tmp_path, "a")
  with pytest.raises(ValueError, match=r"unknown keys \['section'\]"):
    report.render(str(tmp_path), {"section": []})


def test_a_config_without_a_report_spec_says_so(tmp_path):
  cfg = tmp_path / "c.py"
  cfg.write_text("X = 1\n")
  with pytest.raises(SystemExit, match="has no REPORT spec"):
    report.study_spec(str(cfg))

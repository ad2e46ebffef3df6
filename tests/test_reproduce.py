"""minicnn reproduce: a config's every stage on generated data, a report whose numbers come
from the runs, the paper's numbers beside them, and configs checked before any work."""

import json
import shutil
from pathlib import Path

import pytest

from minicnn.cli import main
from minicnn.reproduce import markdown, read_config

CONFIGS = Path(__file__).parents[1] / "experiments" / "configs"


def test_quick_claims_report_comes_from_the_runs(tmp_path):
    out = tmp_path / "out"
    assert main(["reproduce", str(CONFIGS / "claims_generated.toml"), "--quick", "--backend", "numpy",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"transfer", "scratch", "whole-image", "all-background", "reweight",
                                   "update-fc67"}
    assert report["seeds"] == [0, 1]
    transfer = report["runs"]["transfer"]
    per_seed = [json.loads((out / "runs" / "transfer" / f"seed{s}" / "summary.json").read_text())["map"] * 100
                for s in (0, 1)]
    assert transfer["map_per_seed"] == pytest.approx(per_seed)
    assert transfer["map"] == pytest.approx(sum(per_seed) / 2)
    assert transfer["k_curve"]["5"] == pytest.approx(transfer["map"])  # the runs' own k
    assert set(transfer["k_curve"]) == {"1", "2", "5", "10", "max"}
    assert (out / "plots" / "map_against_k.png").exists()
    low, high = transfer["map_interval"]
    assert 0 <= low <= high <= 100
    md = (out / "report.md").read_text()
    assert f"| transfer | {transfer['map']:.1f} |" in md
    assert (out / "plots" / "transfer_ap.png").exists()
    # change a run's result: the report changes with it
    report["runs"]["transfer"]["map"] = 12.3
    assert "| transfer | 12.3 |" in markdown(report)
    record = json.loads((out / "run.json").read_text())
    assert record["name"] == "reproduce" and record["finished"]


def test_paper_numbers_stand_beside_ours_and_configs_are_checked(tmp_path):
    config = read_config(CONFIGS / "voc2007_table1.toml")
    assert config["paper"]["transfer"]["map"] == 77.7 and len(config["paper"]["transfer"]["ap"]) == 20
    for name in ("voc2012_table2.toml", "voc2012_action_table3.toml", "claims_real.toml",
                 "claims_imagenet.toml"):
        read_config(CONFIGS / name)  # every setting valid
    report = {"title": "t", "seeds": [0], "runs": {"transfer": {
        "map": 70.0, "map_per_seed": [70.0], "map_seed_spread": None, "map_interval": [65.0, 75.0],
        "ap": {"car": 80.0}, "metric": "voc07", "paper": config["paper"]["transfer"]}}}
    md = markdown(report)
    assert "| transfer | 70.0 | 65.0 – 75.0 | – | 77.7 |" in md and "| car | 80.0 (90.1) |" in md
    bad = tmp_path / "bad.toml"
    shutil.copy(CONFIGS / "claims_generated.toml", bad)
    bad.write_text(bad.read_text().replace('variant = "scratch"', 'variant = "scratchy"'))
    from minicnn.errors import InputError

    with pytest.raises(InputError, match="--variant must be one of"):
        read_config(bad)
    bad.write_text("title = 'x'\nwhatever = 1\n")
    with pytest.raises(InputError, match="unknown key"):
        read_config(bad)


def test_the_report_leaves_out_rare_classes_and_rescores_every_k():
    """Three items, two patches each. Class "a": items 0 and 2 positive, item 1 negative with
    one strong patch and one empty. The mean of p ranks 2, 0, 1 (AP 1); the maximum ranks
    1, 2, 0 (positives at ranks 2 and 3: area AP 2/3). Class "b", with one positive test
    item, is left out of every mAP when two are asked for."""
    from types import SimpleNamespace

    import numpy as np

    from minicnn.reproduce import summarize

    a = np.array([0.5, 0.5, 0.9, 0.0, 0.8, 0.4])
    probs = np.stack([a, np.full(6, 0.05), 0.95 - a], axis=1)  # a, b, background
    items = SimpleNamespace(keys=["0", "1", "2"], pair_patch=np.arange(6), pair_item=np.repeat([0, 1, 2], 2),
                            truth=np.array([[1, 1], [-1, -1], [1, -1]]))
    transfer = SimpleNamespace(classes=["a", "b"], patches=SimpleNamespace(items={"test": items}))
    mean_scores = np.array([[0.5, 0.05], [0.45, 0.05], [0.6, 0.05]])
    result = SimpleNamespace(report=SimpleNamespace(metric="area"), test_scores=mean_scores, test_probs=probs)
    config = {"seeds": [0], "bootstrap": 20, "report": {"min_test_positives": 2, "k_curve": [1, "max"]}}
    report = summarize(config, {"transfer": [(0, transfer, result)]})
    run = report["runs"]["transfer"]
    assert report["classes_left_out"] == {"b": 1} and set(run["ap"]) == {"a"}
    assert run["map"] == pytest.approx(100.0)
    assert run["k_curve"] == {"1": pytest.approx(100.0), "max": pytest.approx(200 / 3)}
    md = markdown(report)
    assert "fewer than 2 positive test items (b 1)" in md and "| transfer | 100.0 | 66.7 |" in md

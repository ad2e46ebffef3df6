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
    for name in ("voc2012_table2.toml", "voc2012_action_table3.toml"):
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

"""minicnn.runrecord: run.json and log.txt of every run, refusal, resume and fresh starts,
stage times, and progress for a terminal or a log (issue 15)."""

import dataclasses
import hashlib
import io
import json
import os
import re

import pytest

from minicnn import runrecord
from minicnn.cli import main
from minicnn.errors import InputError
from minicnn.runrecord import RunRecord, progress_bar

SETTINGS = {"lr": 0.01, "scales": (1.0, 0.5), "train": {"epochs": 3, "k": 1.0}}


def make(out, **kwargs):
    kwargs.setdefault("settings", SETTINGS)
    return RunRecord(out, command="transfer", argv=["minicnn", "transfer", "--out", str(out)], **kwargs)


def read(out):
    with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture
def network(tmp_path):
    path = tmp_path / "net.npz"
    path.write_bytes(b"weights" * 1000)
    return path


def test_run_json_is_written_at_once_and_finished_at_the_end(tmp_path, network):
    out = tmp_path / "run"
    record = make(out, inputs=[network])
    assert record.path == os.path.join(out, "run.json")
    first = read(out)
    assert first["finished"] is None and first["result"] is None
    assert first["name"] == "transfer" and first["command"] == ["minicnn", "transfer", "--out", str(out)]
    assert first["settings"] == {"lr": 0.01, "scales": [1.0, 0.5], "train": {"epochs": 3, "k": 1.0}}
    assert first["inputs"] == {str(network): hashlib.sha256(network.read_bytes()).hexdigest()}
    assert first["version"] == runrecord.package_version() and first["ranks"] == 1
    assert first["resumed"] == [] and first["skipped"] == [] and first["seconds"] == {}
    record.data(images=10, patches=400)
    record.data(images=12)
    record.skip("a.jpg", "unreadable")
    record.skip("a.jpg", "unreadable")  # once per item and reason
    done = record.finish({"map": 0.5})
    on_disk = read(out)
    assert on_disk == done
    assert on_disk["data"] == {"images": 12, "patches": 400}
    assert on_disk["skipped"] == [{"item": "a.jpg", "reason": "unreadable"}]
    assert on_disk["result"] == {"map": 0.5}
    assert on_disk["started"] <= on_disk["finished"] and on_disk["finished"].count(":") >= 2
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]  # written atomically


def test_a_folder_holding_a_run_is_refused_without_resume_or_fresh(tmp_path):
    out = tmp_path / "run"
    started = make(out)["started"]
    with pytest.raises(InputError, match=re.escape(f"{out} holds a run of `minicnn transfer` (started "
                                                   f"{started}); pass --resume to continue it or --fresh "
                                                   "to start over")):
        make(out)


def test_fresh_replaces_the_record_and_keeps_other_files(tmp_path):
    out = tmp_path / "run"
    with make(out).stage("cache"):
        pass
    (out / "cache.npy").write_bytes(b"x")
    record = make(out, settings={"lr": 1.0}, fresh=True)
    assert read(out)["settings"] == {"lr": 1.0} and read(out)["seconds"] == {}
    assert record["resumed"] == [] and (out / "cache.npy").exists()


def test_resume_with_the_same_settings_keeps_stage_times(tmp_path, network, monkeypatch):
    out = tmp_path / "run"
    clock = iter([100.0, 102.5, 200.0, 201.0, 300.0, 304.0])
    monkeypatch.setattr(runrecord.time, "perf_counter", lambda: next(clock))
    record = make(out, inputs=[network])
    with record.stage("cache"):
        pass
    with record.stage("train"):
        pass
    assert read(out)["seconds"] == {"cache": 2.5, "train": 1.0}
    # tuples and lists are the same setting once recorded
    again = make(out, inputs=[network], resume=True,
                 settings={"lr": 0.01, "scales": [1.0, 0.5], "train": {"epochs": 3, "k": 1.0}})
    assert len(again["resumed"]) == 1 and again["started"] == record["started"]
    with again.stage("cache"):
        pass
    assert read(out)["seconds"] == {"cache": 6.5, "train": 1.0}
    assert read(out)["finished"] is None


def test_resume_names_each_changed_setting(tmp_path):
    out = tmp_path / "run"
    make(out)
    changed = {"lr": 0.02, "scales": (1.0, 0.5), "train": {"epochs": 3, "k": 2.0}, "seed": 1}
    with pytest.raises(InputError) as error:
        make(out, settings=changed, resume=True)
    message = str(error.value)
    assert message.startswith(f"cannot resume the run in {out}: ")
    assert "setting lr: 0.01 -> 0.02" in message and "setting train.k: 1.0 -> 2.0" in message
    assert "setting seed: (not set) -> 1" in message and "scales" not in message
    assert read(out)["resumed"] == []  # nothing written



def test_a_run_recorded_before_a_setting_existed_resumes_with_it_off(tmp_path):
    """A newer minicnn adds a setting (say --batch-parts, --clip-boxes): the run recorded
    without it resumes while it is off (None, false), and is refused, naming it, when on."""
    def settings(clip_boxes, batch_parts):
        train = {**SETTINGS["train"], "batch_parts": batch_parts}
        return {**SETTINGS, "train": train, "clip_boxes": clip_boxes}

    for clip_boxes, batch_parts, named in ((True, None, "setting clip_boxes: (not set) -> true"),
                                           (False, 2, "setting train.batch_parts: (not set) -> 2"),
                                           (False, 0, "setting train.batch_parts: (not set) -> 0")):
        out = tmp_path / f"run-{clip_boxes}-{batch_parts}"
        make(out)
        with pytest.raises(InputError, match=re.escape(named)):
            make(out, settings=settings(clip_boxes, batch_parts), resume=True)
        make(out, settings=settings(False, None), resume=True)
        assert len(read(out)["resumed"]) == 1


def test_resume_names_a_changed_input_file(tmp_path, network):
    out = tmp_path / "run"
    make(out, inputs=[network])
    network.write_bytes(b"other weights")
    with pytest.raises(InputError, match=rf"input {network} has changed \(sha256 "):
        make(out, inputs=[network], resume=True)
    other = tmp_path / "other.npz"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match=rf"input {other} was not an input of the run.*input {network} "
                                         "of the run is not given"):
        make(out, inputs=[other], resume=True)


def test_resume_refuses_another_command_and_a_broken_record(tmp_path):
    out = tmp_path / "run"
    RunRecord(out, command="pretrain", settings={}, argv=[])
    with pytest.raises(InputError, match="holds a run of `minicnn pretrain`, not of `minicnn transfer`"):
        make(out, resume=True)
    (out / "run.json").write_text("{not json")
    with pytest.raises(InputError, match="run.json: not a readable run record"):
        make(out, resume=True)
    make(out, fresh=True)
    assert read(out)["name"] == "transfer"


def test_dataclass_settings_and_nan_compare_equal_on_resume(tmp_path):
    @dataclasses.dataclass
    class Train:
        lr: float = 0.01
        scales: tuple = (1.0, 1.3)

    @dataclasses.dataclass
    class Settings:
        train: Train = dataclasses.field(default_factory=Train)
        margin: float = float("nan")

    out = tmp_path / "run"
    assert make(out, settings=Settings())["settings"] == {"train": {"lr": 0.01, "scales": [1.0, 1.3]},
                                                          "margin": pytest.approx(float("nan"), nan_ok=True)}
    make(out, settings=Settings(), resume=True)
    with pytest.raises(InputError, match=r"setting train.lr: 0.01 -> 0.1"):
        make(out, settings=Settings(train=Train(lr=0.1)), resume=True)


def test_resume_without_a_run_starts_one(tmp_path):
    record = make(tmp_path / "new", resume=True)
    assert record["resumed"] == [] and read(tmp_path / "new")["finished"] is None


def test_an_unreadable_input_is_named(tmp_path):
    with pytest.raises(InputError, match="missing.npz: cannot read input"):
        make(tmp_path / "run", inputs=[tmp_path / "missing.npz"])


def test_sha256_reads_in_chunks(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(os.urandom(3000))
    assert runrecord.sha256_file(path, chunk=1024) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_log_prints_and_appends_plain_lines(tmp_path, capsys):
    record = make(tmp_path / "run")
    record.log("epoch 1: loss 0.5")
    record.log("two\nlines")
    assert capsys.readouterr().out == "epoch 1: loss 0.5\ntwo\nlines\n"
    lines = (tmp_path / "run" / "log.txt").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["epoch 1: loss 0.5", "two", "lines"]
    assert lines[0].split(" ", 1)[0] >= record["started"]  # each line starts with its time


def test_progress_without_a_terminal_writes_plain_lines():
    lines = []
    stream = io.StringIO()  # not a terminal
    items = list(progress_bar(range(100), desc="patches", log=lines.append, stream=stream))
    assert items == list(range(100)) and stream.getvalue() == ""
    assert len(lines) == 10 and not any("\r" in line for line in lines)
    assert lines[0].startswith("patches: 10/100 (10%) in ")
    assert lines[-1].startswith("patches: 100/100 (100%)")


def test_progress_without_a_terminal_writes_a_line_every_30_seconds(monkeypatch):
    clock = iter(range(0, 1000, 20))  # 20 s per item
    monkeypatch.setattr(runrecord.time, "monotonic", lambda: next(clock))
    lines = []
    list(progress_bar(iter(range(4)), desc="", log=lines.append, stream=io.StringIO()))
    assert lines == ["2 in 40 s", "4 in 80 s"]  # the last line is not repeated


def test_progress_on_a_terminal_is_a_tqdm_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    lines, stream = [], Terminal()
    assert list(progress_bar(range(5), desc="images", log=lines.append, stream=stream)) == list(range(5))
    assert lines == [] and "\r" in stream.getvalue() and "images" in stream.getvalue()


# --- make-data records its run ---------------------------------------------------------------

TINY = ["--source-per-class", "1", "--trainval", "2", "--test", "1", "--scene-size", "64x48",
        "--source-size", "16", "--workers", "1"]


def test_make_data_records_its_run(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["make-data", "--out", str(out), *TINY]) == 0
    record = read(out)
    assert record["name"] == "make-data" and record["finished"] is not None
    assert record["settings"]["trainval"] == 2 and record["settings"]["scene_width"] == 64
    assert record["data"]["scenes"]["test"] == 1 and record["data"]["source_images"] == 30
    assert record["data"]["root"] == str(out) and "workers" in record["settings"]
    assert record["seconds"]["generate"] >= 0
    assert record["result"]["voc"] == os.path.join(out, "VOCdevkit")
    log = (out / "log.txt").read_text()
    assert "objects per class" in log and "\r" not in log
    capsys.readouterr()

    assert main(["make-data", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "holds a run of `minicnn make-data`" in err[0] and "--resume" in err[0]

    assert main(["make-data", "--out", str(out), *TINY, "--trainval", "4", "--resume"]) == 2
    assert "setting trainval: 2 -> 4" in capsys.readouterr().err

    assert main(["make-data", "--out", str(out), *TINY, "--resume"]) == 0
    assert len(read(out)["resumed"]) == 1 and read(out)["finished"] is not None

    for flag in ("--fresh", "--force"):  # --force still works
        assert main(["make-data", "--out", str(out), *TINY, "--trainval", "4", flag]) == 0
        assert read(out)["settings"]["trainval"] == 4 and read(out)["resumed"] == []

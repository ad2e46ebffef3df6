"""Runs that never lose or mix work: a run killed (SIGKILL) at any point and resumed ends
with the bytes of the uninterrupted run; a folder holding a run is refused without
--resume or --fresh; nonsense settings are refused in one line before any work; every
command's folder holds run.json and log.txt."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minicnn.cli import main
from minicnn.data.synthetic import DataConfig, generate

TINY = ["--model", "small", "--channels", "8,16,16,16,16", "--hidden", "24", "--batch-size", "32",
        "--workers", "1", "--backend", "numpy"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    generate(root / "data", DataConfig(source_per_class=12, trainval=8, test=5), workers=1)
    return root


def minicnn(*args, kill_after=None, delay=0.0, timeout=300):
    """Run ``python -m minicnn ARGS``; with ``kill_after`` (text, log file), SIGKILL it once
    the log holds that text (after ``delay`` seconds more). Returns the exit code."""
    process = subprocess.Popen([sys.executable, "-m", "minicnn", *map(str, args)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err
        return 0
    text, log = kill_after
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"finished before it could be killed at {text!r}"
    return process.returncode


def test_pretrain_killed_anywhere_resumes_to_the_uninterrupted_bytes(data, tmp_path):
    args = ["pretrain", "--data", data / "data" / "source", "--epochs", "3", *TINY]
    minicnn(*args, "--out", tmp_path / "straight")
    expected = (tmp_path / "straight" / "source.npz").read_bytes()
    for n, (text, delay) in enumerate([("per-channel mean", 0.0),       # before the first epoch
                                       ("pretrain epoch 1/3", 0.0),     # while checkpoint 1 is written
                                       ("pretrain epoch 2/3", 0.1)]):   # inside epoch 3
        out = tmp_path / f"killed{n}"
        minicnn(*args, "--out", out, kill_after=(text, out / "log.txt"), delay=delay)
        assert json.loads((out / "run.json").read_text())["finished"] is None
        minicnn(*args, "--out", out, "--resume")
        assert (out / "source.npz").read_bytes() == expected, text
        record = json.loads((out / "run.json").read_text())
        assert len(record["resumed"]) == 1 and record["finished"] is not None
    history = (tmp_path / "killed2" / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss") and len(history) == 4


@pytest.fixture(scope="module")
def source(data):
    out = data / "pre"
    minicnn("pretrain", "--data", data / "data" / "source", "--epochs", "1", *TINY, "--out", out)
    return out / "source.npz"


TRANSFER = ["--year", "2007", "--epochs", "3", "--hidden", "8", "--stride", "0.5", "--scales", "1,2",
            "--backend", "numpy", "--batch-size", "16"]


@pytest.mark.parametrize("variant, kill_at", [
    ("frozen", "features: "), ("frozen", "frozen epoch 1/3"), ("update-fc67", "update-fc67 epoch 2/3"),
    ("finetune", "finetune epoch 1/3"), ("scratch", "scratch epoch 2/3"),
    ("whole-image", "whole-image epoch 1/3")])
def test_transfer_killed_and_resumed_equals_the_uninterrupted_run(data, source, tmp_path, variant, kill_at):
    args = ["transfer", "--voc", data / "data" / "VOCdevkit", "--weights", source, "--variant", variant,
            *TRANSFER]
    minicnn(*args, "--out", tmp_path / "straight")
    out = tmp_path / "killed"
    minicnn(*args, "--out", out, kill_after=(kill_at, out / "log.txt"))
    minicnn(*args, "--out", out, "--resume")
    assert (out / "transfer.npz").read_bytes() == (tmp_path / "straight" / "transfer.npz").read_bytes()
    for f in sorted((tmp_path / "straight" / "results" / "VOC2007" / "Main").iterdir()):
        assert (out / "results" / "VOC2007" / "Main" / f.name).read_text() == f.read_text()
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["ap"] == straight["ap"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]


def test_a_folder_holding_a_run_is_refused_and_resume_names_what_differs(data, source, tmp_path, capsys):
    voc = data / "data" / "VOCdevkit"
    args = ["transfer", "--voc", str(voc), "--weights", str(source), "--out", str(tmp_path / "t"),
            *map(str, TRANSFER)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "holds a run of `minicnn transfer`" in capsys.readouterr().err
    assert main([*args, "--resume", "--lr", "0.5"]) == 2
    assert "setting train.lr: 0.01 -> 0.5" in capsys.readouterr().err
    import shutil

    shutil.copy(source, tmp_path / "other.npz")  # another file as the source: refused
    assert main([*args[:3], "--weights", str(tmp_path / "other.npz"), *args[5:], "--resume"]) == 2
    assert "was not an input of the run" in capsys.readouterr().err
    shutil.copy(source, source.with_suffix(".bak"))
    try:  # the same file with other contents: refused
        with open(source, "r+b") as f:
            f.seek(-1, 2)
            f.write(b"\1")
        assert main([*args, "--resume"]) == 2
        assert "has changed (sha256" in capsys.readouterr().err
    finally:
        shutil.move(source.with_suffix(".bak"), source)
    before = (tmp_path / "t" / "transfer.npz").read_bytes()
    assert main([*args, "--resume"]) == 0  # same settings: continues (nothing left to train)
    assert (tmp_path / "t" / "transfer.npz").read_bytes() == before
    assert main([*args, "--fresh", "--epochs", "1"]) == 0
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["settings"]["train"]["epochs"] == 1 and record["resumed"] == []
    assert len(json.loads((tmp_path / "t" / "summary.json").read_text())["history"]) == 1


@pytest.mark.parametrize("extra, message", [
    (["-k", "0"], "error: -k must be a number in (0, inf), got 0.0"),
    (["--stride", "0"], "--stride must be a number in (0, 0.5]"),
    (["--stride", "0.7"], "--stride must be a number in (0, 0.5]"),
    (["--scales", "1,0.5"], "--scales must be numbers >= 1"),
    (["--lr", "-1"], "--lr must be a number in (0, inf), got -1.0"),
    (["--epochs", "0"], "--epochs must be an integer in [1, inf), got 0"),
    (["--background", "0"], "--background must be a number in (0, 1]"),
    (["--hidden", "0"], "--hidden must be an integer in [1, inf), got 0"),
])
def test_nonsense_transfer_settings_fail_fast_before_any_cache(data, source, tmp_path, capsys, extra,
                                                               message):
    out = tmp_path / "t"
    started = time.perf_counter()
    code = main(["transfer", "--voc", str(data / "data" / "VOCdevkit"), "--weights", str(source), "--out",
                 str(out), *map(str, TRANSFER), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert time.perf_counter() - started < 5
    assert not out.exists()  # nothing written: no record, no cache


@pytest.mark.parametrize("extra, message", [
    (["--hidden", "0"], "--hidden must be an integer in [1, inf), got 0"),
    (["--epochs", "0"], "--epochs must be an integer in [1, inf), got 0"),
    (["--channels", "0,0,0,0,0"], "--channels needs 5 integer widths >= 1"),
    (["--channels", "8,8,8"], "--channels needs 5 integer widths >= 1"),
    (["--lr", "nan"], "--lr must be a number in (0, inf), got nan"),
])
def test_nonsense_pretrain_settings(data, tmp_path, capsys, extra, message):
    code = main(["pretrain", "--data", str(data / "data" / "source"), "--out", str(tmp_path / "p"), *TINY,
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("extra, message", [
    (["-k", "0"], "-k must be > 0, got 0.0"), (["--per-class", "0"], "--per-class must be >= 1, got 0"),
    (["--nms", "-1"], "--nms must be in [0, 1], got -1.0"), (["--top", "0"], "--top must be >= 1, got 0")])
def test_nonsense_localize_settings(tmp_path, capsys, extra, message):
    code = main(["localize", "--weights", str(tmp_path / "none.npz"), "--images", "x.jpg", "--out",
                 str(tmp_path / "l"), *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_out_naming_a_file_is_one_line(data, source, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args in (["pretrain", "--data", str(data / "data" / "source"), *TINY],
                 ["transfer", "--voc", str(data / "data" / "VOCdevkit"), "--weights", str(source),
                  *map(str, TRANSFER)]):
        assert main([*args, "--out", str(a_file)]) == 2
        assert "is a file; name a folder" in capsys.readouterr().err


def test_unreadable_images_are_all_named_before_any_work(data, source, tmp_path, capsys):
    import shutil

    voc = tmp_path / "VOCdevkit"
    shutil.copytree(data / "data" / "VOCdevkit", voc)
    images = sorted((voc / "VOC2007" / "JPEGImages").iterdir())
    for image in images[:2] + images[-1:]:
        image.write_bytes(b"not an image")
    args = ["transfer", "--voc", str(voc), "--weights", str(source), "--out", str(tmp_path / "t"),
            *map(str, TRANSFER)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "3 unreadable image(s)" in err and images[0].name in err and "--skip-bad" in err
    assert not (tmp_path / "t").exists()


def test_run_record_and_plain_log(data, source, tmp_path):
    out = tmp_path / "t"
    minicnn("transfer", "--voc", data / "data" / "VOCdevkit", "--weights", source, "--out", out, *TRANSFER)
    record = json.loads((out / "run.json").read_text())
    assert record["name"] == "transfer" and record["command"][1] == "transfer"
    assert record["settings"]["train"]["k"] == 5.0 and record["settings"]["stride_fraction"] == 0.5
    assert record["inputs"] == {str(source): __import__("hashlib").sha256(source.read_bytes()).hexdigest()}
    assert record["data"]["images"] == {"train": 6, "val": 2, "test": 5} and record["data"]["patches"] > 0
    assert record["data"]["root"] == str(data / "data" / "VOCdevkit")
    assert set(record["seconds"]) >= {"patches", "features", "training", "scoring"}
    summary = json.loads((out / "summary.json").read_text())
    assert record["result"]["map"] == summary["map"] and record["finished"] is not None
    log = (out / "log.txt").read_text()
    assert "\r" not in log and "frozen epoch 3/3" in log and "mean" in log
    assert oct(os.stat(out / "transfer.npz").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_pretrain_weights_resume_check_refuses_other_data_settings(data, tmp_path, capsys):
    args = ["pretrain", "--data", str(data / "data" / "source"), "--out", str(tmp_path / "p"), *TINY,
            "--epochs", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume", "--hidden", "32"]) == 2
    assert "setting hidden: 24 -> 32" in capsys.readouterr().err
    assert main([*args[:-1], "2", "--resume"]) == 0  # more epochs continue the run
    history = (tmp_path / "p" / "history.csv").read_text().splitlines()
    assert len(history) == 3
    assert np.isfinite(float(history[-1].split(",")[1]))


def test_a_cache_larger_than_the_free_disk_is_refused_before_it_is_built(data, source, tmp_path, capsys,
                                                                         monkeypatch):
    import shutil

    import minicnn.transfer.pipeline as pipeline

    real = shutil.disk_usage
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    out = tmp_path / "t"
    assert main(["transfer", "--voc", str(data / "data" / "VOCdevkit"), "--weights", str(source), "--out",
                 str(out), *map(str, TRANSFER)]) == 2
    err = capsys.readouterr().err
    assert "the feature cache needs" in err and "GB are free" in err and "--cache-dtype float16" in err
    assert not out.exists()  # refused before the run started: nothing to --fresh away


def test_the_free_disk_check_skips_only_the_very_cache_the_run_reuses(data, source, tmp_path, capsys,
                                                                     monkeypatch):
    import shutil

    import minicnn.transfer.pipeline as pipeline

    cache = tmp_path / "cache"
    args = ["transfer", "--voc", str(data / "data" / "VOCdevkit"), "--weights", str(source), "--cache",
            str(cache), *map(str, TRANSFER), "--epochs", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    real = shutil.disk_usage
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # the same cache: built, reused, needs no space
    capsys.readouterr()
    # the same cache stopped before its first image (its feature file still sparse) has all to write
    (folder,) = cache.iterdir()
    progress = json.loads((folder / "progress.json").read_text())
    features = np.load(folder / "features.npy", mmap_mode="r")
    shape, dtype = features.shape, features.dtype
    del features
    (folder / "features.npy").unlink()
    np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=dtype, shape=shape).flush()
    (folder / "progress.json").write_text(json.dumps({**progress, "done": 0}))
    assert main([*args, "--out", str(tmp_path / "stopped")]) == 2
    assert "the feature cache needs" in capsys.readouterr().err
    # another sampler gives a cache of the same layer under another key: it must be built, and does not fit
    other = [*args, "--out", str(tmp_path / "c")]
    other[other.index("--stride") + 1] = "0.4"
    assert main(other) == 2
    assert "the feature cache needs" in capsys.readouterr().err


def test_pretrain_skip_bad_leaves_unreadable_images_out_of_every_pass(data, tmp_path, capsys):
    import shutil

    src = tmp_path / "source"
    shutil.copytree(data / "data" / "source", src)
    broken = sorted((src / sorted(os.listdir(src))[0]).iterdir())[:2]
    for image in broken:
        image.write_bytes(b"\xff\xd8 truncated")
    args = ["pretrain", "--data", str(src), "--out", str(tmp_path / "p"), *TINY, "--epochs", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 unreadable image(s)" in err and broken[0].name in err and "--skip-bad" in err
    assert not (tmp_path / "p").exists()
    assert main([*args, "--skip-bad"]) == 0
    record = json.loads((tmp_path / "p" / "run.json").read_text())
    assert sorted(s["item"] for s in record["skipped"]) == sorted(map(str, broken))
    assert record["data"]["train"] + record["data"]["val"] == 30 * 12 - 2
    assert record["settings"]["list"] is None and record["settings"]["classes"] is None  # every setting


def test_a_demo_folder_refuses_other_settings(tmp_path, capsys, monkeypatch):
    from minicnn import demo

    monkeypatch.setattr(demo, "run_demo", lambda out, settings, record, resume: {"map": {}, "pretrain": None,
                                                                                 "seconds": 0.0})
    out = str(tmp_path / "demo")
    assert main(["demo", "--quick", "--backend", "numpy", "--out", out]) == 0
    assert main(["demo", "--quick", "--backend", "numpy", "--out", out]) == 0  # the same: reused
    assert main(["demo", "--quick", "--backend", "numpy", "--out", out, "--seed", "1"]) == 2
    assert "setting data.seed: 0 -> 1" in capsys.readouterr().err


def test_auto_cache_dtype_is_float16_above_the_threshold(data, source, tmp_path, monkeypatch):
    import minicnn.transfer.pipeline as pipeline

    dtypes = {}
    for name, threshold in (("small", 1 << 40), ("large", 0)):
        monkeypatch.setattr(pipeline, "AUTO_FLOAT16_BYTES", threshold)
        out = tmp_path / name
        assert main(["transfer", "--voc", str(data / "data" / "VOCdevkit"), "--weights", str(source),
                     "--out", str(out), *map(str, TRANSFER), "--epochs", "1"]) == 0
        (cache,) = (out / "cache").iterdir()
        dtypes[name] = np.load(cache / "features.npy", mmap_mode="r").dtype
        assert f"{dtypes[name]} chosen (--cache-dtype auto" in (out / "log.txt").read_text()
    assert dtypes == {"small": np.float32, "large": np.float16}

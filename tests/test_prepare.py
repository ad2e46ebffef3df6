"""`minicnn prepare`: sizes, the tree, resuming (nothing rewritten, a killed run continues),
bad images, refusals."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from minicnn import cli
from minicnn.data import prepare as prep

# source name -> (width, height, how it is saved)
IMAGES = {
    "cat/a.jpg": (500, 375, "jpeg"),
    "cat/b.png": (300, 600, "png"),
    "dog/c.jpg": (256, 300, "jpeg"),        # already the right size: copied
    "dog/grey.jpg": (100, 80, "grey"),      # smaller: enlarged; greyscale becomes RGB
    "dog/deep/d.jpeg": (1200, 800, "jpeg"),  # decoded at 1/2 first (draft)
    "dog/rotated.jpg": (400, 240, "exif6"),  # shown turned by 90 degrees: 240 x 400
}


def make_tree(root, rng, extra=()):
    for rel, (w, h, kind) in {**IMAGES, **dict(extra)}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h),
                                                                                       Image.BICUBIC)
        if kind == "png":
            coarse.save(path)
        elif kind == "grey":
            coarse.convert("L").save(path, quality=90)
        elif kind == "exif6":
            exif = Image.Exif()
            exif[0x0112] = 6
            coarse.save(path, quality=90, exif=exif)
        else:
            coarse.save(path, quality=90)
    (root / "notes.txt").write_text("not an image")
    return root


def prepare(*args):
    return cli.main(["prepare", *[str(a) for a in args]])


def outputs(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix != ".json"
                  and p.name != "log.txt" and not p.name.startswith("."))


def stats(out):
    return {rel: (os.stat(out / rel).st_mtime_ns, os.stat(out / rel).st_ino) for rel in outputs(out)}


def test_short_side_exactly_256_aspect_kept_tree_kept(tmp_path, rng):
    src = make_tree(tmp_path / "src", rng)
    out = tmp_path / "out"
    assert prepare("--data", src, "--out", out, "--workers", 2) == 0
    assert outputs(out) == ["cat/a.jpg", "cat/b.jpg", "dog/c.jpg", "dog/deep/d.jpeg", "dog/grey.jpg",
                            "dog/rotated.jpg"]
    want = {"cat/a.jpg": (341, 256), "cat/b.jpg": (256, 512), "dog/c.jpg": (256, 300),
            "dog/deep/d.jpeg": (384, 256), "dog/grey.jpg": (320, 256), "dog/rotated.jpg": (256, 427)}
    for rel, size in want.items():
        with Image.open(out / rel) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == size, rel
            assert min(im.size) == 256
            assert im.getexif().get(0x0112, 1) == 1  # turned upright, no orientation left
    # the one already of the right size keeps its bytes; the others look like their source
    assert (out / "dog/c.jpg").read_bytes() == (src / "dog/c.jpg").read_bytes()
    small = np.asarray(Image.open(src / "cat/a.jpg").resize((341, 256), Image.BICUBIC), np.float32)
    assert np.abs(np.asarray(Image.open(out / "cat/a.jpg"), np.float32) - small).mean() < 3.0
    record = json.loads((out / "run.json").read_text())
    assert record["name"] == "prepare" and record["finished"]
    assert record["result"] == {"written": 5, "copied": 1, "done_before": 0, "bad": 0, "removed_tmp": 0}
    assert record["settings"]["short_side"] == 256 and record["settings"]["quality"] == 90


def test_a_second_run_touches_nothing(tmp_path, rng):
    src = make_tree(tmp_path / "src", rng)
    out = tmp_path / "out"
    assert prepare("--data", src, "--out", out) == 0
    before = stats(out)
    assert prepare("--data", src, "--out", out) == 2  # a folder holding a run: --resume or --fresh
    assert prepare("--data", src, "--out", out, "--resume", "--workers", 1) == 0
    assert stats(out) == before  # same modification times, same files (no rename over them)
    record = json.loads((out / "run.json").read_text())
    assert record["result"]["written"] == 0 and record["result"]["done_before"] == len(IMAGES)
    assert len(record["resumed"]) == 1
    # a source changed since is made again, and only that one
    os.utime(src / "cat/a.jpg", ns=(before["cat/a.jpg"][0] + 10**9,) * 2)
    assert prepare("--data", src, "--out", out, "--resume") == 0
    after = stats(out)
    assert [rel for rel in before if after[rel] != before[rel]] == ["cat/a.jpg"]
    # --fresh makes every image again
    assert prepare("--data", src, "--out", out, "--fresh") == 0
    assert all(stats(out)[rel][1] != after[rel][1] for rel in after)


def test_a_killed_run_continues_and_ends_with_the_same_bytes(tmp_path, rng, monkeypatch):
    src = make_tree(tmp_path / "src", rng)
    whole = tmp_path / "whole"
    assert prepare("--data", src, "--out", whole, "--workers", 1) == 0
    out = tmp_path / "out"
    real, done = prep.prepare_one, []

    def killed_after_three(job):
        if len(done) == 3:  # the fourth image is being written when the run dies
            stale = os.path.join(os.path.dirname(job[1]), ".tmp-abcd-" + os.path.basename(job[1]))
            with open(stale, "wb") as f:
                f.write(b"\xff\xd8 half a JPEG")
            raise KeyboardInterrupt
        done.append(job)
        return real(job)

    monkeypatch.setattr(prep, "prepare_one", killed_after_three)
    assert prepare("--data", src, "--out", out, "--workers", 1) == 130
    monkeypatch.setattr(prep, "prepare_one", real)
    assert len(outputs(out)) == 3 and list(out.rglob(".tmp-*"))  # the partial state a kill leaves
    kept = stats(out)
    assert json.loads((out / "run.json").read_text())["finished"] is None
    assert prepare("--data", src, "--out", out, "--resume", "--workers", 2) == 0
    assert not list(out.rglob(".tmp-*"))
    assert outputs(out) == outputs(whole)
    for rel in outputs(whole):
        assert (out / rel).read_bytes() == (whole / rel).read_bytes(), rel
    assert all(stats(out)[rel] == kept[rel] for rel in kept)  # what was done stays untouched
    record = json.loads((out / "run.json").read_text())
    assert record["result"]["done_before"] == 3 and record["result"]["removed_tmp"] == 1


def test_processes_give_the_same_files(tmp_path, rng):
    src = make_tree(tmp_path / "src", rng)
    assert prepare("--data", src, "--out", tmp_path / "t", "--workers", 2) == 0
    assert prepare("--data", src, "--out", tmp_path / "p", "--workers", 2, "--pool", "process") == 0
    for rel in outputs(tmp_path / "t"):
        assert (tmp_path / "p" / rel).read_bytes() == (tmp_path / "t" / rel).read_bytes()


def test_bad_images_are_named_then_skipped_with_skip_bad(tmp_path, rng, capsys):
    src = make_tree(tmp_path / "src", rng)
    (src / "cat/broken.jpg").write_bytes(b"not a jpeg")
    good = src / "dog/c.jpg"
    (src / "dog/truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    out = tmp_path / "out"
    assert prepare("--data", src, "--out", out) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert not out.exists()  # refused before any work, and before the record is written
    assert prepare("--data", src, "--out", out, "--skip-bad") == 0
    record = json.loads((out / "run.json").read_text())
    skipped = sorted(os.path.basename(s["item"]) for s in record["skipped"])
    assert skipped == ["broken.jpg", "truncated.jpg"]  # the header is fine, the decode is not
    assert record["result"]["bad"] == 2 and record["data"]["bad"] == 2
    assert "cat/broken.jpg" not in outputs(out) and "dog/truncated.jpg" not in outputs(out)
    assert len(outputs(out)) == len(IMAGES)


@pytest.mark.parametrize("args,message", [
    (["--quality", "0"], "--quality"),
    (["--short-side", "0"], "--short-side"),
    (["--workers", "0"], "--workers"),
])
def test_settings_are_checked_before_any_work(tmp_path, rng, capsys, args, message):
    src = make_tree(tmp_path / "src", rng)
    assert prepare("--data", src, "--out", tmp_path / "out", *args) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_refusals(tmp_path, rng, capsys):
    src = make_tree(tmp_path / "src", rng)
    assert prepare("--data", src, "--out", src) == 2
    assert "source folder" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.jpg").write_bytes(b"")
    assert prepare("--data", src, "--out", other) == 2
    assert "no run of `minicnn prepare`" in capsys.readouterr().err
    (src / "cat/a.png").write_bytes((src / "cat/b.png").read_bytes())  # a.png and a.jpg -> a.jpg
    assert prepare("--data", src, "--out", tmp_path / "out") == 2
    assert "would both be written" in capsys.readouterr().err
    assert prepare("--data", tmp_path / "missing", "--out", tmp_path / "out") == 2


def test_target_size():
    assert prep.target_size(500, 375, 256) == (341, 256)
    assert prep.target_size(375, 500, 256) == (256, 341)
    assert prep.target_size(256, 256, 256) == (256, 256)
    assert prep.target_size(100, 1000, 256) == (256, 2560)


def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, rng):
    """A real kill: SIGKILL the command once a few outputs exist, then --resume."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src"
    many = {f"c{i % 3}/{i:03d}.jpg": (900, 600, "jpeg") for i in range(60)}
    make_tree(src, rng, extra=many)
    whole = tmp_path / "whole"
    assert prepare("--data", src, "--out", whole, "--workers", 1, "--pool", "thread") == 0
    out = tmp_path / "out"
    command = [sys.executable, "-m", "minicnn", "prepare", "--data", str(src), "--out", str(out), "--workers",
               "1", "--pool", "thread"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(outputs(out)) < 5 if out.exists() else True:
        assert proc.poll() is None and time.monotonic() < deadline, "finished before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 5 <= len(outputs(out)) < len(outputs(whole))
    assert json.loads((out / "run.json").read_text())["finished"] is None
    kept = stats(out)
    assert prepare("--data", src, "--out", out, "--resume", "--workers", 2) == 0
    assert outputs(out) == outputs(whole) and not list(out.rglob(".tmp-*"))
    for rel in outputs(whole):
        assert (out / rel).read_bytes() == (whole / rel).read_bytes(), rel
    assert all(stats(out)[rel] == kept[rel] for rel in kept)

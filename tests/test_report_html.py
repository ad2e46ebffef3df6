"""report.html: the page made from a run folder, checked against the folder's own files, and
in a real headless Chromium (skipped where none is installed)."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from minicnn.cli import main
from minicnn.errors import InputError
from minicnn.report_html import render, write_report_html

AP = {"transfer": {"lollipop": 0.25, "house": 0.75, "<kite>": 0.5},
      "scratch": {"lollipop": 0.125, "house": 0.5, "<kite>": 1.0}}


def _png(path, color, size=(40, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _run_folder(root, name="demo"):
    """A demo-like run folder: run.json, summary.json, report.md, plots and heat maps."""
    out = root / name
    out.mkdir()
    record = {"name": "demo", "command": ["minicnn", "demo", "--out", str(out)], "version": "0.1.0",
              "settings": {"transfer": {"train": {"k": 5.0, "epochs": 8}}, "backend": "cpu",
                           "scales": [1.0, 2.0]},
              "inputs": {"/data/source.npz": "ab" * 32}, "data": {"images": 14},
              "started": "2026-12-06T10:00:00+00:00", "finished": "2026-12-06T10:05:00+00:00", "resumed": [],
              "skipped": [{"item": "bad.jpg", "reason": "unreadable image"}],
              "seconds": {"data": 1.5, "pretrain": 20.25}, "result": {"map": {}}, "ranks": 1}
    (out / "run.json").write_text(json.dumps(record))
    maps = {v: float(np.mean(list(a.values()))) for v, a in AP.items()}
    (out / "summary.json").write_text(json.dumps({"map": maps, "ap": AP}))
    (out / "report.md").write_text("# minicnn demo\n\n| a | <b> |\n")
    _png(str(out / "plots" / "training.png"), "red")
    _png(str(out / "plots" / "transfer" / "cls_house_pr.png"), "green")
    _png(str(out / "plots" / "transfer" / "cls_summary.png"), "blue")
    _png(str(out / "heatmaps" / "000001.png"), "yellow", size=(64, 48))
    return out


def _images(page):
    return re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)


def _ap_rows(page):
    """{class: [cells]} of the AP-per-class table (the second sortable table)."""
    table = re.findall(r'<table class="sortable">(.*?)</table>', page, re.S)[1]
    body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        rows[cells[0]] = cells[1:]
    return rows


def test_page_holds_the_runs_figures_tables_and_settings(tmp_path):
    out = _run_folder(tmp_path)
    page = render(out)
    assert "<title>minicnn demo: demo</title>" in page
    # every PNG under plots/ and heatmaps/ is embedded byte for byte, named by its path
    embedded = {alt: base64.b64decode(data) for data, alt in _images(page)}
    files = {"plots/training.png", "plots/transfer/cls_house_pr.png", "plots/transfer/cls_summary.png",
             "heatmaps/000001.png"}
    assert set(embedded) == files
    for rel in files:
        assert embedded[rel] == (out / rel).read_bytes()
    # the per-class APs in % (the class name escaped), one column per variant, the mean below
    rows = _ap_rows(page)
    assert rows == {"lollipop": ["25.0", "12.5"], "house": ["75.0", "50.0"],
                    "&lt;kite&gt;": ["50.0", "100.0"]}
    mean = '<tr class="mean"><td>mean</td><td class="num">50.0</td><td class="num">54.2</td>'
    assert mean in page
    # settings flattened, inputs with their hash, stage times, skipped items, report.md verbatim
    assert "<code>transfer.train.k</code></td><td>5.0</td>" in page
    assert "<code>scales</code></td><td>1.0, 2.0</td>" in page
    assert "ab" * 32 in page and "/data/source.npz" in page
    assert '<code>pretrain</code></td><td class="num">20.2</td>' in page  # 20.25 as Python rounds it
    assert "<code>total</code></td><td class=\"num\">21.8</td>" in page
    assert "bad.jpg" in page and "unreadable image" in page
    assert "| a | &lt;b&gt; |" in page and "<b>" not in page
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r'(src|href)="(?!data:|#)', page)


def test_reproduce_and_localize_columns(tmp_path):
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "run.json").write_text(json.dumps({"name": "reproduce", "settings": {}, "inputs": {}}))
    (rep / "report.json").write_text(json.dumps({"runs": {
        "transfer": {"map": 46.0, "ap": {"a": 40.0, "b": 52.0}, "map_interval": [43.9, 50.4],
                     "map_seed_spread": 0.5, "paper": {"map": 78.7}}}}))
    page = render(rep)
    assert _ap_rows(page) == {"a": ["40.0"], "b": ["52.0"]}  # already in %: not scaled again
    assert "43.9 – 50.4" in page and "78.7" in page
    loc = tmp_path / "loc"
    loc.mkdir()
    (loc / "run.json").write_text(json.dumps({"name": "localize", "settings": {}, "inputs": {},
                                              "result": {"map": 0.3, "ap": {"a": 0.2, "b": 0.4},
                                                         "interval": [0.25, 0.375],
                                                         "whole_image": {"map": 0.15, "interval": [0.1, 0.2],
                                                                         "ap": {"a": 0.1, "b": 0.2}}}}))
    assert "<th>detection</th><th>whole image</th>" in render(loc)
    assert _ap_rows(render(loc)) == {"a": ["20.0", "10.0"], "b": ["40.0", "20.0"]}
    page = render(loc)
    assert "<th>95% interval</th>" in page and "25.0 – 37.5" in page and "10.0 – 20.0" in page


def test_a_folder_without_a_run_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(InputError, match=re.escape(str(tmp_path)) + ".*no run.json"):
        render(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path) in err and "Traceback" not in err
    assert not (tmp_path / "report.html").exists()


def test_report_command_writes_the_page(tmp_path):
    out = _run_folder(tmp_path)
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").read_text() == render(out)
    assert write_report_html(out) == os.path.join(out, "report.html")


# -- in a real browser --------------------------------------------------------------------

BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)

# After load: count the images that decoded, and sort the AP table by its first variant's column.
CHECK = """<script>window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.documentElement.setAttribute("data-images", ok.length + "/" + imgs.length);
  var ap = document.querySelectorAll("table.sortable")[1];
  ap.querySelectorAll("th")[1].click();
  document.documentElement.setAttribute("data-first", ap.tBodies[0].rows[0].cells[0].textContent);
});</script>"""


def _chromium(tmp_path, page_path, *args):
    profile = tmp_path / "profile"
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", *args, page_path.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _checked_page(tmp_path, page):
    path = tmp_path / "checked.html"
    path.write_text(page.replace("</body>", CHECK + "</body>"))
    dom = _chromium(tmp_path, path, "--dump-dom").stdout
    title = re.search(r"<title>(.*?)</title>", dom).group(1)
    images = re.search(r'data-images="(\d+)/(\d+)"', dom)
    first = re.search(r'data-first="([^"]*)"', dom)
    return title, (int(images.group(1)), int(images.group(2))), first.group(1)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_page_in_headless_chromium(tmp_path):
    out = _run_folder(tmp_path)
    path = write_report_html(out)
    title, (loaded, total), first = _checked_page(tmp_path, open(path).read())
    assert title == "minicnn demo: demo"
    assert total == 4 and loaded == total
    assert first == "lollipop"  # sorted by the transfer column, ascending: 25.0 first
    # the checker sees a figure that does not load
    broken = re.sub(r"base64,[^\"]{20}", "base64,AAAA", open(path).read(), count=1)
    assert _checked_page(tmp_path, broken)[1] == (3, 4)
    # and the screenshot shows the page: the size asked for, not a blank canvas
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, out / "report.html", f"--screenshot={shot}", "--window-size=900,1200")
    image = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("L"))
    assert image.shape == (1200, 900) and image.min() < 100 and image.max() > 200


def test_transfer_run_gets_its_curves_drawn_from_its_history_and_results(tmp_path):
    """A transfer run writes no plots: its page draws the training curves from summary.json
    and a precision/recall curve per evaluated class from its submission files."""
    from minicnn.data.synthetic import DataConfig, generate
    from minicnn.data.voc import VOCDataset
    from minicnn.evaluate import evaluate_voc, result_filename, write_cls_results

    generate(tmp_path / "data", DataConfig(source_per_class=1, trainval=2, test=6), workers=1)
    voc = tmp_path / "data" / "VOCdevkit"
    dataset = VOCDataset(voc, 2007)
    classes, ids = dataset.classes, dataset.image_ids("test")
    results = tmp_path / "t" / "results" / "VOC2007" / "Main"
    rng = np.random.default_rng(0)
    for c in classes[:3]:  # a run on three of the tree's classes (--classes)
        write_cls_results(results / result_filename("comp1", "cls", "test", c), ids, rng.random(len(ids)))
    report = evaluate_voc(VOCDataset(voc, 2007, classes=classes[:3]), "test", "cls", results)
    assert len(report.results) == 3
    out = tmp_path / "t"
    (out / "run.json").write_text(json.dumps({"name": "transfer", "inputs": {}, "settings": {
        "voc": str(voc), "year": 2007, "test_set": "test", "task": "cls", "metric": None}}))
    history = [{"epoch": 1, "loss": 2.0, "val_map": 0.4}, {"epoch": 2, "loss": 1.5, "val_map": 0.5}]
    (out / "summary.json").write_text(json.dumps({
        "variant": "frozen", "history": history, "results": str(results), "map": report.map,
        "ap": {c: r.ap for c, r in report.results.items()}}))
    page = render(out)
    captions = [alt for _, alt in _images(page)]
    assert captions[0] == "training (drawn from summary.json)"
    curves = sorted(a for a in captions if a.endswith("_pr.png (drawn from the results)"))
    assert curves == sorted(f"cls_{c}_pr.png (drawn from the results)" for c in report.results)
    assert "cls_summary.png (drawn from the results)" in captions
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data, _ in _images(page))
    # the tree gone: the page still comes, and says why the curves are missing
    shutil.rmtree(voc)
    page = render(out)
    assert "precision/recall curves not drawn" in page and len(_images(page)) == 1


def test_localize_writes_its_page_at_the_end_of_the_run(tmp_path):
    """The command's one-line hook: a finished run leaves report.html beside its results,
    with its heat maps embedded."""
    import minicnn as mc

    mc.set_backend("numpy")
    mc.seed(0)
    source = mc.models.small_alexnet(4, channels=(4, 4, 4, 4, 4), hidden=8)
    net = mc.models.transfer_net(source, 3, hidden=8)
    net.meta.update(target_classes=["a", "b"], k=5.0, scales=[1.0], stride_fraction=0.5, task="cls")
    net.save(tmp_path / "t.npz")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
        tmp_path / "x.jpg")
    out = tmp_path / "loc"
    assert main(["localize", "--weights", str(tmp_path / "t.npz"), "--images", str(tmp_path / "x.jpg"),
                 "--out", str(out), "--backend", "numpy"]) == 0
    page = (out / "report.html").read_text()
    assert "<title>minicnn localize: loc</title>" in page
    assert [alt for _, alt in _images(page)] == ["heatmaps/x.png"]

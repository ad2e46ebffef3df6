"""``minicnn bench`` end to end on a tiny run: every figure is there and is plausible."""

import json
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
from minicnn import bench, cli

pytest.importorskip("numba")


@pytest.fixture
def restore_threads():
    """The bench sets thread counts for the whole process: put them back afterwards."""
    import numba
    import threadpoolctl

    numba_threads, blas = numba.get_num_threads(), threadpoolctl.threadpool_info()
    yield
    numba.set_num_threads(numba_threads)
    for lib in blas:
        threadpoolctl.threadpool_limits(limits=lib["num_threads"], user_api=lib["user_api"])


def test_bench_writes_every_figure(tmp_path, capsys, restore_threads):
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "--model", "small", "--batch", "2", "--repeats", "2", "--warmup", "0",
                     "--threads", "1", "--no-torch", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "BLAS:" in printed and "threads:" in printed and "numba first call" in printed
    assert report["threads"]["numba"] == 1 and report["threads"]["blas"][0] == 1
    assert report["environment"]["blas"] and report["environment"]["blas"][0]["internal_api"]
    first = report["numba_first_call"]["small"]
    assert first["compiled"] + first["loaded_from_cache"] > 0 or first["first_call_s"] >= 0
    (run,) = report["runs"]
    assert run["model"] == "small" and run["batch"] == 2
    for figure in ("forward", "train"):
        for backend in ("numpy", "cpu"):
            entry = run["figures"][figure][backend]
            assert len(entry["times_s"]) == 2 and entry["images_per_s"] > 0
        assert run["ratios"][figure]["cpu/numpy"] > 0
    assert set(run["layers"]["cpu"]) == set(bench.build_model("small").names)
    assert all(v["forward_ms"] >= 0 for v in run["layers"]["cpu"].values())
    (memory,) = report["memory"]
    for backend in ("numpy", "cpu"):
        m = memory["contenders"][backend]
        # at least the parameters, their gradients and momentum (float32) were resident
        params = sum(p.size for _, p, _ in bench.build_model("small").named_params()) * 4 / 2**20
        assert m["training_mb"] > 2 * params and m["peak_mb"] >= m["training_mb"]


def test_bench_rejects_bad_settings(capsys):
    assert cli.main(["bench", "--repeats", "0", "--no-torch"]) == 2
    assert "--repeats" in capsys.readouterr().err


def test_torch_model_computes_the_same_as_ours(rng):
    torch = pytest.importorskip("torch")
    net = mc.models.tiny_alexnet(num_classes=4, input_size=13, dtype=np.float32)
    x = rng.standard_normal((2, 3, 13, 13)).astype(np.float32)
    model = bench.torch_model(net).eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x, train=False), expected, rtol=1e-4, atol=1e-5)


def test_memory_probe_imports_this_minicnn_from_a_folder_holding_a_clone(tmp_path, monkeypatch):
    """Run from the folder that holds a clone named minicnn (a namespace package to
    ``python -m``), the probe's subprocess still imports the minicnn this process runs."""
    repo = Path(__file__).resolve().parent.parent
    (tmp_path / "minicnn").symlink_to(repo, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    memory = bench.measure_memory(["numpy"], "small", 2, 1)["numpy"]
    assert memory["training_mb"] > 0 and memory["peak_mb"] >= memory["training_mb"]

"""experiments/gpu_bench.py (--smoke: tiny net in Numba's simulator) and host_profile.py run
end to end, so the scripts a GPU session will run have had their code paths checked here."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "experiments" / "gpu_bench.py"


def test_gpu_bench_smoke_run_writes_its_report(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, str(BENCH), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["simulated"] is True
    train = result["train"]["2"]["ours"]
    assert train["images_per_s"] > 0 and train["loss"] > 0
    assert result["fc7"]["ours"]["feature_dim"] == 8  # tiny_alexnet's fc7 width
    assert "target fc7" in run.stdout
    assert result["convolutions"] == {"conv1": "winograd F(4x4, 3x3)", "conv2": "winograd F(4x4, 3x3)"}
    if importlib.util.find_spec("torch") is not None:  # the PyTorch twin computes the same net
        assert result["fc7"]["torch"]["patches_per_s"] > 0
        assert result["logits_max_rel_diff_vs_torch"] < 1e-4


def test_gpu_bench_can_run_every_convolution_through_im2col(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, str(BENCH), "--smoke", "--no-torch", "--convolutions", "im2col",
                          "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(out.read_text())["convolutions"] == {"conv1": "im2col", "conv2": "im2col"}
    assert "our convolutions: conv1 im2col, conv2 im2col" in run.stdout


def test_gpu_bench_refuses_to_time_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2
    assert "simulator" in run.stderr and "--smoke" in run.stderr


def test_host_profile_lists_where_a_step_spends_host_time(tmp_path):
    out = tmp_path / "profile.txt"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    script = BENCH.parent / "host_profile.py"
    run = subprocess.run([sys.executable, str(script), "--backend", "cuda", "--model", "tiny", "--batch", "2",
                          "--steps", "1", "--warmup", "0", "--top", "60", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    report = out.read_text()
    assert report.startswith("tiny batch 2 on cuda (simulated): host")
    assert "--- by tottime ---" in report and "--- by cumulative ---" in report
    assert "launch.py" in report  # the cuda kernel launches are among the step's calls

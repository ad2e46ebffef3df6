"""What ``minicnn bench`` reports (the measuring is in :mod:`minicnn.bench`): the machine and
libraries it ran on, the ratios of the figures, the printed tables and the JSON file."""

from __future__ import annotations

import os
import sys

import numpy as np

from minicnn import atomic

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")


def environment() -> dict:
    """Versions, CPU, BLAS library and kernel, threading layers and BLAS-related variables."""
    import numba
    import threadpoolctl

    env = {
        "python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
        "blas": [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                          "threading_layer", "filepath")}
                 for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"],
        "numba_threading_layer": _numba_threading_layer(),
        "variables": {k: os.environ.get(k) for k in BLAS_ENV},
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        config = torch.__config__.show()
        env["torch"] = {"version": torch.__version__,
                        "blas": _config_value(config, "BLAS_INFO"),
                        "mkldnn": torch.backends.mkldnn.is_available(),
                        "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _numba_threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not started"


def _config_value(config: str, key: str):
    for part in config.replace("\n", ",").split(","):
        if part.strip().startswith(key + "="):
            return part.split("=", 1)[1].strip()
    return None


def ratios(figures: dict) -> dict:
    """images/s ratios: each backend over PyTorch, and every backend over "numpy"."""
    ratios = {}
    for figure, per in figures.items():
        r = {}
        for name, v in per.items():
            if name != "torch" and "torch" in per:
                r[f"{name}/torch"] = v["images_per_s"] / per["torch"]["images_per_s"]
            if name not in ("numpy", "torch") and "numpy" in per:
                r[f"{name}/numpy"] = v["images_per_s"] / per["numpy"]["images_per_s"]
        ratios[figure] = r
    return ratios


def print_header(report):
    env = report["environment"]
    print(f"minicnn bench: {env['cpu']} ({env['cpu_count']} CPUs), python {env['python']}, "
          f"numpy {env['numpy']}, numba {env['numba']} ({env['numba_threading_layer']} threads)")
    for lib in env["blas"]:
        print(f"BLAS: {lib['internal_api']} {lib['version']}, kernel {lib['architecture']}, "
              f"{lib['num_threads']} threads ({lib['threading_layer']})")
    if "torch" in env:
        t = env["torch"]
        print(f"PyTorch {t['version']}: BLAS {t['blas']}, oneDNN {'on' if t['mkldnn'] else 'off'}, "
              f"{t['cpu_capability']}")
    print("threads: " + ", ".join(f"{k} {v}" for k, v in report["threads"].items()))
    set_vars = {k: v for k, v in env["variables"].items() if v is not None}
    print("variables: " + (", ".join(f"{k}={v}" for k, v in set_vars.items())
                           or "none of " + ", ".join(BLAS_ENV)))
    for model, c in report.get("numba_first_call", {}).items():
        counts = (f"{c['compiled']} specialisations compiled, {c['loaded_from_cache']} loaded from cache"
                  if c["compiled"] + c["loaded_from_cache"] else "kernels already loaded")
        print(f"numba first call ({model}, reported apart): {c['seconds']:.2f} s ({counts})")
    print(f"each figure: median of {report['repeats']} interleaved rounds after {report['warmup']} warm-up")


def print_run(entry):
    print(f"\n{entry['model']}, batch {entry['batch']}")
    for backend, algorithms in entry.get("convolutions", {}).items():
        groups = {}
        for layer, algorithm in algorithms.items():
            groups.setdefault(algorithm, []).append(layer)
        print(f"  {backend} convolutions: " + "; ".join(f"{a} ({', '.join(ls)})" for a, ls in groups.items()))
    names = list(entry["figures"]["forward"])
    print(f"  {'':10}" + "".join(f"{n:>12}" for n in names) + "   ratios (images/s)")
    for figure, per in entry["figures"].items():
        ratios = "  ".join(f"{k} {v:.2f}" for k, v in entry["ratios"][figure].items())
        print(f"  {figure + ' img/s':10}" + "".join(f"{per[n]['images_per_s']:12.1f}" for n in names)
              + f"   {ratios}")
    if "layers" in entry:
        layers = entry["layers"]
        print(f"\n  per layer, ms (forward / backward, median of {len(names)}-way interleaved steps)")
        print(f"  {'layer':10}" + "".join(f"{n:>20}" for n in layers))
        first = next(iter(layers.values()))
        totals = {n: [0.0, 0.0] for n in layers}
        for layer in first:
            cells = []
            for n in layers:
                f, b = layers[n][layer]["forward_ms"], layers[n][layer]["backward_ms"]
                totals[n][0] += f
                totals[n][1] += b
                cells.append(f"{f:9.1f} /{b:8.1f}")
            print(f"  {layer:10}" + "".join(f"{c:>20}" for c in cells))
        print(f"  {'sum':10}" + "".join(f"{t[0]:9.1f} /{t[1]:8.1f}".rjust(20) for t in totals.values()))


def print_memory(memory):
    print(f"\npeak memory of a training step, {memory['model']} batch {memory['batch']} "
          "(fresh process each; MB above the post-import baseline, and peak RSS)")
    for name, m in memory["contenders"].items():
        ratio = memory.get("ratios", {}).get(f"{name}/torch")
        print(f"  {name:8} {m['training_mb']:9.0f} MB  (peak RSS {m['peak_mb']:.0f} MB)"
              + (f"   {name}/torch {ratio:.2f}" if ratio else ""))


def write_json(report: dict, path):
    """Every figure, every timed run and the environment, as JSON."""
    atomic.write_json(path, report)
    print(f"\nwrote {path}")

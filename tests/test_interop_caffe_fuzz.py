"""The Caffe readers fuzzed (issue 26): prototxt text, caffemodel bytes and Deep Compression
bytes, mutated from good files. The property: the import returns a network, or raises an
InputError that names one of its files in printable text; never another exception, never a
hang (a small, fixed budget in the suite; ``MINICNN_FUZZ_EXAMPLES=2000`` runs that many
fresh examples per reader)."""

import os

import numpy as np
import pytest

pytest.importorskip("google.protobuf")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_deep_compression import CHAIN, chain_params, encode  # noqa: E402
from test_interop_caffe import caffemodel  # noqa: E402
from test_interop_caffe_dag import random_params, small_dag  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn import interop  # noqa: E402
from minicnn.errors import InputError  # noqa: E402

EXAMPLES = int(os.environ.get("MINICNN_FUZZ_EXAMPLES", "40"))
# the suite's small run is the same every time; a larger one explores afresh
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize="MINICNN_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOKENS = st.sampled_from(["0", "1", "3", "99999", "4294967295", "-1", "2.5", " ", "\n", "{", "}", ":", '"',
                          "layer", "bottom", "top", "name", "type", "Concat", "Eltwise", "Convolution",
                          "pad", "kernel_size", "num_output", "stride", "group", "global_pooling: true",
                          "axis", "operation: MAX", "data", "\u00e9", "\x00", "\xff"])


def mutate_text(data, text):
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 12)))
        text = text[:start] + "".join(data.draw(st.lists(TOKENS, max_size=3))) + text[end:]
    return text


def mutate_bytes(data, blob):
    blob = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[at] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del blob[at:at + data.draw(st.integers(1, 16))]
        elif kind == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del blob[at:]
    return bytes(blob)


def check(prototxt, weights, **kw):
    try:
        net = interop.from_caffe(prototxt, **kw)
    except InputError as e:
        message = str(e)
        assert message.isprintable(), message
        names = {os.path.basename(prototxt), os.path.basename(kw.get("caffemodel") or kw["deep_compression"])}
        assert any(name in message for name in names), message
        return None
    assert isinstance(net, mc.Sequential)
    return net


def dag_files(tmp_path):
    text, shapes, _ = small_dag("nested split")
    params = random_params(np.random.default_rng(0), shapes)
    model = caffemodel([(n, "Convolution", list(p)) for n, p in params.items()], v1=False)
    return text, model


@FUZZ
@given(data=st.data())
def test_mutated_prototxts(tmp_path, data):
    text, model = dag_files(tmp_path)
    (tmp_path / "m.caffemodel").write_bytes(model)
    (tmp_path / "d.prototxt").write_text(mutate_text(data, text), encoding="utf-8")
    check(tmp_path / "d.prototxt", None, caffemodel=tmp_path / "m.caffemodel")


@FUZZ
@given(data=st.data())
def test_mutated_caffemodels(tmp_path, data):
    text, model = dag_files(tmp_path)
    (tmp_path / "d.prototxt").write_text(text)
    (tmp_path / "m.caffemodel").write_bytes(mutate_bytes(data, model))
    net = check(tmp_path / "d.prototxt", None, caffemodel=tmp_path / "m.caffemodel")
    if net is not None:  # a mutation the format cannot see (a float's bits): the shapes stand
        assert net.shapes()[-1] == (8,)


@FUZZ
@given(data=st.data())
def test_mutated_deep_compression_files(tmp_path, data):
    params = chain_params(np.random.default_rng(0))
    good = encode([(*params["conv1"], 8), (*params["fc2"], 4)])
    (tmp_path / "deploy.prototxt").write_text(CHAIN)
    (tmp_path / "w.net").write_bytes(mutate_bytes(data, good))
    net = check(tmp_path / "deploy.prototxt", None, deep_compression=tmp_path / "w.net")
    if net is not None:
        assert net.shapes()[-1] == (7,)

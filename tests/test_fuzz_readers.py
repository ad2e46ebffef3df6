"""Readers of outside files fuzzed with Hypothesis (issue 26): on any input a correct result
or an InputError naming the file; never another exception, a hang or a write. A small budget
here (about a second per reader); experiments/fuzz.py runs the same properties for longer."""

import tempfile
from pathlib import Path

import pytest
from fuzz_readers import inputs, outcome, readers
from hypothesis import HealthCheck, given, settings

EXAMPLES = 40


@pytest.mark.parametrize("reader", readers(), ids=lambda r: r.name)
def test_a_reader_reads_its_file_or_refuses_it_by_name(reader):
    with tempfile.TemporaryDirectory() as tmp:
        path = reader.setup(Path(tmp))
        valid = path.read_bytes()
        result = reader.read(path)  # the valid file: a correct result
        if reader.check:
            reader.check(result)
        assert outcome(reader, path, valid)[0] == "ok"

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(inputs(valid))
        def holds(data):
            kind, message = outcome(reader, path, data)
            assert kind != "failure", message

        holds()

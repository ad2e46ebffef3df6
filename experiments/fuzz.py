"""Fuzz every reader of outside files for longer than the test suite does (issue 26).

The same readers and property as tests/test_fuzz_readers.py (tests/fuzz_readers.py): on
any input a correct result or an InputError naming the file in printable text; never
another exception, a hang or a write. Each reader gets ``--seconds`` of Hypothesis inputs
(no shrinking: every failure is kept as found); prints a tally per reader (inputs tried,
read, refused, failures) and each distinct failure with the smallest input that gave it.

    python experiments/fuzz.py --seconds 20
    python experiments/fuzz.py --seconds 60 --reader "COCO JSON"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_readers import inputs, outcome, readers  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402


class _Stop(Exception):
    pass


def fuzz(reader, seconds, seed):
    """{"tried", "ok", "refused", "failures": {kind: (count, smallest input)}} of one reader."""
    tally = {"tried": 0, "ok": 0, "refused": 0, "failures": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = reader.setup(Path(tmp))
        valid = path.read_bytes()
        end = time.monotonic() + seconds

        @settings(max_examples=10**9, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(inputs(valid))
        def one(data):
            if time.monotonic() > end:
                raise _Stop
            kind, message = outcome(reader, path, data)
            tally["tried"] += 1
            if kind == "failure":
                key = message.split(":")[0] + ": " + message.split(":", 1)[-1][:80]
                count, smallest = tally["failures"].get(key, (0, data))
                tally["failures"][key] = (count + 1, min(smallest, data, key=len))
            else:
                tally[kind] += 1

        try:
            hypothesis_seed(seed)(one)()
        except _Stop:
            pass
    return tally


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="time per reader (default: %(default)s)")
    parser.add_argument("--reader", action="append", help="only the readers of these names (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default: %(default)s)")
    args = parser.parse_args(argv)
    chosen = [r for r in readers() if not args.reader or r.name in args.reader]
    totals = {"tried": 0, "failures": 0}
    print(f"{'reader':<32} {'inputs':>7} {'read':>6} {'refused':>8} {'failures':>9}")
    found = []
    for reader in chosen:
        t = fuzz(reader, args.seconds, args.seed)
        failures = sum(count for count, _ in t["failures"].values())
        totals["tried"] += t["tried"]
        totals["failures"] += failures
        print(f"{reader.name:<32} {t['tried']:>7} {t['ok']:>6} {t['refused']:>8} {failures:>9}", flush=True)
        found += [(reader.name, key, count, data) for key, (count, data) in t["failures"].items()]
    print(f"{len(chosen)} readers, {totals['tried']} inputs, {totals['failures']} failures "
          f"({len(found)} distinct)")
    for name, key, count, data in found:
        print(f"- {name}: {key} ({count}x); smallest input {data[:200]!r}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

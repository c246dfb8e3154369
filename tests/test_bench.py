"""The benchmark command runs every benchmark on tiny generated data and reports them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from brainkd import bench

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HEADER = ["benchmark", "figure", "value", "target", "result", "note"]


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "bench.json"
    command = [sys.executable, "-m", "brainkd.bench", "--quick", "--output", str(output)]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout, json.loads(output.read_text())


def test_table_lists_every_benchmark(quick_bench):
    stdout, _ = quick_bench
    lines = stdout.splitlines()
    assert lines[0].split() == HEADER
    for name in bench.BENCHMARKS:
        assert any(line.startswith(f"{name} ") for line in lines[2:]), name


def test_record_holds_every_benchmark(quick_bench):
    _, record = quick_bench
    assert {row["benchmark"] for row in record["rows"]} == set(bench.BENCHMARKS)
    assert record["machine"]["cores"] >= 1


def test_targets_have_verdicts(quick_bench):
    _, record = quick_bench
    targeted = [row for row in record["rows"] if row["target"]]
    assert {row["benchmark"] for row in targeted} == {"cache", "loader", "distill", "inference"}
    assert all(isinstance(row["passed"], bool) for row in targeted)
    assert record["targets_missed"] == [row["figure"] for row in targeted if not row["passed"]]


def test_unknown_benchmark_rejected():
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench.main(["--only", "cache,speed", "--quick"])

"""Two CPU processes (gloo) give the same step as one process with the same global batch.

DDP runs TopoTrainer itself under ``torchrun`` (with and without gradient accumulation); FSDP2 runs
TopoTrainer's ``training_step`` on parameters sharded by ``torch.distributed.fsdp.fully_shard``
(accelerate turns FSDP on only on GPUs). The workers import this checkout (dist_worker asserts it).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dist_worker

WORKER = Path(__file__).with_name("dist_worker.py")
CHECKOUT = Path(__file__).resolve().parents[2]


def torchrun(out: Path, mode: str, worker: Path = WORKER, extra: tuple = ()) -> str:
    """Run ``worker OUT MODE *extra`` on 2 gloo ranks; returns their stdout. The checkout comes first on the path."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker), str(out),
           mode, *map(str, extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(CHECKOUT), str(CHECKOUT / "tests")])}
    # its own process group, so that a hung run is killed with its workers, not left behind
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out_text, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"torchrun {mode} did not finish in 240 s")
    assert proc.returncode == 0, err[-3000:]
    return out_text


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp_ga", "fsdp2"])
def test_two_processes_equal_one(tmp_path, mode):
    reference = "single" if mode.startswith("ddp") else "single_even"  # fsdp2's batch has no padded labels
    dist_worker.main(str(tmp_path / "one.safetensors"), reference)
    dist_worker.main(str(tmp_path / "zero.safetensors"), reference, tau=0.0)
    torchrun(tmp_path / "two.safetensors", mode)
    one, two, zero = (load_file(tmp_path / f"{k}.safetensors") for k in ("one", "two", "zero"))
    assert one.keys() == two.keys() and len(one) == 4
    for name in one:
        assert rel(two[name], one[name]) < 1e-6, name
        if name.endswith("weight"):  # the check is sensitive: without the term the step differs
            assert rel(zero[name], one[name]) > 1e-4, name
    # BLiMP with sequences shared out across the 2 ranks (FSDP2: on the sharded model) = one process
    blimp = json.loads((tmp_path / "two.safetensors.blimp.json").read_text())
    ranks, single = blimp["ranks"], blimp["one"]
    scored = [json.loads((tmp_path / f"two.safetensors.scored{r}.json").read_text()) for r in (0, 1)]
    assert all(len(s) == 1 and s[0] > 0 for s in scored)  # each rank scored a share, once
    sentences = 2 * len(dist_worker.SUBJECTS) * len(dist_worker.BLIMP_UIDS)  # all distinct
    assert scored[0][0] + scored[1][0] == sentences  # shared out, none scored twice
    assert ranks["paradigms"] == single["paradigms"] and ranks["overall"] == single["overall"]
    for uid, rows in single["pairs"].items():
        for a, b in zip(ranks["pairs"][uid], rows):
            assert a["ll_good"] == pytest.approx(b["ll_good"], abs=1e-5) and a["ll_bad"] == pytest.approx(b["ll_bad"], abs=1e-5)
    if mode == "ddp_ga":  # through TopoTrainer.evaluate: BLiMP loaded by rank 0 only, the same metrics on both ranks
        per_rank = [json.loads((tmp_path / f"two.safetensors.rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["loads"] for r in per_rank] == [1, 0]
        assert per_rank[0]["metrics"] == per_rank[1]["metrics"]
        assert per_rank[0]["metrics"]["eval_blimp_overall"] == single["overall"]


def test_worker_reference_is_deterministic(tmp_path):
    dist_worker.main(str(tmp_path / "a.safetensors"), "single")
    dist_worker.main(str(tmp_path / "b.safetensors"), "single")
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

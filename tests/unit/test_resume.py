"""Resumable training: a training killed mid-run continues from its last epoch state and
ends with the same bytes as an uninterrupted run; a stale or foreign state is ignored."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from fillrobust.train.resume import paths
from fillrobust.train.run import run_training
from tests.unit.test_train import _split

# Every source of randomness the loop uses: the sampler's generator (balanced
# sampling, mirroring), torch's global one (PGD random start), Adam's state,
# a step schedule, and the best-validation copy of the weights.
PARAMS = {"init": "scratch", "lr": 0.002, "epochs": 12, "batch_size": 8, "momentum": 0.9, "weight_decay": 1e-4,
          "balanced_sampling": True, "channels_last": True, "hflip": True, "optimizer": "adam",
          "schedule": "step", "lr_milestones": [0.5, 0.75], "lr_gamma": 0.1, "keep": "best_val",
          "adversarial": {"norm": "l2", "eps": 0.5, "eps_scale": 1.0, "steps": 1, "step_factor": 2.5,
                          "random_start": True, "bn_mode": "eval"}}


def _command(data: Path, split: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fillrobust", "train", "--dataset", str(data), "--split", str(split),
            "--split-name", "S1", "--strategy", "AT", "--seed", "3", "--params", json.dumps(PARAMS),
            "--device", "cpu", "--threads", "1", "--out", str(out)]


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_ccm):
    data, split = tiny_ccm / "crops", _split(tmp_path, tiny_ccm / "crops")
    reference = tmp_path / "ref" / "model.safetensors"
    subprocess.run(_command(data, split, reference), check=True, capture_output=True)
    assert not paths(reference)[0].exists(), "a finished run keeps no epoch state"

    out = tmp_path / "killed" / "model.safetensors"
    # its own process (no fork server): the kill then stops the training at once, so the
    # epoch state read below is the last one written
    proc = subprocess.Popen(_command(data, split, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ, FILLROBUST_FORKSERVER="0"))
    state = paths(out)[1]
    deadline = time.monotonic() + 300
    while not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    killed_after = json.loads(state.read_text())["epoch"]

    rerun = subprocess.run(_command(data, split, out), check=True, capture_output=True, text=True)
    assert f"resume: continuing after epoch {killed_after}" in rerun.stdout
    redone = [int(e) for e in re.findall(r"^epoch=(\d+) ", rerun.stdout, re.M)]
    assert redone == list(range(killed_after + 1, PARAMS["epochs"] + 1)), redone  # at most one epoch lost
    assert out.read_bytes() == reference.read_bytes()
    assert out.with_suffix(".json").read_bytes() == reference.with_suffix(".json").read_bytes()
    assert not paths(out)[0].exists() and not paths(out)[1].exists()


def test_state_of_another_run_is_ignored(tmp_path, tiny_ccm):
    """Changed parameters: the old epoch state is not resumed (training starts over) and is replaced."""
    data, split = tiny_ccm / "crops", _split(tmp_path, tiny_ccm / "crops")
    short = {k: v for k, v in PARAMS.items() if k != "adversarial"} | {"epochs": 2, "keep": "last"}
    out = tmp_path / "m" / "model.safetensors"
    tensors, meta = paths(out)
    out.parent.mkdir()
    tensors.write_bytes(b"not a safetensors file")
    meta.write_text(json.dumps({"format": 1, "fingerprint": "other", "epoch": 1}))
    run_training(str(data), str(split), "ST", short, 0, str(out), "cpu", 1, "S1")
    fresh = tmp_path / "fresh" / "model.safetensors"
    run_training(str(data), str(split), "ST", short, 0, str(fresh), "cpu", 1, "S1")
    assert out.read_bytes() == fresh.read_bytes()
    assert not tensors.exists() and not meta.exists()


def test_a_kill_between_the_two_files_leaves_a_consistent_state(tmp_path):
    """The tensor file alone is the state (metadata in its header): a kill after its rename and
    before the JSON's leaves epoch 2's weights with epoch 2's epoch count, not epoch 1's."""
    from fillrobust.train.resume import load, save

    def objects():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0), torch.Generator()

    model, optimizer, scheduler, generator = objects()
    base = tmp_path / "model.safetensors"
    common = {"fingerprint": "f", "optimizer": optimizer, "scheduler": scheduler, "generator": generator,
              "best_val": -float("inf"), "best_state": None}
    save(base, epoch=1, model=model, history=[{"epoch": 1}], **common)
    stale = paths(base)[1].read_text()
    with torch.no_grad():
        model.weight.add_(1.0)
    save(base, epoch=2, model=model, history=[{"epoch": 1}, {"epoch": 2}], **common)
    paths(base)[1].write_text(stale)  # as if killed between the two renames
    fresh, fresh_opt, fresh_sched, fresh_gen = objects()
    resumed = load(base, fingerprint="f", model=fresh, optimizer=fresh_opt, scheduler=fresh_sched,
                   generator=fresh_gen)
    assert resumed.epoch == 2 and len(resumed.history) == 2
    assert torch.equal(fresh.weight, model.weight)

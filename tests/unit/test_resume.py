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
import types
from pathlib import Path

import pytest
import torch

from fillrobust.train.resume import paths
from fillrobust.train.run import run_training
from tests.unit.test_train import _split

# Every source of randomness the loop uses: the sampler's generator (balanced
# sampling, mirroring), torch's global one (PGD random start), Adam's state,
# a step schedule, and the best-validation copy of the weights. The quarter-width network (as
# the tiny run's): resuming does not depend on the width, and the file runs in 17 s instead of 76.
PARAMS = {"init": "scratch", "arch": "resnet18_quarter", "lr": 0.002, "epochs": 12, "batch_size": 8,
          "momentum": 0.9, "weight_decay": 1e-4,
          "balanced_sampling": True, "channels_last": True, "hflip": True, "optimizer": "adam",
          "schedule": "step", "lr_milestones": [0.5, 0.75], "lr_gamma": 0.1, "keep": "best_val",
          "adversarial": {"norm": "l2", "eps": 0.5, "eps_scale": 1.0, "steps": 1, "step_factor": 2.5,
                          "random_start": True, "bn_mode": "eval"}}


@pytest.fixture(autouse=True)
def _state_every_epoch(monkeypatch):
    """These tests are about the states themselves: one after every epoch, however short."""
    monkeypatch.setenv("FILLROBUST_RESUME_EVERY_S", "0")


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


def _record_states(monkeypatch) -> list[int]:
    """The epochs after which ``fit`` writes a state, in order (the states are still written)."""
    from fillrobust.train import loop

    written: list[int] = []
    real = loop.save_resume
    monkeypatch.setattr(loop, "save_resume", lambda *a, **kw: (written.append(kw["epoch"]), real(*a, **kw)))
    return written


def test_states_never_change_the_result(tmp_path, tiny_ccm, monkeypatch):
    """0 s: a state after every epoch; inf: none; the same checkpoint either way."""
    data, split = tiny_ccm / "crops", _split(tmp_path, tiny_ccm / "crops")
    short = {k: v for k, v in PARAMS.items() if k != "adversarial"} | {"epochs": 3, "keep": "last"}
    written = _record_states(monkeypatch)
    every_epoch, never = tmp_path / "every" / "model.safetensors", tmp_path / "never" / "model.safetensors"
    run_training(str(data), str(split), "ST", short, 0, str(every_epoch), "cpu", 1, "S1")
    assert written == [1, 2, 3]
    written.clear()
    monkeypatch.setenv("FILLROBUST_RESUME_EVERY_S", "inf")
    run_training(str(data), str(split), "ST", short, 0, str(never), "cpu", 1, "S1")
    assert written == []
    assert never.read_bytes() == every_epoch.read_bytes()


def test_a_state_follows_the_first_epoch_ending_an_interval_after_the_last(tmp_path, tiny_ccm, monkeypatch):
    """Epochs of 4 s on a fake clock and a 10 s interval: states after epochs 3 and 6 of 8."""
    from fillrobust.train import loop

    data, split = tiny_ccm / "crops", _split(tmp_path, tiny_ccm / "crops")
    clock = [0.0]
    real_order = loop.epoch_order

    def four_seconds_an_epoch(*args, **kwargs):
        clock[0] += 4.0
        return real_order(*args, **kwargs)

    monkeypatch.setattr(loop, "epoch_order", four_seconds_an_epoch)  # called once as each epoch starts
    def perf_counter() -> float:  # 1 ms a reading besides: an epoch's throughput divides by its time
        clock[0] += 0.001
        return clock[0]

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=perf_counter))
    written = _record_states(monkeypatch)
    monkeypatch.setenv("FILLROBUST_RESUME_EVERY_S", "10")
    short = {k: v for k, v in PARAMS.items() if k != "adversarial"} | {"epochs": 8, "keep": "last"}
    run_training(str(data), str(split), "ST", short, 0, str(tmp_path / "m" / "model.safetensors"), "cpu", 1, "S1")
    assert written == [3, 6]


def test_a_bad_interval_is_named_and_the_default_is_30_s(monkeypatch):
    from fillrobust.train.resume import interval_s

    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("FILLROBUST_RESUME_EVERY_S", bad)
        with pytest.raises(ValueError, match=f"FILLROBUST_RESUME_EVERY_S='{bad}': expected seconds"):
            interval_s()
    monkeypatch.setenv("FILLROBUST_RESUME_EVERY_S", "2.5")
    assert interval_s() == 2.5
    monkeypatch.delenv("FILLROBUST_RESUME_EVERY_S")
    assert interval_s() == 30


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


def _objects():
    """A tiny model, optimiser, schedule and generator, seeded as a fresh run would be."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0), torch.Generator()


def _saved_state(base: Path) -> None:
    """An epoch-2 state with momentum buffers, a best copy and advanced generators."""
    from fillrobust.train.resume import save

    model, optimizer, scheduler, generator = _objects()
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    torch.randn(3, generator=generator)
    save(base, fingerprint="f", epoch=2, model=model, optimizer=optimizer, scheduler=scheduler,
         generator=generator, history=[{"epoch": 1}, {"epoch": 2}], best_val=0.5,
         best_state={k: v.clone() for k, v in model.state_dict().items()})


def _load_fresh(base: Path):
    """Load ``base`` into fresh objects; returns the result and the objects."""
    from fillrobust.train.resume import load

    model, optimizer, scheduler, generator = _objects()
    resumed = load(base, fingerprint="f", model=model, optimizer=optimizer, scheduler=scheduler,
                   generator=generator)
    return resumed, (model, optimizer, scheduler, generator)


def _assert_fresh(objects) -> None:
    """The objects are exactly as a run without a resume state starts them."""
    model, optimizer, scheduler, generator = objects
    ref_model, ref_opt, ref_sched, ref_gen = _objects()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(),
                                                 strict=True))
    assert not optimizer.state and optimizer.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    assert scheduler.last_epoch == ref_sched.last_epoch
    assert torch.equal(generator.get_state(), ref_gen.get_state())


def _tensor_data_offset(path: Path, prefix: str) -> int:
    """File offset of the middle of the largest tensor whose name starts with ``prefix``."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    start, end = max((v["data_offsets"] for k, v in header.items() if k.startswith(prefix)),
                     key=lambda o: o[1] - o[0])
    return 8 + size + (start + end) // 2


def test_a_flipped_byte_anywhere_is_reported_and_training_starts_over(tmp_path, capsys):
    """Any single flipped byte (length, header, metadata, tensor data) fails the state's sha256:
    the file is named, removed, and the objects stay as a fresh start has them."""
    base = tmp_path / "model.safetensors"
    _saved_state(base)
    good = paths(base)[0].read_bytes()
    resumed, _ = _load_fresh(base)
    assert resumed.epoch == 2  # the intact state resumes
    capsys.readouterr()
    positions = sorted({*range(0, len(good), max(len(good) // 40, 1)), _tensor_data_offset(paths(base)[0], "model/"),
                        len(good) - 1})
    for pos in positions:
        _saved_state(base)
        damaged = bytearray(good)
        damaged[pos] ^= 0x01
        paths(base)[0].write_bytes(bytes(damaged))
        resumed, objects = _load_fresh(base)
        out = capsys.readouterr().out
        assert resumed is None, f"byte {pos} flipped: resumed anyway"
        assert f"resume file {paths(base)[0]} is corrupt" in out and "starting from epoch 1" in out, out
        _assert_fresh(objects)
        assert not paths(base)[0].exists() and not paths(base)[1].exists()


def test_a_state_lacking_a_tensor_is_reported_not_a_key_error(tmp_path, capsys):
    """A state whose header and checksum agree but that lacks a tensor (another code version):
    no raw KeyError on every retry, but a message, and the half-done restore is undone."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from fillrobust.train.resume import DIGEST_KEY, META_KEY, state_digest

    base = tmp_path / "model.safetensors"
    _saved_state(base)
    state = paths(base)[0]
    with safe_open(str(state), "pt") as handle:
        text = handle.metadata()[META_KEY]
    tensors = {k: v for k, v in load_file(str(state)).items() if k != "rng/generator"}
    save_file(tensors, str(state), metadata={META_KEY: text, DIGEST_KEY: state_digest(text, tensors)})
    resumed, objects = _load_fresh(base)
    out = capsys.readouterr().out
    assert resumed is None
    assert f"resume file {state} is corrupt (missing entry 'rng/generator')" in out, out
    _assert_fresh(objects)  # the weights, loaded before the failure, were put back
    assert not state.exists()


def test_corrupt_state_gives_the_bytes_of_an_uninterrupted_run(tmp_path, tiny_ccm, monkeypatch, capsys):
    """A killed run's state with a flipped weight byte: the rerun says so, starts from epoch 1
    and writes the same checkpoint as an uninterrupted run (it used to finish on the damaged weights)."""
    import fillrobust.train.run as run_mod

    data, split = tiny_ccm / "crops", _split(tmp_path, tiny_ccm / "crops")
    short = {k: v for k, v in PARAMS.items() if k != "adversarial"} | {"epochs": 2, "keep": "last"}
    out = tmp_path / "m" / "model.safetensors"
    with monkeypatch.context() as patch:  # as if killed after the last epoch's state was written
        patch.setattr(run_mod, "discard_resume", lambda base: None)
        run_training(str(data), str(split), "ST", short, 0, str(out), "cpu", 1, "S1")
    out.unlink()
    out.with_suffix(".json").unlink()
    state = paths(out)[0]
    damaged = bytearray(state.read_bytes())
    damaged[_tensor_data_offset(state, "model/")] ^= 0x10
    state.write_bytes(bytes(damaged))
    capsys.readouterr()
    run_training(str(data), str(split), "ST", short, 0, str(out), "cpu", 1, "S1")
    log = capsys.readouterr().out
    assert f"resume file {state} is corrupt" in log and "continuing after" not in log, log
    assert [int(e) for e in re.findall(r"^epoch=(\d+) ", log, re.M)] == [1, 2]
    fresh = tmp_path / "fresh" / "model.safetensors"
    run_training(str(data), str(split), "ST", short, 0, str(fresh), "cpu", 1, "S1")
    assert out.read_bytes() == fresh.read_bytes()
    assert not paths(out)[0].exists() and not paths(out)[1].exists()

"""GPU slots: concurrent jobs (real processes) each get a different GPU index; a killed job frees its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fillrobust.device import pick_device
from fillrobust.gpu_slots import LOCK_DIR_ENV, claim_slot, lock_dir, visible_ids

HOLDER = ("import sys; from pathlib import Path; from fillrobust.gpu_slots import claim_slot; "
          "print(claim_slot(int(sys.argv[1]), Path(sys.argv[2])), flush=True); sys.stdin.read()")


def holder(count: int, folder: Path) -> tuple[subprocess.Popen, int]:
    """A job process that claims a slot and keeps it until its stdin closes; and the slot it got."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(count), str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def test_one_gpu_or_none_needs_no_lock(tmp_path):
    assert claim_slot(1, tmp_path / "locks") == 0
    assert claim_slot(0, tmp_path / "locks") == 0
    assert not (tmp_path / "locks").exists()


def test_concurrent_jobs_get_distinct_gpus_and_a_killed_one_frees_its_gpu(tmp_path):
    folder = tmp_path / "locks"
    jobs = [holder(3, folder) for _ in range(3)]
    try:
        assert sorted(slot for _, slot in jobs) == [0, 1, 2]
        # a fourth job finds every GPU held and, with a limit, says so
        with pytest.raises(TimeoutError, match="--resources gpu=3"):
            claim_slot(3, folder, timeout=0.3, poll=0.05)
        # SIGKILL the job holding slot 1: the kernel drops its lock, the next job gets that GPU
        killed = next(proc for proc, slot in jobs if slot == 1)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        assert claim_slot(3, folder, timeout=10, poll=0.05) == 1
        assert claim_slot(3, folder) == 1  # the same process asking again keeps its GPU
    finally:
        for proc, _ in jobs:
            if proc.poll() is None:
                release(proc)


def test_a_job_waits_for_a_gpu_to_be_freed(tmp_path):
    folder = tmp_path / "locks"
    first, second = holder(2, folder), holder(2, folder)
    waiting = subprocess.Popen([sys.executable, "-c", HOLDER, "2", str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "waiting for one of 2 GPUs" in waiting.stderr.readline()
        release(second[0])
        assert int(waiting.stdout.readline()) == second[1]
    finally:
        for proc in (first[0], second[0], waiting):
            if proc.poll() is None:
                release(proc)


def test_locks_are_named_by_the_visible_gpu_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-5a1b")
    assert visible_ids(2) == ["2", "GPU-5a1b"]
    proc, slot = holder(2, tmp_path / "locks")
    try:
        assert slot == 0
        assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == ["gpu-2.lock"]
        assert (tmp_path / "locks" / "gpu-2.lock").read_text().strip() == str(proc.pid)
    finally:
        release(proc)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # fewer ids than GPUs: fall back to indices
    assert visible_ids(2) == ["0", "1"]


def test_lock_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    assert lock_dir() == tmp_path
    monkeypatch.delenv(LOCK_DIR_ENV)
    assert lock_dir().name == f"fillrobust-gpu-slots-{os.getuid()}"


def test_pick_device_on_a_machine_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without CUDA")
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        pick_device("cuda")

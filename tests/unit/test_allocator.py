"""The jobs' glibc thresholds: set when allowed, left alone when asked, the same bytes either way."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from fillrobust.allocator import keep_freed_memory, untuned_environ

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A few training steps of the embedded default's network; prints whether the
# thresholds were set and a digest of the trained weights.
TRAIN_STEPS = """
import hashlib, torch
from fillrobust.allocator import keep_freed_memory
applied = keep_freed_memory()
torch.set_num_threads(1)
torch.manual_seed(0)
from fillrobust.models.resnet import build_model
model = build_model("resnet18_half", 4).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
x = torch.rand(32, 3, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 4, (32,))
for _ in range(3):
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
digest = hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in model.state_dict().values()))
print(applied, digest.hexdigest())
"""


def _train(env: dict[str, str]) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", TRAIN_STEPS], env=env, capture_output=True, text=True, check=True)
    applied, digest = out.stdout.split()[-2:]
    return applied, digest


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_thresholds_change_speed_not_bytes() -> None:
    tuned = _train(untuned_environ())
    default = _train(dict(untuned_environ(), FILLROBUST_MALLOPT="0"))
    assert tuned[0] == "True" and default[0] == "False"
    assert tuned[1] == default[1]


def test_opt_out_and_the_users_own_tuning_win(monkeypatch) -> None:
    monkeypatch.setenv("FILLROBUST_MALLOPT", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("FILLROBUST_MALLOPT")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1000000")
    assert keep_freed_memory() is False

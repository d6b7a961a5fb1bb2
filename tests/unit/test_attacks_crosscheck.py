"""Cross-checks of our attacks against torchattacks 3.5.1 on the same model and batch.

The model is a small CNN trained for a couple of seconds on a toy 4-class dataset whose
classes differ by a brighter image quadrant; its logits are shifted by +100 so that
torchattacks' CW "other logit" (a one-hot product, exact only for positive logits) and
ours (a true max over the other classes) coincide. Attack strengths are chosen so that
robust accuracy lies strictly between 0 and 1, which the tests assert.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

torchattacks = pytest.importorskip("torchattacks")

from fillrobust.attacks.cw import cw_l2  # noqa: E402
from fillrobust.attacks.deepfool import deepfool_details  # noqa: E402
from fillrobust.attacks.fgsm import fgsm  # noqa: E402
from fillrobust.attacks.mifgsm import mifgsm  # noqa: E402
from fillrobust.attacks.norms import l2_norms  # noqa: E402
from fillrobust.attacks.pgd import pgd  # noqa: E402

SIZE = 16


def toy_data(n: int, seed: int, signal: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a brighter quadrant that encodes the class (4 classes)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 3, SIZE, SIZE, generator=g) * 0.6 + 0.2
    q = SIZE // 2
    for c in range(4):
        r, col = divmod(c, 2)
        x[y == c, :, r * q : (r + 1) * q, col * q : (col + 1) * q] += signal
    return x.clamp(0, 1), y


class ToyNet(nn.Module):
    """Two conv layers, BatchNorm, normalisation inside, logits shifted by +100."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f((x - 0.5) / 0.25) + 100.0


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = ToyNet()
    xt, yt = toy_data(1024, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        for i in range(0, len(xt), 64):
            loss = F.cross_entropy(model(xt[i : i + 64]), yt[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    x, y = toy_data(256, seed=2)
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    assert keep.float().mean() > 0.8, "toy model failed to train"
    return model, x[keep], y[keep]


def robust_acc(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def assert_close_acc(model, ours, theirs, y) -> None:
    a, b = robust_acc(model, ours, y), robust_acc(model, theirs, y)
    assert 0.0 < b < 1.0, f"reference robust accuracy {b} is degenerate; retune the test"
    assert abs(a - b) <= 0.01, f"robust accuracy ours {a:.4f} vs torchattacks {b:.4f}"


def test_fgsm_matches_torchattacks(trained):
    model, x, y = trained
    eps = 0.03
    assert_close_acc(model, fgsm(model, x, y, eps), torchattacks.FGSM(model, eps=eps)(x, y), y)


def test_pgd_linf_matches_torchattacks(trained):
    model, x, y = trained
    eps, steps, alpha = 0.02, 10, 0.005
    ours = pgd(model, x, y, eps, steps, "linf", step_size=alpha, random_start=False)
    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert_close_acc(model, ours, ref, y)


def test_pgd_l2_matches_torchattacks(trained):
    model, x, y = trained
    eps, steps = 0.5, 10
    alpha = 2.5 * eps / steps
    ours = pgd(model, x, y, eps, steps, "l2", random_start=False)  # default step rule
    ref = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert_close_acc(model, ours, ref, y)


def test_mifgsm_matches_torchattacks(trained):
    model, x, y = trained
    eps, steps = 0.02, 10
    ours = mifgsm(model, x, y, eps, steps, decay=1.0)  # default alpha = eps / steps
    ref = torchattacks.MIFGSM(model, eps=eps, alpha=eps / steps, steps=steps, decay=1.0)(x, y)
    assert_close_acc(model, ours, ref, y)


def test_cw_matches_torchattacks(trained):
    # kappa = 0: torchattacks counts any misclassified iterate as a success, ours
    # (Carlini-Wagner) needs the margin to reach kappa; the rules agree only at 0.
    model, x, y = trained
    c, kappa, steps, lr = 0.03, 0.0, 40, 0.01
    ours = cw_l2(model, x, y, c=c, kappa=kappa, steps=steps, lr=lr)
    ref = torchattacks.CW(model, c=c, kappa=kappa, steps=steps, lr=lr)(x, y)
    assert_close_acc(model, ours, ref, y)


def test_deepfool_median_norm_matches_torchattacks(trained):
    model, x, y = trained
    xs, ys = x[:12], y[:12]
    res = deepfool_details(model, xs, ys, overshoot=0.02, max_iter=50)
    ref = torchattacks.DeepFool(model, steps=50, overshoot=0.02)(xs, ys)
    assert res.fooled.all()
    ours_med, ref_med = res.norms.median().item(), l2_norms(ref, xs).median().item()
    assert ref_med > 0
    assert abs(ours_med / ref_med - 1) <= 0.05, f"median l2 ours {ours_med} vs {ref_med}"

"""LP / GRAY preprocessing: on the training batches only (default, as the thesis) or inside the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fillrobust.config import model_preprocess, preprocess_label
from fillrobust.data.frequency import block_size_for, lowpass_float
from fillrobust.evaluate.clean import load_trained
from fillrobust.io.checkpoint import load_checkpoint, save_checkpoint
from fillrobust.models.preprocess import Gray, LowPass, build_preprocess
from fillrobust.models.resnet import architecture_name, build_model
from fillrobust.train.strategies import prepare


def _x(n: int = 3, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3, side, side), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("side", [16, 32])
def test_lowpass_matches_the_dataset_filter(side):
    x = _x(side=side).double()
    expected = lowpass_float(x.numpy(), block_size_for(side))
    np.testing.assert_allclose(LowPass()(x).numpy(), expected, atol=1e-10)
    assert block_size_for(32) == 16  # the thesis' b = 16 at 32 px


def test_lowpass_is_a_projection_and_keeps_smooth_images():
    x = _x(side=32).double()
    once = LowPass()(x)
    torch.testing.assert_close(LowPass()(once), once)
    flat = torch.full((1, 3, 32, 32), 0.3, dtype=torch.float64)
    torch.testing.assert_close(LowPass()(flat), flat)


def test_gray_is_luma_in_three_channels():
    x = _x()
    out = Gray()(x)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[:, c], luma)
    with pytest.raises(ValueError, match="3 channels"):
        Gray()(x[:, :1])


def test_preprocessing_is_differentiable():
    """Attacks go through the preprocessing: the gradient is the filter's adjoint."""
    x = _x().requires_grad_(True)
    v = _x(seed=1)
    (LowPass()(x) * v).sum().backward()
    torch.testing.assert_close(x.grad, LowPass()(v), atol=1e-5, rtol=1e-5)  # symmetric projection


def test_architecture_names_and_state_dict():
    assert architecture_name("resnet18") == "resnet18"
    assert architecture_name("resnet18", "lowpass") == "resnet18+lowpass"
    plain, lp = build_model("resnet18", 4), build_model("resnet18+lowpass", 4)
    assert isinstance(lp.preprocess, LowPass) and isinstance(build_model("resnet18+gray", 4).preprocess, Gray)
    assert list(plain.state_dict()) == list(lp.state_dict())  # parameter-free
    with pytest.raises(ValueError, match="unknown preprocessing"):
        build_model("resnet18+blur", 4)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet99+lowpass", 4)
    with pytest.raises(ValueError, match="unknown name"):
        build_preprocess("blur")


def test_checkpoint_round_trip_keeps_the_preprocessing(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18+lowpass", 4).eval()
    path = tmp_path / "m" / "model.safetensors"
    save_checkpoint(model, path, {"architecture": "resnet18+lowpass", "classes": list("abcd"), "strategy": "LP",
                                  "seed": 0})
    loaded, info = load_trained(str(path), torch.device("cpu"))
    assert isinstance(loaded.preprocess, LowPass)
    x = _x(n=2, side=32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        # differs from the same weights without the filter
        plain = build_model("resnet18", 4).eval()
        load_checkpoint(plain, path)
        assert not torch.allclose(plain(x), model(x))


def test_prepare_puts_the_preprocessing_in_the_model_when_asked(tmp_path):
    inside = {"init": "scratch", "preprocess": "lowpass", "preprocess_at": "model"}
    scratch = prepare("LP", inside, 4, seed=0).model
    assert isinstance(scratch.preprocess, LowPass)
    assert isinstance(prepare("ST", {"init": "scratch"}, 4).model.preprocess, torch.nn.Identity)
    source = build_model("resnet18", 12)
    path = tmp_path / "src" / "model.safetensors"
    save_checkpoint(source, path, {"architecture": "resnet18", "classes": [str(i) for i in range(12)]})
    tuned = prepare("X", {"init": "source", "source_eps": 0, "preprocess": "gray", "preprocess_at": "model"},
                    4, 0, str(path)).model
    assert isinstance(tuned.preprocess, Gray)
    assert model_preprocess(inside) == "lowpass" and preprocess_label(inside) == "lowpass (in model)"


class Recorder(torch.nn.Module):
    """A tiny real classifier that keeps the last batch it was trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3 * 16 * 16, 4)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return self.head(x.flatten(1))


@pytest.mark.parametrize("name, module", [("lowpass", LowPass()), ("gray", Gray())])
def test_default_filters_training_batches_only(name, module):
    # Thesis 5.2.1: trained on filtered images, tested on standard RGB images.
    params = {"init": "scratch", "preprocess": name}
    prepared = prepare(name, params, 4, seed=0)
    assert isinstance(prepared.model.preprocess, torch.nn.Identity)  # tested on RGB: a plain model
    assert model_preprocess(params) == "none" and preprocess_label(params) == f"{name} (train only)"
    recorder, x = Recorder(), _x(n=4)
    prepared.step(recorder, x, torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(recorder.seen, module(x))
    recorder(x)  # evaluation: the raw image reaches the model
    torch.testing.assert_close(recorder.seen, x)


def test_augmix_lp_filters_after_the_augmentation():
    params = {"init": "scratch", "preprocess": "lowpass", "augment": {"name": "augmix"}}
    prepared = prepare("AUGMIX-LP", params, 4, seed=0)
    recorder, x = Recorder(), _x(n=4)
    prepared.step(recorder, (x * 255).round() / 255, torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(LowPass()(recorder.seen), recorder.seen, atol=1e-5, rtol=1e-5)  # low-pass
    assert not torch.allclose(recorder.seen, LowPass()(x), atol=1e-3)  # augmented before filtering

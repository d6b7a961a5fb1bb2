"""BN adaptation (thesis eq. 5.7), robustness metrics and tables."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fillrobust.evaluate import bn_adapt
from fillrobust.evaluate.robustness import attack_params, corruption_means, threat_summary
from fillrobust.report import robustness as report


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    with torch.no_grad():  # source statistics far from the test batch's
        for bn in (net[1], net[4]):
            bn.running_mean.fill_(2.0)
            bn.running_var.fill_(5.0)
    return net.eval()


def _source_stats(net: nn.Module) -> list[torch.Tensor]:
    """Copies (not views) of every BatchNorm buffer, taken before the block."""
    return [b.detach().clone() for m in net.modules() if isinstance(m, nn.BatchNorm2d) for b in m.buffers()]


def _assert_untouched(net: nn.Module, before: list[torch.Tensor]) -> None:
    after = [b for m in net.modules() if isinstance(m, nn.BatchNorm2d) for b in m.buffers()]
    assert len(after) == len(before) == 6  # mean, var, count of both layers
    for a, b in zip(after, before, strict=True):
        assert torch.equal(a, b)


def test_full_adaptation_equals_test_batch_statistics():
    net, x = _net(), torch.rand(6, 3, 8, 8)
    before = _source_stats(net)
    with bn_adapt.adapted(net, n=6, prior=0):
        adapted = net(x)
    _assert_untouched(net, before)  # source statistics kept for later batches
    expected = net.train()(x)  # train mode normalises with the batch's own statistics
    torch.testing.assert_close(adapted, expected)


def test_prior_weight_mixes_source_and_target_statistics():
    net, x = _net(), torch.rand(1, 3, 8, 8)
    before = _source_stats(net)
    plain = net(x)
    with bn_adapt.adapted(net, n=1, prior=10**9):
        almost_source = net(x)
    torch.testing.assert_close(almost_source, plain, atol=1e-4, rtol=1e-4)
    with bn_adapt.adapted(net, n=1, prior=16):
        single = net(x)
    assert not torch.allclose(single, plain)
    assert torch.equal(net(x), plain)  # the patch is gone after the block
    _assert_untouched(net, before)


def test_eq_5_7_by_hand_at_intermediate_n_and_prior():
    # One channel, n = 2 test values {1, 3} (mean 2, biased variance 1), source
    # statistics mean 6, variance 5, N = 6: z_hat = 6/8 z_s + 2/8 z_t gives
    # mean 5 and variance 4, so with gamma 3, beta 1: 3 (x - 5) / 2 + 1.
    bn = nn.BatchNorm1d(1, eps=0.0).eval()
    with torch.no_grad():
        bn.running_mean.fill_(6.0)
        bn.running_var.fill_(5.0)
        bn.weight.fill_(3.0)
        bn.bias.fill_(1.0)
    x = torch.tensor([[1.0], [3.0]])
    with bn_adapt.adapted(bn, n=2, prior=6):
        out = bn(x)
    torch.testing.assert_close(out, torch.tensor([[-5.0], [-2.0]]))
    assert bn.running_mean.item() == 6.0 and bn.running_var.item() == 5.0


def test_eq_5_7_layer_by_layer_at_the_partial_setting():
    # Thesis "partial" (n = 8, N = 16): each layer mixes 16/24 source and 8/24
    # batch statistics of its own (already adapted) input.
    net, x = _net(), torch.rand(8, 3, 8, 8)
    before = _source_stats(net)

    def mixed(bn: nn.BatchNorm2d, h: torch.Tensor) -> torch.Tensor:
        w = 16 / 24
        mean = w * bn.running_mean + (1 - w) * h.mean((0, 2, 3))
        var = w * bn.running_var + (1 - w) * h.var((0, 2, 3), unbiased=False)
        norm = (h - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + bn.eps)
        return norm * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]

    with torch.no_grad():
        expected = mixed(net[4], net[3](torch.relu(mixed(net[1], net[0](x)))))
        with bn_adapt.adapted(net, n=8, prior=16):
            out = net(x)
    torch.testing.assert_close(out, expected)
    _assert_untouched(net, before)


def test_modes_follow_the_thesis_and_bad_modes_fail():
    assert bn_adapt.resolve({"mode": "none"}) is None
    assert bn_adapt.resolve({"mode": "single"}) == (1, 16)
    assert bn_adapt.resolve({"mode": "partial"}) == (8, 16)
    assert bn_adapt.resolve({"mode": "full"}) == (400, 0)
    assert bn_adapt.resolve({"mode": "partial", "n": 4, "N": 2}) == (4, 2)
    with pytest.raises(ValueError, match="bn_adaptation.mode.*'sometimes'"):
        bn_adapt.resolve({"mode": "sometimes"})


def test_eps_in_paper_units_is_scaled_only_when_asked():
    spec = {"attack": "pgd_l2", "params": {"eps": 0.5, "steps": 3}}
    assert attack_params(spec, 0.1)["eps"] == 0.5
    assert attack_params({**spec, "scale_eps": True}, 0.1)["eps"] == pytest.approx(0.05)


def test_robustness_score_is_relative_to_clean_on_the_same_images():
    frame = pd.DataFrame({
        "index": [0, 1, 2, 3, 0, 1, 0, 1, 3],
        "container": ["a", "a", "b", "b", "a", "a", "a", "a", "b"],
        "threat": ["clean"] * 4 + ["pgd"] * 2 + ["deepfool"] * 3,
        "correct": [True, True, False, True, False, True, False, False, True],
        "norm": [0, 0, 0, 0, 0.04, 0.04, 0.5, 1.5, 0.0],
    })
    out = threat_summary(frame, {"pgd": {"attack": "pgd_linf"}, "deepfool": {"attack": "deepfool"}})
    assert out["pgd"]["accuracy"] == 0.5 and out["pgd"]["clean_accuracy"] == 1.0 and out["pgd"]["R"] == 0.5
    assert out["deepfool"]["median_norm"] == 1.0 and "median_norm" not in out["pgd"]


def test_median_norm_is_over_successful_attacks_only():
    # CW-l2 returns the clean image (norm 0) where it fails: those images are no
    # perturbation size; the old median over all clean-correct images gave 0 here.
    frame = pd.DataFrame({
        "index": [0, 1, 2, 3, 0, 1, 2, 3],
        "container": ["a"] * 8,
        "threat": ["clean"] * 4 + ["cw"] * 4,
        "correct": [True, True, True, False, True, True, False, False],
        "norm": [0, 0, 0, 0, 0.0, 0.0, 0.8, 0.1],
    })
    out = threat_summary(frame, {"cw": {"attack": "cw_l2"}})["cw"]
    assert out["median_norm"] == 0.8 and out["n_success"] == 1
    failed = frame.assign(correct=[True, True, True, False, True, True, True, False])
    assert np.isnan(threat_summary(failed, {"cw": {"attack": "cw_l2"}})["cw"]["median_norm"])


def test_corruption_means_keep_imagenet_c_and_mtlat_apart():
    acc = pd.Series([0.8, 0.6, 0.2, 0.0], index=pd.MultiIndex.from_tuples(
        [("fog", 1), ("snow", 1), ("rotation", 1), ("colour", 1)]))
    assert corruption_means(acc) == {"accuracy": pytest.approx(0.7), "mtlat_accuracy": pytest.approx(0.1)}
    assert corruption_means(acc.iloc[:2])["mtlat_accuracy"] is None


def _summaries(tmp_path):
    threats, corruptions = [], []
    for strategy, acc in (("ST", 0.8), ("AT", 0.6)):
        t = {"split": "S1", "strategy": strategy, "seed": 0, "clean_accuracy": acc,
             "clean_per_container": {"a": acc}, "threats": {
                 "pgd": {"R": 0.5, "n": 10, "per_container": {"a": acc / 2}},
                 "deepfool": {"R": 0.0, "n": 4, "n_success": 3, "median_norm": acc, "per_container": {"a": 0.0}}}}
        c = {"split": "S1", "strategy": strategy, "seed": 0, "clean_accuracy": acc, "per_corruption": {
            "fog": {"1": acc, "5": acc / 2}, "snow": {"1": acc, "5": acc}, "rotation": {"1": 0.0, "5": 0.0}}}
        for kind, obj, out in (("threats", t, threats), ("corruptions", c, corruptions)):
            path = tmp_path / f"{strategy}_{kind}.json"
            path.write_text(json.dumps(obj))
            out.append(str(path))
    return threats, corruptions


def test_tables_have_the_papers_layout(tmp_path):
    threats, corruptions = _summaries(tmp_path)
    report.write_robustness_tables(threats, corruptions, {"decimals": 2, "reference": "ST", "corruption_images": 7},
                                   str(tmp_path), str(tmp_path))
    scores = pd.read_csv(tmp_path / "robustness_scores.csv")
    assert list(scores.columns) == ["split", "kind", "perturbation", "images", "ST", "AT"]
    # a minimal attack's R only says it succeeded; its median norm (over the images it fooled) is the size
    norm = scores[scores.kind == "median norm"].set_index("perturbation")
    assert norm.loc["deepfool", "ST"] == 0.8 and norm.loc["deepfool", "images"] == 3
    assert scores.kind.tolist()[:4] == ["clean", "attack", "attack", "median norm"]
    images = scores.set_index("perturbation")["images"]
    assert (images["clean"], images["pgd"], images["fog"], images["mean ImageNet-C"]) == (10, 10, 7, 7)
    scores = scores[scores.kind != "median norm"]
    row = scores.set_index("perturbation")
    assert row.loc["clean", "ST"] == 80 and row.loc["pgd", "AT"] == 0.5
    assert row.loc["fog", "ST"] == pytest.approx(0.75) and row.loc["snow", "AT"] == 1.0
    severity = pd.read_csv(tmp_path / "corruption_severity.csv")
    st_fog = severity[(severity.strategy == "ST") & (severity.corruption == "fog")].iloc[0]
    assert (st_fog["s1"], st_fog["s5"], st_fog["mean"], st_fog["CE"]) == (80, 40, 60, 40)
    at_fog = severity[(severity.strategy == "AT") & (severity.corruption == "fog")].iloc[0]
    assert at_fog["CE_norm"] == pytest.approx(55 / 40 * 100)
    assert (severity.corruption == "mean ImageNet-C").sum() == 2 and "mCE" not in set(severity.corruption)
    # the ImageNet-C mean (its CE_norm is the mCE) over fog and snow only, not M-TLAT's rotation
    st = severity[severity.strategy == "ST"].set_index("corruption")
    assert st.loc["mean ImageNet-C", "CE"] == pytest.approx((40 + 20) / 2)
    assert st.loc["mean M-TLAT", "CE"] == 100 and st.loc["mean ImageNet-C", "CE_norm"] == 100
    assert row.loc["mean ImageNet-C", "ST"] == pytest.approx((0.75 + 1.0) / 2, abs=0.01)  # 2 decimals
    assert row.loc["mean M-TLAT", "ST"] == 0 and "mean corruption" not in row.index
    per_container = pd.read_csv(tmp_path / "robust_per_container.csv")
    assert list(per_container.columns) == ["split", "strategy", "container", "clean", "pgd", "deepfool"]
    assert np.isclose(per_container.set_index("strategy").loc["AT", "pgd"], 30)
    assert (tmp_path / "robustness_scores.png").stat().st_size > 0


def test_captions_name_the_corruption_strengths(tmp_path):
    threats, corruptions = _summaries(tmp_path)
    report.write_robustness_tables(threats, corruptions, {"decimals": 2, "reference": "ST", "suite": "cifar10_c"},
                                   str(tmp_path), str(tmp_path))
    for name in ("robustness_scores", "corruption_severity"):
        assert "at CIFAR-10-C's strengths (32 px)" in (tmp_path / f"{name}.md").read_text().splitlines()[0]
    assert report.suite_note({"suite": "imagenet_c"}).endswith("ImageNet-C's strengths (224 px)")
    assert report.suite_note({}) == ""


def test_unreadable_summary_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: corrupt evaluation summary"):
        report.write_robustness_tables([str(bad)], [str(bad)], {"decimals": 2, "reference": "ST"},
                                       str(tmp_path), str(tmp_path))


def test_figures_show_minimal_attacks_by_their_median_norm(tmp_path):
    """A minimal attack's R is 0 or 1 by construction: its bars are median norms in their own
    panel and unit, and the R figure keeps the attacks with a budget."""
    threats, corruptions = _summaries(tmp_path)
    frame = report.threat_rows(report.read_summaries(threats))
    bounded, norms = report.figure_frames(frame, ["deepfool", "pgd"])
    assert set(bounded["perturbation"]) == {"pgd"}
    assert list(norms["panel"].unique()) == ["deepfool (l2, [0, 1] pixels)"]
    assert norms.set_index("strategy").loc["ST", "value"] == 0.8
    # the unit follows the attack, not the threat's name
    _, renamed = report.figure_frames(frame, ["deepfool"], {"deepfool": "sparsefool"})
    assert list(renamed["panel"].unique()) == ["deepfool (pixels changed)"]
    report.write_robustness_tables(threats, corruptions, {"decimals": 2, "reference": "ST"},
                                   str(tmp_path), str(tmp_path))
    assert (tmp_path / "robustness_median_norms.png").stat().st_size > 0

"""SynthCCM renderer: determinism, annotation consistency, distinct containers."""

import numpy as np
import pytest

from fillrobust.data import synthetic
from fillrobust.data.store import read_dataset
from fillrobust.data.synthetic import CLASSES, SHAPES, render_frame

PARAMS = {"height": 64, "width": 80, "hand_probability": 0.5, "refraction": 1.0, "noise": 0.01}


def test_same_seed_same_bytes_and_order_free():
    a = render_frame(7, 3, "wine_glass", "transparent", PARAMS)
    render_frame(7, 99, "red_cup", "opaque", PARAMS)  # rendering another frame in between changes nothing
    b = render_frame(7, 3, "wine_glass", "transparent", PARAMS)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[2] == b[2]
    c = render_frame(8, 3, "wine_glass", "transparent", PARAMS)
    assert a[0].tobytes() != c[0].tobytes()


@pytest.mark.parametrize("container", sorted(SHAPES))
def test_annotation_consistency(container):
    for index in range(12):
        transparency = "opaque" if container == "red_cup" else "transparent"
        frame, mask, ann = render_frame(1, index, container, transparency, PARAMS)
        assert frame.shape == (64, 80, 3) and frame.dtype == np.uint8
        assert mask.shape == (64, 80) and mask.sum() > 20
        x0, y0, x1, y1 = ann["box"]
        ys, xs = np.nonzero(mask)
        assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
        assert (ann["filling_type"] == "none") == (ann["filling_level"] == 0)
        expected = "unknown" if transparency != "transparent" else f"{ann['filling_level']}%"
        assert ann["class_name"] == expected and CLASSES[ann["label"]] == expected
        assert 0.0 <= ann["occlusion"] <= 1.0
        assert ann["occlusion"] == 0.0 or ann["hand"]


def test_silhouettes_differ():
    """Stems and widths make the containers' masks distinguishable."""
    def width_profile(name):
        _, mask, ann = render_frame(0, 0, name, "transparent", dict(PARAMS, hand_probability=0.0))
        rows = mask[int(ann["box"][1]) : int(ann["box"][3])]
        widths = rows.sum(1)
        return widths.min() / widths.max(), (ann["box"][3] - ann["box"][1]) / 64

    flute, cocktail, green = width_profile("champagne_flute"), width_profile("cocktail_glass"), width_profile("green_glass")
    assert flute[0] < 0.3 and cocktail[0] < 0.3  # stems are narrow
    assert green[0] > 0.8  # a straight glass has no stem
    assert flute[1] > green[1]  # the flute is tall


def _draw(container, transparency, filling, level):
    rng = np.random.default_rng(0)
    frame = rng.random((64, 80, 3)).astype(np.float32)
    geo = synthetic._geometry(np.random.default_rng(1), SHAPES[container], 64, 80, 54)
    sample = synthetic.Sample(container, transparency, filling, level, False)
    return synthetic._draw_container(np.random.default_rng(2), frame, geo, SHAPES[container], sample, 1.0)


def test_opaque_hides_content_transparent_shows_it():
    assert np.array_equal(_draw("red_cup", "opaque", "none", 0), _draw("red_cup", "opaque", "rice", 90))
    empty, full = _draw("beer_cup", "transparent", "none", 0), _draw("beer_cup", "transparent", "rice", 90)
    assert np.abs(empty - full).mean() > 0.01
    half = _draw("beer_cup", "transparent", "rice", 50)
    assert 0 < np.abs(empty - half).mean() < np.abs(empty - full).mean()


def test_synthesized_dataset(tiny_ccm):
    frames = read_dataset(tiny_ccm / "frames", verify=True)
    assert len(frames) == 64 and frames.masks is not None
    counts = frames.manifest["container"].value_counts()
    assert set(counts) == {8}  # round-robin over the eight containers
    crops = read_dataset(tiny_ccm / "crops", verify=True)
    assert crops.images.shape == (64, 16, 16, 3)
    assert (crops.manifest["label"] == frames.manifest["label"]).all()

"""SynthSource: determinism, class balance, vessel classes, no target container."""

from __future__ import annotations

import numpy as np
import pytest

from fillrobust.data.store import read_dataset
from fillrobust.data.synthetic import SHAPES
from fillrobust.data.synthetic_source import (
    CLASSES,
    EXTRA_CLASSES,
    MATERIAL_P,
    STEMMED_SHAPES,
    VESSEL_SHAPES,
    VESSELS,
    render_source_image,
    synthesize_source,
    target_shapes_rendered,
)


def test_same_seed_and_index_give_the_same_bytes():
    a = render_source_image(3, 17, CLASSES.index("bottle"), 32)
    b = render_source_image(3, 17, CLASSES.index("bottle"), 32)
    c = render_source_image(4, 17, CLASSES.index("bottle"), 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", CLASSES)
def test_every_class_renders_a_varied_image(name):
    img = render_source_image(0, 5, CLASSES.index(name), 32)
    assert img.shape == (32, 32, 3)
    assert img.std() > 5  # not a blank frame


def test_vessel_classes_exist_and_are_not_target_containers():
    assert {"bottle", "jar", "bowl", "vase", "flask", "mug"} <= set(VESSELS)
    assert set(VESSELS) <= set(CLASSES)
    assert not set(CLASSES) & set(SHAPES)  # no class is one of the eight C-CCM containers
    assert target_shapes_rendered() == []
    target_profiles = {s.profile for s in SHAPES.values()}
    assert all(s.profile not in target_profiles for s in [*VESSEL_SHAPES.values(), *STEMMED_SHAPES.values()])


def test_every_vessel_has_a_material_law_with_glass_and_opaque_classes():
    assert set(MATERIAL_P) == set(VESSELS) | set(EXTRA_CLASSES)
    assert all(abs(sum(p) - 1) < 1e-9 for p in MATERIAL_P.values())
    assert any(p[0] == 1 for p in MATERIAL_P.values())  # always clear glass (lab glass)
    assert any(p[2] == 1 for p in MATERIAL_P.values())  # always opaque (cans)


def test_class_labels_are_categories_not_filling_levels():
    assert not {"0%", "50%", "90%", "unknown"} & set(CLASSES)
    assert len(CLASSES) == len(set(CLASSES)) >= 16


def test_a_transparent_vessel_shows_its_contents():
    """Rendering vessels many times gives visibly different insides (contents vary)."""
    imgs = np.stack([render_source_image(0, i, CLASSES.index("jar"), 32) for i in range(40)]).astype(float)
    centre = imgs[:, 12:28, 12:20].mean(axis=(1, 2))  # the body's middle
    assert centre.std(axis=0).mean() > 10


def test_dataset_is_balanced_deterministic_and_split(tmp_path):
    params = {"images": 2 * len(CLASSES), "size": 16, "seed": 1, "val_fraction": 0.25}
    synthesize_source(str(tmp_path / "a"), params)
    synthesize_source(str(tmp_path / "b"), params)
    a, b = read_dataset(str(tmp_path / "a")), read_dataset(str(tmp_path / "b"))
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
    counts = a.manifest["label"].value_counts()
    assert len(counts) == len(CLASSES) and counts.min() == counts.max() == 2
    assert set(a.manifest["role"]) <= {"train", "val"}
    assert list(a.classes) == CLASSES
    assert (a.manifest["class_name"] == [CLASSES[k] for k in a.manifest["label"]]).all()
    # the contract's grouping column (C-CCM's container) is the category: SynthSource as a split
    assert (a.manifest["container"] == a.manifest["class_name"]).all()


def test_extra_stemmed_classes_append_without_changing_the_default_images(tmp_path):
    base = {"images": 2 * len(CLASSES) + 4, "size": 16, "seed": 1, "val_fraction": 0.25}
    synthesize_source(str(tmp_path / "a"), base)
    synthesize_source(str(tmp_path / "b"), {**base, "extra_classes": ["goblet", "tulip_glass"]})
    a, b = read_dataset(str(tmp_path / "a")), read_dataset(str(tmp_path / "b"))
    assert list(b.classes) == CLASSES + ["goblet", "tulip_glass"]
    assert set(b.manifest["class_name"]) == set(b.classes)
    # an image of a default class is the same bytes with or without the extra classes
    same = (a.manifest["class_name"] == b.manifest["class_name"]).to_numpy()
    assert same.sum() > 0 and not same.all()
    assert np.array_equal(np.asarray(a.images)[same], np.asarray(b.images)[same])
    goblet = render_source_image(0, 5, "goblet", 32)
    assert goblet.std() > 5 and not np.array_equal(goblet, render_source_image(0, 5, "tulip_glass", 32))


@pytest.mark.parametrize("extra", [["wine_glass"], ["goblet", "goblet"]])
def test_unknown_or_repeated_extra_classes_are_refused_by_name(tmp_path, extra):
    params = {"images": 24, "size": 16, "seed": 1, "val_fraction": 0.25, "extra_classes": extra}
    with pytest.raises(ValueError, match="source.synth.extra_classes"):
        synthesize_source(str(tmp_path / "a"), params)
    assert not (tmp_path / "a").exists()

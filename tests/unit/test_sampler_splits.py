"""Class-balanced sampling statistics and container-disjoint splits."""

import numpy as np
import pandas as pd
import pytest
import torch

from fillrobust.data.splits import indices, make_source_split, make_split
from fillrobust.train.sampler import balanced_weights, epoch_order


def test_balanced_sampler_equalises_classes():
    labels = np.array([0] * 700 + [1] * 200 + [2] * 80 + [3] * 20)
    assert np.isclose(balanced_weights(labels).sum(), 1.0)
    gen = torch.Generator().manual_seed(0)
    drawn = np.concatenate([labels[epoch_order(labels, True, gen)] for _ in range(20)])
    share = np.bincount(drawn, minlength=4) / len(drawn)
    assert np.allclose(share, 0.25, atol=0.02), share
    plain = labels[epoch_order(labels, False, gen)]
    assert np.array_equal(np.sort(plain), np.sort(labels))  # a permutation


def test_sampler_is_seeded():
    labels = np.arange(100) % 3
    a = epoch_order(labels, True, torch.Generator().manual_seed(5))
    b = epoch_order(labels, True, torch.Generator().manual_seed(5))
    assert np.array_equal(a, b)


def test_split_roles():
    containers = ["a", "b", "c", "d"]
    manifest = pd.DataFrame({"index": np.arange(400), "container": np.repeat(containers, 100),
                             "label": np.tile(np.arange(4), 100)})
    split = make_split(manifest, ["a", "b", "c"], ["d"], 0.2, seed=0, name="S1")
    test = manifest.set_index("index").loc[indices(split, "test"), "container"]
    assert set(test) == {"d"} and len(test) == 100
    val = manifest.set_index("index").loc[indices(split, "val")]
    assert len(val) == 60 and set(val["container"]) == {"a", "b", "c"}
    # stratified: every (container, label) stratum gives 20 % to validation
    assert (val.groupby(["container", "label"]).size() == 5).all()
    assert not set(indices(split, "train")) & set(indices(split, "val"))
    again = make_split(manifest, ["a", "b", "c"], ["d"], 0.2, seed=0, name="S1")
    assert split.equals(again)


def test_source_split_is_a_class_balanced_train_subset_tested_on_val():
    labels = np.arange(300) % 5
    role = np.where(np.arange(300) % 10 == 0, "val", "train")
    manifest = pd.DataFrame({"index": np.arange(300), "label": labels, "role": role})
    split = make_source_split(manifest, 50, seed=0)
    train, test = indices(split, "train"), indices(split, "test")
    assert len(train) == 50 and np.bincount(labels[train], minlength=5).tolist() == [10] * 5
    assert set(role[train]) == {"train"}
    assert test.tolist() == np.flatnonzero(role == "val").tolist()  # every val image, nothing else
    assert not len(indices(split, "val"))
    assert split.equals(make_source_split(manifest, 50, seed=0))
    assert not np.array_equal(train, indices(make_source_split(manifest, 50, seed=1), "train"))
    assert len(indices(make_source_split(manifest, None, seed=0), "train")) == 270
    with pytest.raises(ValueError, match="train_images 500 > the 270 train images"):
        make_source_split(manifest, 500, seed=0)
    with pytest.raises(ValueError, match="no val images"):
        make_source_split(manifest.assign(role="train"), 50, seed=0)

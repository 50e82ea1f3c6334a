"""Bundles: what they hold, and every refusal with a message naming the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from skintl.encoders.backbones import build_backbone
from skintl.features.stage import load_features
from skintl.scan.bundle import BUNDLE_VERSION, BundleError, load_bundle
from skintl.scan.export import make_bundle


def _rewrite(src: Path, dst: Path, **meta_updates: object) -> Path:
    obj = torch.load(src, weights_only=True)
    meta = json.loads(obj["meta"]) | meta_updates
    torch.save({"meta": json.dumps(meta), "tensors": obj["tensors"]}, dst)
    return dst


def test_bundle_holds_the_study_encoder_and_classifier(scan_run: Path, dense_bundle: Path) -> None:
    b = load_bundle(dense_bundle)
    m = b.meta
    assert (m["arch"], m["layer"], m["feature_mode"], m["patch_size"]) == (
        "resnet18", "layer2", "dense", 32,
    )  # fmt: skip
    assert m["photo_short_side"] == 128 and m["classes"] == ["AK", "SK", "healthy"]
    index = pd.read_parquet(scan_run / "patches" / "index.parquet")
    assert m["training_patients"] == sorted(index["patient_id"].astype(str).unique())
    torch.manual_seed(0)  # the study's seed: the encoder the features came from
    ref = build_backbone("resnet18").state_dict()
    for k, v in b.trunk.state_dict().items():
        assert torch.equal(v, ref[k]), k
    # the head classifies the study's own features sensibly (refitted on all of them)
    X = load_features(scan_run, "r18-dense", "layer2")
    pred = np.asarray(b.head.classes)[b.head.predict_proba(X).argmax(1)]
    assert (pred == index["class"].to_numpy()).mean() > 0.8


def test_excluded_patients_are_left_out(scan_run: Path, tmp_path: Path) -> None:
    index = pd.read_parquet(scan_run / "patches" / "index.parquet")
    first = str(index["patient_id"].iloc[0])
    meta = make_bundle(scan_run, "r18", "layer2", "svm_linear", tmp_path / "b", [first])
    assert first not in meta["training_patients"]
    assert first not in {p["patient_id"] for p in meta["training_photos"]}
    assert load_bundle(tmp_path / "b").mode == "patch"
    with pytest.raises(BundleError, match="not patients of"):
        make_bundle(scan_run, "r18", "layer2", "logreg", tmp_path / "c", ["nobody"])


def test_unsupported_classifier_and_missing_features_refused(
    scan_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(BundleError, match=r"'svm_rbf' cannot be bundled.*logreg, mlp, svm_linear"):
        make_bundle(scan_run, "r18", "layer2", "svm_rbf", tmp_path / "b")
    with pytest.raises(BundleError, match=r"no features of encoder 'r18' layer 'layer3'"):
        make_bundle(scan_run, "r18", "layer3", "logreg", tmp_path / "b")


def test_other_version_refused(dense_bundle: Path, tmp_path: Path) -> None:
    bad = _rewrite(dense_bundle, tmp_path / "v.bundle", version=BUNDLE_VERSION + 1,
                   skintl_version="9.0")  # fmt: skip
    with pytest.raises(BundleError, match=r"v\.bundle: bundle format version 2 .*skintl 9\.0.*"
                       r"Re-export"):  # fmt: skip
        load_bundle(bad)


def test_mismatched_layer_refused(dense_bundle: Path, tmp_path: Path) -> None:
    bad = _rewrite(dense_bundle, tmp_path / "l.bundle", layer="layer3", layer_stride=16,
                   layer_channels=256)  # fmt: skip
    with pytest.raises(BundleError, match=r"not resnet18 up to layer3: \d+ missing"):
        load_bundle(bad)
    bad = _rewrite(dense_bundle, tmp_path / "s.bundle", layer_stride=16)
    with pytest.raises(BundleError, match="layer 'layer2' of resnet18 cannot be honoured"):
        load_bundle(bad)
    bad = _rewrite(dense_bundle, tmp_path / "a.bundle", arch="resnet50")
    with pytest.raises(BundleError, match="not resnet50 up to layer2"):
        load_bundle(bad)


def test_unknown_classifier_or_mode_in_file_refused(dense_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="'knn' is not supported for scanning"):
        load_bundle(_rewrite(dense_bundle, tmp_path / "k.bundle", classifier="knn"))
    with pytest.raises(BundleError, match="feature mode 'sparse' is unknown"):
        load_bundle(_rewrite(dense_bundle, tmp_path / "m.bundle", feature_mode="sparse"))


def test_pickle_refused(dense_bundle: Path, tmp_path: Path) -> None:
    from sklearn.preprocessing import StandardScaler

    obj = torch.load(dense_bundle, weights_only=True)
    obj["scaler"] = StandardScaler()  # any Python object needs full unpickling
    torch.save(obj, tmp_path / "p.bundle")
    with pytest.raises(BundleError, match=r"p\.bundle: not a weights-only file.*never unpickles"):
        load_bundle(tmp_path / "p.bundle")


def test_not_a_bundle_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "e.pt")
    with pytest.raises(BundleError, match="not a skintl scan bundle"):
        load_bundle(tmp_path / "e.pt")
    with pytest.raises(BundleError, match="bundle file not found"):
        load_bundle(tmp_path / "none.bundle")


def test_a_timm_encoder_bundles_and_scans(tmp_path: Path) -> None:
    """A bundle of an EfficientNet-Lite tap keeps the timm keys, loads strictly and scans."""
    import numpy as np
    import torch

    from skintl.encoders.backbones import build_backbone, layer_info
    from skintl.encoders.taps import truncated_backbone
    from skintl.scan.bundle import load_bundle, save_bundle
    from skintl.scan.head import Head
    from skintl.scan.scanner import window_probabilities
    from skintl.scan.windows import grid_windows

    arch, layer = "tf_efficientnet_lite0", "blocks.2"
    info = layer_info(arch)[layer]
    torch.manual_seed(0)
    trunk = truncated_backbone(build_backbone(arch), layer)
    rng = np.random.default_rng(0)
    head = Head(rng.normal(0, 1, info.channels), rng.uniform(0.5, 2, info.channels),
                [rng.normal(0, 0.3, (3, info.channels))], [rng.normal(0, 0.3, 3)],
                ["AK", "healthy", "SK"])  # fmt: skip
    meta = {"arch": arch, "layer": layer, "layer_stride": info.stride,
            "layer_channels": info.channels, "feature_mode": "dense", "patch_size": 32,
            "input_size": None, "photo_short_side": None, "classifier": "logreg"}  # fmt: skip
    save_bundle(tmp_path / "lite0.bundle", meta, trunk, head)
    bundle = load_bundle(tmp_path / "lite0.bundle")
    assert any(k.startswith("blocks.2.") for k in bundle.trunk.state_dict())
    for k, v in trunk.state_dict().items():
        assert torch.equal(bundle.trunk.state_dict()[k], v), k
    photo = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    win = grid_windows(np.ones((70, 90), bool), 32, 8, info.stride)
    padded = np.pad(photo, ((win.pad, win.pad), (win.pad, win.pad), (0, 0)), mode="reflect")
    probs = window_probabilities(bundle, padded, win, "dense", "cpu", tile=64)
    assert probs.shape == (len(win), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)

"""Validated study configuration.

A study is one YAML file. Unknown keys, wrong types, missing files and unknown class names are
errors that name the key and the fix, raised before any long work starts.
"""

from __future__ import annotations

import difflib
import itertools
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from skintl import names as known
from skintl.labels import DEFAULT_CLASSES, HEALTHY


class ConfigError(ValueError):
    """A study config that cannot be used; the message says where and how to fix it."""


def _deep(info: ValidationInfo) -> bool:
    """Whether the checks that build a timm model (its taps, on the meta device; torch) run
    now: off in ``skintl check`` until the data is validated (:func:`check_taps`)."""
    return bool((info.context or {}).get("taps", True))


def arch_taps(arch: str, deep: bool = True) -> list[str] | None:
    """The taps of ``arch`` in forward order; for timm archs None unless ``deep`` (they are
    built on the meta device, which imports torch)."""
    taps = known.static_taps(arch)
    if taps is None and deep:
        from skintl.encoders.backbones import layer_info

        taps = list(layer_info(arch))
    return taps


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticConfig(_Strict):
    n_patients: int = Field(12, ge=2)
    images_per_patient: int = Field(2, ge=1)
    size: int = Field(256, ge=64)
    seed: int = 0


class InkConfig(_Strict):
    """Pen / marker ink detection (``skintl.data.ink``); lengths in px at a 300 px short side."""

    #: add ``ink_fraction`` and ``has_ink`` to the manifest (photo sources)
    detect: bool = True
    #: a photo has ink when its ink lines cover more than this fraction of it; below it the
    #: lines are taken for specks (hair, texture) and the photo's ink mask is empty
    min_fraction: float = Field(0.002, ge=0.0, lt=1.0)
    #: L* by which a line must be darker than its surroundings
    min_darkening: float = Field(8.0, gt=0)
    #: how far (a*, b* units) its hue must turn from the photo's skin towards violet / blue
    min_violet: float = Field(5.0, gt=0)
    #: only lines narrower than this count as dark lines
    line_width: int = Field(9, ge=3)
    #: a kept line is at least this long (skeleton px) ...
    min_length: float = Field(30.0, gt=0)
    #: ... at most this wide on average ...
    max_width: float = Field(10.0, gt=0)
    #: ... and has at least this much length per free end and per branch point (meshes of
    #: hairs and skin texture have many of both)
    min_length_per_end: float = Field(10.0, ge=0)
    min_length_per_branch: float = Field(12.0, ge=0)
    #: gaps up to this many px between pieces of one line are bridged
    join_gap: int = Field(5, ge=1)
    #: a found line is followed into fainter pixels (half the thresholds) for up to this many
    #: line widths (0: not followed)
    extend: int = Field(2, ge=0)
    #: short side (px) at which the lengths above hold; they scale with each photo
    reference_side: int = Field(300, ge=16)


class DataConfig(_Strict):
    """Where the annotated photos (or cut patches) come from."""

    source: Literal["masked_folder", "patch_folders", "labelme", "coco", "geojson", "synthetic"]
    root: Path | None = None
    metadata: str = "metadata.csv"
    image_column: str = "image"
    mask_column: str = "mask"
    patient_column: str = "patient_id"
    label_column: str = "diagnostic"
    #: keep only metadata rows whose column value is in the list, e.g. {diagnostic: [ACK, SEK]}
    include: dict[str, list[str]] = Field(default_factory=dict)
    #: binary: mask > 0 is the lesion, whose class is the image's diagnosis mapped through
    #: ``diagnosis_to_class``; multiclass: pixel value -> class through ``mask_values``.
    mask_mode: Literal["binary", "multiclass"] = "binary"
    diagnosis_to_class: dict[str, str] = Field(default_factory=dict)
    mask_values: dict[int, str] = Field(default_factory=dict)
    #: patch folders and polygon labels: name -> class, e.g. {NORM: healthy, SBL: SK, 0: AK}
    class_aliases: dict[str, str] = Field(default_factory=dict)
    #: polygon labels to skip (rulers, pen marks), e.g. [ruler]
    ignore_labels: list[str] = Field(default_factory=list)
    #: polygon sources: the COCO file, or a glob of LabelMe / GeoJSON files, under ``root``
    #: (default **/*.json for labelme, **/*.geojson for geojson)
    annotations: str | None = None
    #: polygon sources: patient id from the image file name (group ``patient`` or the first
    #: group), e.g. '^(PAT_\d+)_'; without it the metadata CSV maps image -> patient
    patient_regex: str | None = None
    #: images with more pixels are refused as possible decompression bombs (None: Pillow's
    #: 89,478,485); raise it for large photos you trust
    max_image_pixels: int | None = Field(None, ge=1)
    #: problems listed in full when the data has several (all are counted)
    max_problems: int = Field(50, ge=1)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)  # type: ignore[arg-type]
    #: patients left out of the manifest (a pre-training source drops the study's patients here)
    exclude_patients: list[str] = Field(default_factory=list)
    #: a CSV of your own photo-level columns (e.g. ink marks), relative to this config's folder;
    #: its ``image_column`` holds each photo's path relative to ``root`` (as in the metadata),
    #: the key it is joined on; every photo needs exactly one row
    extra_metadata: Path | None = None
    ink: InkConfig = Field(default_factory=InkConfig)  # type: ignore[arg-type]
    #: masked_folder: metadata column naming a mask of artefacts drawn by hand (rulers, ink,
    #: dressings; nonzero = artefact, the photo's size); an empty cell means none
    artefact_mask_column: str | None = None

    @field_validator("class_aliases", mode="before")
    @classmethod
    def _names_as_text(cls, value: Any) -> Any:
        # numeric folder names (0/1/2) arrive from YAML as int keys
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("patient_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from None
        return value


class ExcludeConfig(_Strict):
    """Patches dropped before the per-class cap, by what they show besides skin."""

    #: drop patches with more than ``max_ink_fraction`` ink pixels (0.0: touching any ink)
    ink: bool = False
    max_ink_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    #: drop patches with more than ``max_artefact_fraction`` of data.artefact_mask_column's mask
    artefacts: bool = False
    max_artefact_fraction: float = Field(0.0, ge=0.0, lt=1.0)


class PatchConfig(_Strict):
    size: int = Field(50, ge=8)
    stride: int = Field(25, ge=1)
    #: a patch takes a lesion class when at least this fraction of it lies in that class's region
    min_lesion_fraction: float = Field(0.5, gt=0.5, le=1.0)
    #: a patch is healthy skin when every pixel keeps this many pixels from every lesion
    healthy_margin: int = Field(10, ge=0)
    #: at most this many patches per image and class (None: all)
    max_per_image_class: int | None = Field(None, ge=1)
    exclude: ExcludeConfig = Field(default_factory=ExcludeConfig)  # type: ignore[arg-type]


class EncoderConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    #: resnet18 / resnet50 (torchvision) or any timm model name (e.g. tf_efficientnet_lite0)
    arch: str
    #: "random", "imagenet", or the path of a skintl encoder file
    weights: str = "random"
    #: this encoder's feature mode (None: ``features.mode``); two encoders with the same
    #: weights and different modes compare patch and dense features on the same folds
    mode: Literal["patch", "dense"] | None = None
    #: this encoder's taps (None: ``features.layers``); "all": every tap of its arch
    layers: list[str] | Literal["all"] | None = None
    #: a weights file pre-trained on some of the study's patients is refused; true accepts it
    #: (the report warns). For ``pretrain:<name>`` the run's own setting also accepts it
    allow_shared_patients: bool = False

    @model_validator(mode="after")
    def _known_arch(self) -> EncoderConfig:
        known.check_arch(self.arch)
        return self


class FeatureConfig(_Strict):
    encoders: list[EncoderConfig] = Field(min_length=1)
    #: taps of every encoder that lists none itself; "all": every tap of each encoder's arch
    #: (ResNets: stem, layer1..layer4; timm EfficientNets: blocks.0..blocks.6)
    layers: list[str] | Literal["all"] = Field(
        default_factory=lambda: ["layer1", "layer2", "layer3", "layer4"]
    )
    #: resize patches to this many pixels before the encoder (None: keep the patch size)
    input_size: int | None = Field(None, ge=8)
    batch_size: int = Field(256, ge=1)
    #: where the encoders run: "auto" (a CUDA GPU when PyTorch sees one), "cpu", "cuda", "cuda:N";
    #: on a GPU the pass stays full fp32 (TF32 off), so cached features do not depend on it
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    #: classical descriptors evaluated as baselines on the same folds: lbp_yiq, colour_lbp
    handcrafted: list[str] = Field(default_factory=list)
    #: patch: each patch alone through the encoder; dense: each patch's window pooled from the
    #: layer's feature map of its whole photo (what `skintl scan --mode dense` sees)
    mode: Literal["patch", "dense"] = "patch"
    #: dense mode: photos run in tiles of this many px (plus a receptive-field halo)
    dense_tile: int = Field(512, ge=32)

    def mode_of(self, encoder: str) -> str:
        """The feature mode (patch or dense) of the encoder named ``encoder``."""
        enc = next(e for e in self.encoders if e.name == encoder)
        return enc.mode or self.mode

    @model_validator(mode="after")
    def _check(self) -> FeatureConfig:
        known.check_names("hand-crafted descriptor", known.HANDCRAFTED, self.handcrafted)
        self.check_layers(deep=False)  # timm archs: in StudyConfig, once the rest is valid
        dense = [e.name for e in self.encoders if (e.mode or self.mode) == "dense"]
        if dense and self.input_size is not None:
            raise ValueError(
                f"encoders {dense} use dense features, which pool photos at their own scale: "
                "remove features.input_size or use mode: patch"
            )
        names = [e.name for e in self.encoders]
        if len(set(names)) != len(names):
            raise ValueError(f"encoder names must be unique, got {names}")
        return self

    def check_layers(self, deep: bool) -> None:
        """Every encoder's layers are taps of its arch (timm archs only when ``deep``)."""
        for enc in self.encoders:
            taps = arch_taps(enc.arch, deep)
            layers = enc.layers if enc.layers is not None else self.layers
            bad = [] if taps is None or layers == "all" else [x for x in layers if x not in taps]
            if bad and taps is not None:
                raise ValueError(
                    f"encoder {enc.name!r} ({enc.arch}) has no layers {bad}"
                    f"{known.did_you_mean(bad[0], taps)} (its taps are {', '.join(taps)}, "
                    "or layers: all)"
                )

    def encoder_layers(self, enc: EncoderConfig, deep: bool = True) -> list[str]:
        """The taps computed for ``enc``, in its arch's forward order when ``all`` (for a
        timm arch, ``["all"]`` unless ``deep``)."""
        layers = enc.layers if enc.layers is not None else self.layers
        if layers == "all":
            return arch_taps(enc.arch, deep) or ["all"]
        return list(layers)

    def encoder(self, name: str) -> EncoderConfig | None:
        return next((e for e in self.encoders if e.name == name), None)


class SplitConfig(_Strict):
    kind: Literal["group_kfold", "stratified_group_kfold", "leave_one_patient_out"] = (
        "stratified_group_kfold"
    )
    n_splits: int = Field(23, ge=2)
    #: fraction of training patients held out (by patient) for early stopping
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9)


class MLPConfig(_Strict):
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    #: torch: every fold of a cell trained at once in PyTorch (stacked weights); sklearn: one
    #: scikit-learn MLPClassifier per fold (the former implementation, kept for comparison)
    implementation: Literal["torch", "sklearn"] = "torch"
    #: where the torch implementation trains: "auto" (a CUDA GPU when present), "cpu", "cuda[:N]"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")


class LogRegConfig(_Strict):
    #: inverse L2 strength; the pooled features of random or frozen nets are highly
    #: correlated, and C = 0.1 converges in a few hundred L-BFGS steps where C = 1 takes thousands
    C: float = Field(0.1, gt=0)
    max_iter: int = Field(1000, ge=10)
    #: "balanced" weights classes inversely to their frequency (raises balanced accuracy when
    #: healthy patches dominate); None keeps the study's unweighted loss
    class_weight: Literal["balanced"] | None = None
    #: torch: every fold of a cell solved at once by a batched L-BFGS in PyTorch (the same
    #: objective and gradient tolerance); sklearn: one LogisticRegression per fold (the former
    #: implementation, kept for comparison)
    implementation: Literal["torch", "sklearn"] = "torch"
    #: where the torch implementation runs: "auto" (a CUDA GPU when present), "cpu", "cuda[:N]"
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")


class FineTuneCellConfig(_Strict):
    """End-to-end fine-tuning of an encoder truncated after ``layer``, with a small head."""

    encoder: str
    layer: str = "layer2"
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    head_hidden: int = Field(0, ge=0)
    patience: int = Field(2, ge=1)
    accelerator: str = "auto"


class EvaluationConfig(_Strict):
    splits: SplitConfig = Field(default_factory=SplitConfig)  # type: ignore[arg-type]
    classifiers: list[str] = Field(default_factory=lambda: ["mlp", "logreg"])
    #: classifiers of the hand-crafted baselines (Spyridonos et al. 2017 used an RBF SVM)
    handcrafted_classifiers: list[str] = Field(default_factory=lambda: ["svm_rbf"])
    #: single extra cells, e.g. the leaky thesis-protocol replica on one encoder and layer:
    #: [{encoder: r18-random, layer: layer2, classifier: thesis_mlp}]
    extra_cells: list[dict[str, str]] = Field(default_factory=list)
    #: fine-tuning cells (Lightning), classifier name "finetune" in tables
    finetune: list[FineTuneCellConfig] = Field(default_factory=list)
    mlp: MLPConfig = Field(default_factory=MLPConfig)  # type: ignore[arg-type]
    logreg: LogRegConfig = Field(default_factory=LogRegConfig)  # type: ignore[arg-type]
    #: parallel jobs over folds (joblib's convention; -1 = all cores), one BLAS thread each
    n_jobs: int = -1

    @model_validator(mode="after")
    def _known_classifiers(self) -> EvaluationConfig:
        extra = [c.get("classifier", "") for c in self.extra_cells]
        used = [*self.classifiers, *self.handcrafted_classifiers, *extra]
        known.check_names("classifier", known.CLASSIFIERS, used)
        for cell in self.extra_cells:
            if sorted(cell) != ["classifier", "encoder", "layer"]:
                raise ValueError(f"extra_cells entries need encoder, layer, classifier: {cell}")
        return self


class PretrainRunConfig(_Strict):
    """One pre-training run of the study; encoders use it as ``weights: pretrain:<name>``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    method: Literal["supervised", "simclr", "moco"]
    arch: str = "resnet18"
    #: starting weights: "random", "imagenet" (supervised ImageNet, then this method in the
    #: domain: Azizi et al. 2021, REMEDIS 2023) or a skintl encoder file (relative to the config)
    init: str = "random"
    #: study config whose data and patches sections give the source set (relative to this file)
    source: Path
    input: Literal["patches", "images"] = "patches"
    image_size: int = Field(128, ge=16)
    positives: Literal["none", "lesion", "patient"] = "none"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float | None = None
    crop_size: int = Field(64, ge=16)
    color_strength: float = Field(0.25, ge=0)
    #: method hyper-parameters, e.g. {temperature: 0.2, queue_size: 4096}
    options: dict[str, int | float] = Field(default_factory=dict)
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_workers: int = Field(2, ge=0)
    #: when the source reads the study's dataset, the study's patients are dropped from it so
    #: that no encoder sees a test patient's skin; true keeps them (the report warns)
    allow_shared_patients: bool = False


class CellHeadConfig(_Strict):
    """The cell head (``skintl.scan.cells``): a classifier of every skin cell of the training
    photos' feature maps, with the classes' natural frequencies."""

    #: each lesion class's decision threshold, chosen on an inner patient split of the training
    #: patients only: none (argmax), dice (best mean Dice), burden (least absolute burden error)
    threshold: Literal["none", "dice", "burden"] = "none"
    #: patient groups of that inner split
    inner_folds: int = Field(3, ge=2)
    #: fit on at most this many labelled cells per photo, a uniform sample that keeps the
    #: natural class frequencies (None: every cell)
    max_per_photo: int | None = Field(None, ge=1)
    #: taps of the encoder whose maps the head reads, stacked on the grid of the finest one
    #: (a cell of a coarser tap covers several grid cells); None: [scan.layer]
    layers: list[str] | None = Field(None, min_length=1)
    #: how a scan paints pixels from the cells' probabilities: block (each pixel its cell's,
    #: the grid the thresholds are chosen on) or bilinear between the cell centres
    paint: Literal["block", "bilinear"] = "block"

    def taps(self, layer: str) -> list[str]:
        """The head's taps (``layer``, the scan's, when none are given)."""
        return list(self.layers) if self.layers else [layer]


class VisitsConfig(_Strict):
    """Change between visits in the scan stage (``skintl.scan.visit_stage``): each patient's
    photos (per site) in visit order, each later one compared with the first by the bundle of
    the fold that held the patient out."""

    #: manifest column with each photo's visit: numbers, or dates as YYYY-MM-DD
    column: str
    #: manifest column naming the skin site photographed at every visit (e.g. lesion_id); a
    #: patient's photos of one site form a series; None: all of a patient's photos are one
    site_column: str | None = None
    detector: Literal["sift", "orb"] = "sift"
    #: share of a region the other visit's lesions must cover for it to persist
    min_overlap: float = Field(0.1, ge=0, lt=1)


class ScanConfig(_Strict):
    """Whole-photo scanning (``skintl.scan``): a bundle of every patient, and an honest
    evaluation in which each outer fold's bundle scans that fold's held-out photos."""

    encoder: str
    #: encoder of the exact and superpixel scans, whose windows are isolated patches (an
    #: encoder with features.mode patch); None: ``encoder`` for every mode
    patch_encoder: str | None = None
    layer: str = "layer2"
    classifier: Literal["logreg", "mlp", "svm_linear"] = "logreg"
    #: write scan/bundle.pt, refitted on every patient, for `skintl scan`
    export_bundle: bool = True
    #: the head of scan/bundle.pt: patch (the classifier of the cached patch features) or
    #: cells (every skin cell of the training photos' maps of ``encoder``; scans in cells mode)
    head: Literal["patch", "cells"] = "patch"
    cells: CellHeadConfig = Field(default_factory=CellHeadConfig)  # type: ignore[arg-type]
    #: scan the held-out photos of every outer fold in these modes ([]: no evaluation; None:
    #: the mode of scan/bundle.pt: cells for the cell head, else dense for dense features and
    #: exact for patch features); cells is the cell head of ``encoder``, compared photo by
    #: photo with the others
    modes: list[Literal["exact", "superpixel", "dense", "cells"]] | None = None
    #: grid stride in px at the bundle's scale (None: patch size / 5)
    stride: int | None = Field(None, ge=1)
    #: manifest columns with the photos and the doctor's masks to scan, paths relative to
    #: data.root (e.g. full_resolution_image / full_resolution_mask); None: the study's photos
    image_column: str | None = None
    mask_column: str | None = None
    #: photos to scan: keep manifest rows whose column value is in the list
    include: dict[str, list[str]] = Field(default_factory=dict)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    n_boot: int = Field(1000, ge=10)
    #: a doctor region is detected when the predicted regions touching it reach this IoU with
    #: it (the any-overlap rule is reported beside it)
    region_iou: float = Field(0.2, gt=0, le=1)
    #: compare each patient's visits (needs scan modes, whose first mode's fold bundles compare)
    visits: VisitsConfig | None = None

    def encoder_for(self, mode: str) -> str:
        """The encoder whose bundles scan in ``mode``: ``encoder`` for dense windows and cells,
        ``patch_encoder`` (or ``encoder``) for the isolated windows of exact and superpixel."""
        return self.encoder if mode in ("dense", "cells") else (self.patch_encoder or self.encoder)

    def scan_modes(self, features: FeatureConfig) -> list[str]:
        """``modes``, or the mode of scan/bundle.pt when not given."""
        if self.modes is not None:
            return list(self.modes)
        if self.head == "cells":
            return ["cells"]
        return [known.DEFAULT_MODE[features.mode_of(self.encoder)]]


class ReportConfig(_Strict):
    """The report stage's options."""

    #: photo-level manifest columns to break the results down by, e.g. [has_ink, fitspatrick]
    subgroups: list[str] = Field(default_factory=list)
    #: bin edges of numeric columns, e.g. {age: [0, 50, 65, 120]}; a numeric column with more
    #: than 8 values and no edges here is cut at the terciles of its patient-level medians
    subgroup_bins: dict[str, list[float]] = Field(default_factory=dict)
    #: patient-level label permutations of each subgroup test
    subgroup_permutations: int = Field(1000, ge=1)

    @field_validator("subgroup_bins")
    @classmethod
    def _increasing(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for col, edges in value.items():
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"{col}: bin edges must be 2 or more increasing numbers: {edges}")
        return value


class StudyConfig(_Strict):
    name: str = "study"
    seed: int = 0
    classes: list[str] = Field(default_factory=lambda: list(DEFAULT_CLASSES))
    data: DataConfig
    patches: PatchConfig = Field(default_factory=PatchConfig)  # type: ignore[arg-type]
    pretrain: list[PretrainRunConfig] = Field(default_factory=list)
    features: FeatureConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    scan: ScanConfig | None = None
    report: ReportConfig = Field(default_factory=ReportConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _known_classes(self, info: ValidationInfo) -> StudyConfig:
        if HEALTHY not in self.classes:
            raise ValueError(f"classes must include {HEALTHY!r}, got {self.classes}")
        d = self.data
        for where, mapping in (
            ("data.diagnosis_to_class", d.diagnosis_to_class),
            ("data.mask_values", d.mask_values),
            ("data.class_aliases", d.class_aliases),
        ):
            unknown = sorted({c for c in mapping.values() if c not in self.classes})
            if unknown:
                raise ValueError(
                    f"{where} maps to unknown classes {unknown}; declared classes are "
                    f"{self.classes} (add them to `classes:` or fix the spelling)"
                )
        deep = _deep(info)
        f = self.features
        f.check_layers(deep)
        encoder_names = {e.name for e in f.encoders}
        for ft in self.evaluation.finetune:
            enc = f.encoder(ft.encoder)
            taps = arch_taps(enc.arch, deep) if enc else None
            if enc is None or (taps is not None and ft.layer not in taps):
                raise ValueError(
                    f"evaluation.finetune: encoder {ft.encoder!r} / layer {ft.layer!r} unknown; "
                    f"encoders are {sorted(encoder_names)}"
                    + (f", taps of {enc.arch}: {taps}" if enc else "")
                )
        if self.scan is not None:
            _check_scan(self.scan, self.features, deep)
        runs = {r.name: r for r in self.pretrain}
        for enc in self.features.encoders:
            if enc.weights.startswith("pretrain:"):
                run = runs.get(enc.weights.removeprefix("pretrain:"))
                if run is None:
                    raise ValueError(
                        f"encoder {enc.name!r}: weights {enc.weights!r} names no pretrain run; "
                        f"declared runs: {sorted(runs)}"
                    )
                if run.arch != enc.arch:
                    raise ValueError(
                        f"encoder {enc.name!r} is {enc.arch} but its pretrain run "
                        f"{run.name!r} trains {run.arch}"
                    )
        if d.source != "synthetic" and d.root is None:
            raise ValueError("data.root is required for source " + repr(d.source))
        if d.source == "coco" and not d.annotations:
            raise ValueError("source coco needs data.annotations (the COCO JSON under data.root)")
        if d.source == "masked_folder" and d.mask_mode == "binary" and not d.diagnosis_to_class:
            raise ValueError("binary masks need data.diagnosis_to_class (e.g. {ACK: AK, SEK: SK})")
        ex = self.patches.exclude
        if ex.ink and (not d.ink.detect or d.source == "patch_folders"):
            raise ValueError(
                "patches.exclude.ink needs data.ink.detect: true and a photo source "
                "(patch folders are not checked for ink)"
            )
        if d.artefact_mask_column is not None and d.source != "masked_folder":
            raise ValueError("data.artefact_mask_column is read by source masked_folder only")
        if ex.artefacts and d.artefact_mask_column is None:
            raise ValueError("patches.exclude.artefacts needs data.artefact_mask_column")
        if d.source == "masked_folder" and d.mask_mode == "multiclass" and not d.mask_values:
            raise ValueError("multiclass masks need data.mask_values (e.g. {1: AK, 2: SK})")
        return self


def _check_scan(sc: ScanConfig, features: FeatureConfig, deep: bool = True) -> None:
    """The scan's encoders have features of its layer, and each mode's bundle was trained on
    the features that mode computes (dense windows: dense; exact, superpixel: patch)."""
    CELL_CLASSIFIERS, FEATURE_MODE = known.CELL_CLASSIFIERS, known.FEATURE_MODE
    names = sorted(e.name for e in features.encoders)
    for name in (sc.encoder, sc.patch_encoder or sc.encoder):
        enc = features.encoder(name)
        layers = features.encoder_layers(enc, deep) if enc else []
        if enc is None or (layers != ["all"] and sc.layer not in layers):
            raise ValueError(
                f"scan: encoder {name!r} / layer {sc.layer!r} has no features; encoders are "
                f"{names}" + (f", layers of {name}: {layers}" if enc else "")
            )
    modes = sc.scan_modes(features)
    if sc.head == "cells" or "cells" in modes:
        enc = features.encoder(sc.encoder)
        assert enc is not None
        layers = features.encoder_layers(enc, deep)  # ["all"]: a timm arch, checked later
        taps = sc.cells.taps(sc.layer)
        missing = [] if layers == ["all"] else [t for t in taps if t not in layers]
        if missing:
            raise ValueError(
                f"scan.cells.layers: {missing} are not layers of encoder {sc.encoder!r} "
                f"({layers}); add them to its features' layers"
            )
    if (sc.head == "cells" or "cells" in modes) and sc.classifier not in CELL_CLASSIFIERS:
        raise ValueError(
            f"scan: a cell head fits the natural class frequencies; classifier "
            f"{sc.classifier!r} reweights them: use {' or '.join(CELL_CLASSIFIERS)}"
        )
    for mode in modes:
        name = sc.encoder_for(mode)
        if mode != "cells" and features.mode_of(name) != FEATURE_MODE[mode]:
            which = "encoder" if mode == "dense" else "patch_encoder"
            raise ValueError(
                f"scan.modes: {mode} needs a bundle of {FEATURE_MODE[mode]} features, but "
                f"encoder {name!r} has {features.mode_of(name)} features (its bundles are "
                f"{features.mode_of(name)} bundles); set scan.{which} to an encoder with mode: "
                f"{FEATURE_MODE[mode]}, or drop {mode} from scan.modes"
            )


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at ``loc`` (list indices skipped), or None."""
    model: type[BaseModel] = StudyConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = [a for a in _flatten(field.annotation) if isinstance(a, type)]
        models = [a for a in inner if issubclass(a, BaseModel)]
        if not models:
            return None
        model = models[0]
    return model


def _flatten(annotation: Any) -> list[Any]:
    """``A | None``, ``list[A]``, ... -> [A, ...]."""
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    return [a for arg in args for a in _flatten(arg)]


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid study config:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            model = _model_at(e["loc"])
            valid = list(model.model_fields) if model else []
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}?" if close else "check the spelling"
            msg = f"unknown key ({hint}; see configs/ for valid keys)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(
    raw: dict[str, Any], source: str = "config", base_dir: Path | None = None, taps: bool = True
) -> StudyConfig:
    """Validate a config dict; relative paths resolve against ``base_dir``.

    ``taps=False`` leaves out the checks of timm archs' layer names, which build the model
    (torch); :func:`check_taps` runs them later (``skintl check`` validates the data first).
    """
    try:
        cfg = StudyConfig.model_validate(raw, context={"taps": taps})
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    return _resolve_paths(cfg, base_dir or Path.cwd(), source)


def check_taps(cfg: StudyConfig, source: str = "config") -> None:
    """The layer checks :func:`parse_config` left out with ``taps=False`` (imports torch when
    an encoder is a timm arch)."""
    if all(known.static_taps(e.arch) is not None for e in cfg.features.encoders):
        return
    try:
        StudyConfig.model_validate(cfg.model_dump(), context={"taps": True})
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def _weights_path(weights: str, base: Path, where: str) -> str:
    """``random`` / ``imagenet`` as they are; a weights file resolved against ``base``."""
    if weights in ("random", "imagenet"):
        return weights
    p = Path(weights)
    p = p if p.is_absolute() else (base / p).resolve()
    if not p.is_file():
        raise ConfigError(
            f"{where} file {p} does not exist (use 'random', 'imagenet' or the path of a file "
            "made by `skintl weights import`)"
        )
    return str(p)


def _resolve_paths(cfg: StudyConfig, base: Path, source: str) -> StudyConfig:
    data = cfg.data
    if data.root is not None:
        root = data.root if data.root.is_absolute() else (base / data.root).resolve()
        if not root.is_dir():
            raise ConfigError(f"{source}: data.root {root} is not a folder (fix the path)")
        data = data.model_copy(update={"root": root})
    if data.extra_metadata is not None:
        extra = data.extra_metadata
        extra = extra if extra.is_absolute() else (base / extra).resolve()
        if not extra.is_file():
            raise ConfigError(f"{source}: data.extra_metadata {extra} not found (fix the path)")
        data = data.model_copy(update={"extra_metadata": extra})
    runs = []
    for run in cfg.pretrain:
        src = run.source if run.source.is_absolute() else (base / run.source).resolve()
        if not src.is_file():
            raise ConfigError(f"{source}: pretrain run {run.name!r}: source config {src} not found")
        init = _weights_path(run.init, base, f"{source}: pretrain run {run.name!r}: init")
        runs.append(run.model_copy(update={"source": src, "init": init}))
    encoders = []
    for enc in cfg.features.encoders:
        if not enc.weights.startswith("pretrain:"):
            weights = _weights_path(enc.weights, base, f"{source}: encoder {enc.name!r}: weights")
            enc = enc.model_copy(update={"weights": weights})
        encoders.append(enc)
    features = cfg.features.model_copy(update={"encoders": encoders})
    return cfg.model_copy(update={"data": data, "features": features, "pretrain": runs})


def load_config(path: Path | str, taps: bool = True) -> StudyConfig:
    """Read and validate a YAML study config; paths resolve against the file's folder
    (``taps``: see :func:`parse_config`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a study config is a YAML mapping (key: value), got {type(raw).__name__}"
        )
    return parse_config(raw, source=str(path), base_dir=path.parent.resolve(), taps=taps)


def dump_config(cfg: StudyConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

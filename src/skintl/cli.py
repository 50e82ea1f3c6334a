"""Command line: argument parsing only; each subcommand calls one stage's ``run``."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path

from skintl.config import ConfigError, StudyConfig, check_taps, load_config, parse_config

log = logging.getLogger("skintl")

#: errors that are the user's to fix: printed as one message, never as a traceback
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, FileNotFoundError)


#: more of them, as (module, class): a module that was never imported raised none of them, so
#: they are looked up in ``sys.modules`` rather than imported (which would load torch)
LAZY_USER_ERRORS = (
    ("skintl.data.sources", "DataError"),
    ("skintl.evaluation.splits", "SplitError"),
    ("skintl.encoders.backbones", "WeightsError"),
    ("skintl.rundir", "StaleError"),
    ("skintl.scan.bundle", "BundleError"),
    ("skintl.scan.image", "ScanError"),
)


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` is the user's to fix (printed as one line, no traceback)."""
    if isinstance(e, USER_ERRORS):
        return True
    for module, name in LAZY_USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return True
    return False


def _run_dir(args: argparse.Namespace, cfg: StudyConfig) -> Path:
    return Path(args.run_dir) if args.run_dir else Path("runs") / cfg.name


def _study_and_print(cfg: StudyConfig, run_dir: Path) -> int:
    from skintl.evaluation.stage import summary_text
    from skintl.study import run_study

    print(summary_text(run_study(cfg, run_dir)))
    print(f"results in {run_dir}")
    report = run_dir / "report" / "index.html"
    if report.is_file():
        print(f"report: {report} (open it in a browser)")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    return _study_and_print(cfg, _run_dir(args, cfg))


def cmd_stage(args: argparse.Namespace) -> int:
    from skintl.rundir import removed_on_failure
    from skintl.study import STAGES, prepare_run_dir

    cfg = load_config(args.config)
    with removed_on_failure(_run_dir(args, cfg)) as run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        result = STAGES[args.command](cfg, run_dir)
    prepare_run_dir(cfg, run_dir)  # only now is the stage up to date with this config
    if args.command == "evaluate":
        from skintl.evaluation.stage import summary_text

        print(summary_text(result))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, taps=False)  # config first: a typo answers at once
    from skintl.data.check import check_data

    summary = check_data(cfg)  # every photo, before torch is imported
    check_taps(cfg, args.config)  # timm archs' layer names (builds them: torch)
    print(summary)
    return 0


def demo_config() -> StudyConfig:
    """The packaged demo study: synthetic photos, ResNet-18 and ResNet-50 from random init."""
    import yaml

    text = resources.files("skintl").joinpath("configs/demo.yaml").read_text()
    return parse_config(yaml.safe_load(text), source="skintl/configs/demo.yaml")


def cmd_demo(args: argparse.Namespace) -> int:
    cfg = demo_config()
    return _study_and_print(cfg, Path(args.run_dir) if args.run_dir else Path("runs") / "demo")


def cmd_report(args: argparse.Namespace) -> int:
    from skintl.evaluation.stage import check_evaluation
    from skintl.report.html import write_report
    from skintl.scan.stage import check_scan

    run_dir = Path(args.run_dir)
    if not (run_dir / "evaluation" / "metrics.csv").is_file():
        raise ConfigError(f"{run_dir}: no evaluation results; run `skintl study CONFIG` first")
    cfg = load_config(run_dir / "config.yaml")
    check_evaluation(cfg, run_dir)
    check_scan(cfg, run_dir)
    path = write_report(run_dir, n_boot=args.n_boot)
    print(f"report: {path}")
    return 0


def cmd_weights_import(args: argparse.Namespace) -> int:
    from skintl.encoders.importers import import_checkpoint

    prov = import_checkpoint(args.format, Path(args.file), Path(args.output), args.arch, args.trust)
    print(
        f"wrote {args.output}: {prov['arch']} backbone, method {prov['method']}, "
        f"from {prov['source_file']} (sha256 {prov['sha256'][:12]}...)"
    )
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    import numpy as np

    from skintl.pretrain.cli import run_from_args
    from skintl.pretrain.patients import patients_of, source_record, without_patients
    from skintl.pretrain.source import load_source

    cfg = load_config(args.config)
    if args.exclude_patients_of:
        study, patients = patients_of(Path(args.exclude_patients_of))
        cfg = without_patients(cfg, patients)
        log.info("source set: without the %d patients of study %s", len(patients), study.name)
    images, labels, groups, names = load_source(
        cfg, args.out_dir, args.input, args.image_size, args.positives
    )
    log.info(
        "source set: %d %s of %s",
        len(images),
        args.input,
        dict(zip(*np.unique(np.asarray(names)[labels], return_counts=True), strict=True)),
    )
    try:
        path = run_from_args(args, images, labels, groups, source_record(cfg, args.out_dir))
    except ValueError as e:  # bad options for this source set (batch size, labels, ...)
        raise ConfigError(f"pretrain: {e}") from None
    print(f"wrote {path}")
    return 0


def _add_pretrain(sub: argparse._SubParsersAction, full: bool) -> None:
    p = sub.add_parser(
        "pretrain", help="pre-train a backbone (supervised, SimCLR, MoCo v2) on a source set"
    )
    if not full:  # its options need torch: built only when this command is run
        return
    from skintl.pretrain.cli import add_arguments

    p.add_argument("config", help="study config whose data/patches sections give the source set")
    p.add_argument(
        "--input",
        choices=["patches", "images"],
        default="patches",
        help="train on the config's labelled patches or on whole photos",
    )
    p.add_argument("--image-size", type=int, default=128, help="photo size for --input images")
    p.add_argument(
        "--positives",
        choices=["none", "lesion", "patient"],
        default="none",
        help="contrastive positives also from other patches of one lesion (same lesion "
        "class) / patient (same class); healthy skin is never a lesion's positive",
    )
    p.add_argument(
        "--exclude-patients-of",
        metavar="CONFIG",
        help="drop the patients of this study (its config file, or a run directory) from the "
        "source set, so the encoder never sees a patient it will be tested on",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_pretrain)


def _add_weights(sub: argparse._SubParsersAction, full: bool) -> None:
    w = sub.add_parser("weights", help="manage encoder weights")
    if not full:  # the format names need torch: built only when this command is run
        return
    from skintl.encoders.importers import IMPORTERS

    wsub = w.add_subparsers(dest="weights_command", required=True)
    imp = wsub.add_parser(
        "import", help="convert a published checkpoint into a skintl encoder file"
    )
    imp.add_argument("file", help="checkpoint to convert")
    imp.add_argument("--format", required=True, choices=IMPORTERS.names())
    imp.add_argument("-o", "--output", required=True, help="skintl encoder file to write")
    imp.add_argument(
        "--arch",
        help="resnet18, resnet50 or a timm name such as tf_efficientnet_lite0 (default: the "
        "file's own, or inferred from the tensors)",
    )
    imp.add_argument(
        "--trust",
        action="store_true",
        help="allow full unpickling for files that need it (only for files you trust)",
    )
    imp.set_defaults(func=cmd_weights_import)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``pretrain`` and ``weights`` get their options only when ``command`` is theirs
    (or None), so every other command starts without importing torch."""
    p = argparse.ArgumentParser(
        prog="skintl",
        description="Transfer learning from pre-trained CNNs to skin lesions in clinical photos.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the demo study on generated synthetic photos")
    d.add_argument("--run-dir", help="output folder (default runs/demo)")
    d.set_defaults(func=cmd_demo)
    s = sub.add_parser("study", help="run every stage of a study config")
    s.add_argument("config", help="YAML study config")
    s.add_argument("--run-dir", help="output folder (default runs/<config name>)")
    s.set_defaults(func=cmd_study)
    helps = {
        "data": "read and validate the data source into manifest.parquet",
        "patches": "cut labelled patches",
        "features": "extract pooled features of every encoder and layer (cached)",
        "evaluate": "patient-grouped cross-validation of every classifier",
    }
    for name, text in helps.items():
        sp = sub.add_parser(name, help=text)
        sp.add_argument("config", help="YAML study config")
        sp.add_argument("--run-dir", help="output folder (default runs/<config name>)")
        sp.set_defaults(func=cmd_stage)
    r = sub.add_parser("report", help="write the HTML report of a finished run directory")
    r.add_argument("run_dir", help="run directory of `skintl study`")
    r.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of patients")
    r.set_defaults(func=cmd_report)
    c = sub.add_parser("check", help="validate the config and its data; write nothing")
    c.add_argument("config", help="YAML study config")
    c.set_defaults(func=cmd_check)
    _add_weights(sub, command in (None, "weights"))
    _add_pretrain(sub, command in (None, "pretrain"))
    from skintl.scan.cli import add_parsers

    add_parsers(sub)
    return p


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv) or "").parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args))
    except Exception as e:
        if not is_user_error(e):
            raise
        msg = str(e).strip("'\"") if isinstance(e, KeyError) else str(e)
        print(f"skintl: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

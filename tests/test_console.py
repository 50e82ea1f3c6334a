"""What a user sees on the console: progress without a terminal, the patch counts table."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from skintl.data.stage import counts_table
from skintl.progress import progress
from skintl.study import counts_summary


def test_progress_without_a_terminal_logs_plain_lines(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="skintl"):
        assert list(progress(range(3), "patches", "patch", every_s=0.0)) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err  # no bar written to the captured stderr
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" (")[0] for line in lines] == [
        "patches: 1/3 patch",
        "patches: 2/3 patches",
        "patches: 3/3 patches",
        "patches: 3/3 patches",  # the closing line
    ]
    assert lines[-1].endswith("patch/s)")


def test_progress_logs_once_at_the_end_when_fast(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="skintl"):
        list(progress(iter(range(5)), "data", "photo"))
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["data: 5 photos"]


def _index(n_patients: int) -> pd.DataFrame:
    rows = [(f"P{p:02d}", c) for p in range(n_patients) for c in ["AK", "healthy", "healthy"]]
    return pd.DataFrame(rows, columns=["patient_id", "class"])


def test_counts_summary_prints_every_patient_when_few(tmp_path: Path) -> None:
    text = counts_summary(counts_table(_index(3), ["AK", "healthy", "SK"]), tmp_path)
    assert str(tmp_path / "patches" / "counts.csv") in text
    lines = text.splitlines()
    assert [line.split()[0] for line in lines[-4:]] == ["P00", "P01", "P02", "total"]
    assert lines[-1].split() == ["total", "3", "6", "0"]


def test_counts_summary_is_compact_when_many(tmp_path: Path) -> None:
    text = counts_summary(counts_table(_index(40), ["AK", "healthy", "SK"]), tmp_path, max_rows=30)
    assert "over 40 patients" in text and "counts.csv" in text and "P00" not in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[-4:]}
    assert rows["total"] == ["40", "80", "0"]
    assert rows["min"] == rows["median"] == rows["max"] == ["1", "2", "0"]


def test_help_and_data_commands_start_without_torch() -> None:
    """`skintl --help` and the data commands parse without importing torch, sklearn, Lightning
    (their start-up time is measured in benchmarks/bench_startup.py)."""
    import subprocess
    import sys

    code = "import sys; from skintl.cli import build_parser, _command; "
    code += "build_parser(_command(['data', 'c.yaml'])).parse_args(['data', 'c.yaml']); "
    code += (
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'lightning'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pretrain_help_still_lists_its_options(capsys: pytest.CaptureFixture) -> None:
    from skintl.cli import main

    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    assert "--method" in capsys.readouterr().out


def test_only_progress_draws_bars() -> None:
    """Every loop reports through skintl.progress (a bar on a terminal, lines elsewhere)."""
    import skintl

    src = Path(skintl.__file__).parent
    users = sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*.py") if "tqdm" in p.read_text()
    )
    assert users == ["progress.py"]


def test_pretraining_logs_epochs_without_a_terminal(tmp_path: Path) -> None:
    from skintl.pretrain.train import EpochLog, _trainer

    trainer = _trainer(tmp_path, 2, "cpu", 1, "auto", 1, "32-true", True, [], steps_per_epoch=3)
    assert trainer.progress_bar_callback is None  # stderr is captured here, not a terminal
    assert any(isinstance(c, EpochLog) for c in trainer.callbacks)
    assert trainer.log_every_n_steps == 3  # not above the epoch's batches: no Lightning warning

"""Run-directory helpers every stage shares: fingerprints of what a stage was computed from.

A stage writes a JSON record last, holding the fingerprint of everything its output depends on
(settings, input file contents, its upstream stage's fingerprint). A later stage compares
fingerprints before reusing or reading anything, so a stale file is never paired with new inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skintl.io import write_text

log = logging.getLogger(__name__)


class StaleError(RuntimeError):
    """An upstream file that was not computed from the run's current inputs; says what to rerun."""


def stale(path: Path, why: str, stage: str) -> StaleError:
    """The one-line refusal of a stage output ``path`` that no longer matches the config.

    ``stage`` names the command that brings it up to date (``skintl study`` runs them all).
    """
    return StaleError(f"{path}: {why}; rerun `skintl {stage} CONFIG` (or `skintl study CONFIG`)")


def changed_keys(recorded: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two nested dicts (sorted).

    Used to say which settings changed; a value that is not a dict on both sides is compared
    whole.
    """
    if not (isinstance(recorded, dict) and isinstance(now, dict)):
        return [] if recorded == now else [prefix or "(all)"]
    out = []
    for key in sorted({*recorded, *now}, key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        out += changed_keys(recorded.get(key), now.get(key), name)
    return out


def read_record(meta_path: Path) -> dict[str, Any] | None:
    """A stage's JSON record, or None when it is missing or unreadable (work not complete)."""
    try:
        record = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def check_record(meta_path: Path, inputs: dict[str, Any], output: Path, stage: str) -> str:
    """The fingerprint of ``inputs``, refused unless the record ``meta_path`` holds it.

    Raises:
        StaleError: naming ``output``, the settings that changed (when the record lists its
            ``inputs``) and the command ``stage`` that recomputes it.
    """
    fp = fingerprint(inputs)
    record = read_record(meta_path)
    if record is None:
        raise stale(output, "not computed yet", stage)
    if record.get("fingerprint") != fp:
        changed = changed_keys(record.get("inputs"), inputs) if "inputs" in record else []
        why = f"changed: {', '.join(changed)}" if changed else "other inputs"
        raise stale(output, f"computed from other settings or files than the config's ({why})",
                    stage)  # fmt: skip
    return fp


def fingerprint(obj: Any) -> str:
    """A stable short hash of a JSON-able object (configs, file lists)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fingerprint_matches(meta_path: Path, fp: str) -> bool:
    """Whether the JSON record ``meta_path`` (written last, marking work complete) holds ``fp``."""
    try:
        return bool(json.loads(meta_path.read_text()).get("fingerprint") == fp)
    except (OSError, json.JSONDecodeError):
        return False


def patches_fingerprint(run_dir: Path) -> str:
    """The fingerprint of the run's patches, which every later stage depends on."""
    return str(json.loads((run_dir / "patches" / "meta.json").read_text())["fingerprint"])


def prepare_run_dir(config_text: str, run_dir: Path) -> Path:
    """Create the run directory and record the resolved config (YAML text) in it.

    Called once a stage is up to date with that config: the report and ``skintl bundle`` read
    ``config.yaml`` as the config the run's files must match.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(config_text, run_dir / "config.yaml")
    return run_dir


def invalidate(meta_path: Path) -> None:
    """Remove a completion record before its outputs are rewritten.

    Outputs are replaced one file at a time; without this, a crash between two of them would
    leave the old record vouching for a mix of old and new files.
    """
    meta_path.unlink(missing_ok=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_hashes(paths: list[str], cache_path: Path) -> list[str]:
    """SHA-256 of each file, re-read only when its size or modification time changed.

    The cache (a JSON file in the run directory) maps a path to its size, mtime and hash, so
    checking thousands of unchanged photos costs one ``stat`` each, while a file edited in place
    (even to the same size) is hashed again.
    """
    try:
        cache: dict[str, list[Any]] = json.loads(cache_path.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    out, changed = [], False
    for p in paths:
        st = Path(p).stat()
        key = [st.st_size, st.st_mtime_ns]
        hit = cache.get(p)
        if hit is None or hit[:2] != key:
            hit = [*key, sha256_file(Path(p))]
            cache[p] = hit
            changed = True
        out.append(str(hit[2]))
    if changed:
        write_text(json.dumps(cache), cache_path)
    return out


@contextmanager
def removed_on_failure(run_dir: Path) -> Iterator[Path]:
    """Remove ``run_dir`` if the block fails and the directory did not exist before it.

    A study that stops at its data stage then leaves no half-made run directory behind.
    """
    # the topmost folder this block creates (``runs/`` too, on a first run)
    new = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
    try:
        yield run_dir
    except BaseException:
        if new is not None and new.exists():
            shutil.rmtree(new)
            log.warning("removed %s, which this failed run had made", new)
        raise

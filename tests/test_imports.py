"""The house's floors: no import circle between rooms, and checks that need no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import skintl
from skintl import names
from studyhelpers import tiny_config, write_config

SRC = Path(skintl.__file__).parent


def _room(module: str) -> str | None:
    """``skintl.data.sources`` -> ``data`` (a subpackage), ``skintl.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "skintl" and len(parts) > 1 else None


def room_imports() -> dict[str, dict[str, list[str]]]:
    """room -> imported room -> where (file:line), from every import statement, including those
    inside functions (a lazy import is still an arrow between rooms)."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        me = rel.parts[0]
        package = ["skintl", *rel.parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, node.module] if node.module else base)
                # `from skintl import names`: the imported names are rooms themselves
                subs = [f"{module}.{a.name}" for a in node.names]
                targets = subs if module == "skintl" else [module]
            else:
                continue
            for target in targets:
                room = _room(target)
                if room is not None and room != me:
                    edges[me][room].append(f"{rel}.py:{node.lineno}")
    return edges


def circles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected groups of more than one room (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            found.append(sorted([v, *group]))

    for v in list(edges):
        if v not in index:
            visit(v)
    return [g for g in found if len(g) > 1]


def test_no_import_circle_between_rooms() -> None:
    edges = room_imports()
    bad = circles(edges)
    detail = [
        f"{a} -> {b}: {', '.join(edges[a][b][:3])}"
        for group in bad
        for a in group
        for b in group
        if b in edges[a]
    ]
    assert not bad, "import circles between rooms:\n" + "\n".join(detail)


def test_the_circle_finder_finds_one() -> None:
    edges = {"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}, "d": {"a": ["w"]}}
    assert circles(edges) == [["a", "b", "c"]]


def test_config_and_names_import_no_room() -> None:
    """config.py is the floor every room reads: it imports none of them at module level."""
    edges = room_imports()
    assert set(edges["names"]) == set()
    assert set(edges["config"]) <= {"names", "labels", "encoders"}  # encoders: timm taps, lazily


def test_names_agree_with_the_registries() -> None:
    from skintl.encoders.backbones import BACKBONES, layer_info
    from skintl.evaluation.classifiers import CLASSIFIERS
    from skintl.features.handcrafted import HANDCRAFTED

    assert sorted(names.CLASSIFIERS) == CLASSIFIERS.names()
    assert sorted(names.HANDCRAFTED) == HANDCRAFTED.names()
    assert sorted(names.RESNET_ARCHS) == BACKBONES.names()
    for arch in names.RESNET_ARCHS:
        assert list(layer_info(arch)) == list(names.RESNET_TAPS)


def test_timm_names_read_without_importing_timm() -> None:
    import timm

    assert names.timm_names() == set(timm.list_models())
    names.check_arch("tf_efficientnet_lite0")
    with pytest.raises(ValueError, match="did you mean tf_efficientnet_lite0"):
        names.check_arch("tf_eficientnet_lite0")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {m.split(".")[0] for m in eval(out.stdout.strip().splitlines()[-1])}


HEAVY = {"torch", "torchvision", "timm", "lightning", "sklearn", "scipy"}


def test_help_imports_nothing_heavy() -> None:
    loaded = _modules_after(
        "from skintl.cli import build_parser\nbuild_parser('').format_help()\n"
        "build_parser('scan').format_help()"
    )
    assert not loaded & (HEAVY | {"numpy", "pandas"})


def test_check_validates_config_and_photos_without_torch(
    synthetic_root: Path, tmp_path: Path
) -> None:
    good = write_config(tmp_path / "good.yaml", tiny_config(synthetic_root))
    typo = write_config(tmp_path / "typo.yaml", tiny_config(synthetic_root, patches={"sise": 3}))
    for path, rc in ((good, 0), (typo, 2)):
        code = (
            f"from skintl.cli import main\nrc = main(['check', {str(path)!r}])\n"
            f"assert rc == {rc}, rc"
        )
        assert not _modules_after(code) & HEAVY, path.name


def test_a_config_typo_says_did_you_mean(synthetic_root: Path, tmp_path: Path) -> None:
    from skintl.config import ConfigError, load_config

    cfg = tiny_config(synthetic_root, evaluation={"mlp": {"max_epoch": 3}})
    with pytest.raises(ConfigError, match=r"evaluation.mlp.max_epoch: .*did you mean max_epochs"):
        load_config(write_config(tmp_path / "c.yaml", cfg))
    cfg = tiny_config(synthetic_root, featurs={})
    with pytest.raises(ConfigError, match=r"featurs: .*did you mean features"):
        load_config(write_config(tmp_path / "c.yaml", cfg))


def test_timm_layers_checked_later_when_deferred(synthetic_root: Path, tmp_path: Path) -> None:
    from skintl.config import ConfigError, check_taps, load_config

    enc = [{"name": "lite", "arch": "tf_efficientnet_lite0", "layers": ["blocks.9"]}]
    path = write_config(
        tmp_path / "c.yaml", tiny_config(synthetic_root, features={"encoders": enc})
    )
    cfg = load_config(path, taps=False)
    with pytest.raises(ConfigError, match=r"no layers \['blocks.9'\]"):
        check_taps(cfg, str(path))
    with pytest.raises(ConfigError, match=r"no layers \['blocks.9'\]"):
        load_config(path)

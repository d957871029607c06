"""Every recipe in recipes/ parses into a valid config (so a typo in a shipped recipe fails CI)."""

from pathlib import Path

import pytest
import yaml

from gpgrl.recipe import load_config

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_is_valid(path):
    from gpgrl.rewards.scoring import as_reward_functions

    cfg = load_config(path)
    assert cfg.model.name_or_path and cfg.data.dataset
    assert cfg.algo.name in ("gpg", "grpo", "dr_grpo", "dapo")
    assert as_reward_functions(cfg.rewards)  # every reward exists and takes the recipe's parameters
    assert path.read_text().startswith("#")  # a header: what it reproduces, hardware, launch command


@pytest.mark.parametrize("path", sorted((RECIPES[0].parent / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_are_yaml(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["distributed_type"] in ("MULTI_GPU", "DEEPSPEED", "FSDP")


ROOT = RECIPES[0].parents[1]


def _original_values() -> dict[tuple[str, int], list[tuple[str, str]]]:
    """docs/recipes.md's table "The original's values": (recipe, processes) -> [(setting, value)]."""
    text = (ROOT / "docs" / "recipes.md").read_text()
    section = text[text.index("### The original's values"):text.index("## Differences from the original")]
    rows: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        recipe, processes, setting, value = (c.strip("`") for c in cells[:4])
        rows.setdefault((recipe, int(processes)), []).append((setting, value))
    return rows


ORIGINAL = _original_values()


def _effective(path: Path, processes: int) -> dict:
    from gpgrl.dry_run import dry_run

    out = dry_run(str(path), num_processes=processes)
    return yaml.safe_load(out[out.index("effective settings:") + len("effective settings:"):out.index("dry run OK")])


def test_the_table_covers_every_recipe_of_the_papers_runs():
    quickstarts = {"quickstart_cpu", "quickstart_tools_cpu"}  # the CPU demonstrations, not runs of the paper
    assert {r for r, _ in ORIGINAL} == {p.stem for p in RECIPES if p.stem not in quickstarts}
    assert sum(len(v) for v in ORIGINAL.values()) >= 150


@pytest.mark.parametrize(("recipe", "processes"), sorted(ORIGINAL), ids=lambda x: str(x))
def test_recipe_matches_the_original_run(recipe, processes):
    from gpgrl.data.datasets import get_field

    effective = _effective(ROOT / "recipes" / f"{recipe}.yaml", processes)
    wrong = []
    for setting, cell in ORIGINAL[(recipe, processes)]:
        expected, actual = yaml.safe_load(cell), get_field(effective, setting)
        if isinstance(actual, float) and isinstance(expected, (int, str)) and not isinstance(expected, bool):
            expected = float(expected)  # "1e-06" is a string to YAML 1.1
        if actual != expected:
            wrong.append(f"{setting}: recipe {actual!r}, original {expected!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_dry_run_passes_on_a_fresh_clone(path, tmp_path, monkeypatch, capsys):
    """No local data (a fresh clone, run from an empty folder): a warning naming the preparation, exit 0."""
    from gpgrl.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("gpgrl.models.vision.require_vision", lambda: None)  # the extra: tested below
    assert main(["train", "--config", str(path), "--dry-run", "--num-processes", "8"]) == 0
    out = capsys.readouterr().out
    dataset = load_config(path).data.dataset
    if dataset.startswith("data/"):
        name = Path(dataset).parent.name
        assert f"warning: data.dataset: no such file {dataset!r}" in out
        assert f"prepare it with `gpgrl data prepare {name}`" in out
    else:
        assert "warning" not in out


def test_dry_run_without_the_vision_extra_warns(monkeypatch, capsys):
    from gpgrl.cli import main

    def missing():
        raise ImportError("install it: pip install 'gpgrl[vision]'")

    monkeypatch.setattr("gpgrl.models.vision.require_vision", missing)
    path = ROOT / "recipes" / "vision-r1v-geoqa_qwen2.5-vl-3b_gpg.yaml"
    assert main(["train", "--config", str(path), "--dry-run", "--num-processes", "8"]) == 0
    assert "warning: this recipe has images and needs the vision extra to train: install it" in capsys.readouterr().out

"""Every shipped template validates, names itself, and renders into a hadolint-clean Dockerfile shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.build.base import available_recipes, load_recipe
from devenv.spec import load_spec
from devenv.spec.scaffold import available_templates, init_from_template

TEMPLATES = ["minimal", "sklearn", "pytorch", "jax"]


def test_the_four_templates_ship() -> None:
    assert set(TEMPLATES) <= set(available_templates())


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_validates_and_takes_the_folder_name(template: str, tmp_path: Path) -> None:
    directory = tmp_path / f"My {template} Project"
    written = init_from_template(template, directory)
    assert {p.name for p in written} == {"devenv.yaml", "requirements.in"}
    spec = load_spec(directory / "devenv.yaml")
    assert spec.name == f"my-{template}-project"
    assert spec.template == template
    assert spec.python == load_recipe(spec.base).python  # every template locks against its base
    assert (directory / "requirements.in").read_text().strip()


@pytest.mark.parametrize("template", ["pytorch", "jax"])
def test_gpu_templates_ask_for_a_gpu(template: str, tmp_path: Path) -> None:
    init_from_template(template, tmp_path)
    gpu = load_spec(tmp_path / "devenv.yaml").resources.gpu
    assert gpu is not None and gpu.count >= 1 and gpu.type


def test_base_recipes_are_complete() -> None:
    assert {"cpu", "cuda"} <= set(available_recipes())
    for name in available_recipes():
        recipe = load_recipe(name)
        assert "@sha256:" in recipe.upstream and len(recipe.upstream_digest) == len("sha256:") + 64
        assert {"python3", "python3-venv", "openssh-server", "tini"} <= set(recipe.packages)
        assert recipe.image_tag.startswith(f"devenv/base:{name}-")
    assert load_recipe("cpu").bootstrap and not load_recipe("cuda").bootstrap


def test_python_must_match_the_base(tmp_path: Path) -> None:
    from devenv.build.project import lock_inputs, open_project
    from devenv.errors import LockError

    init_from_template("minimal", tmp_path)
    spec = tmp_path / "devenv.yaml"
    spec.write_text(spec.read_text() + "base: cuda\n")
    with pytest.raises(LockError) as failure:
        lock_inputs(open_project(spec), "x86_64")
    assert "3.12" in failure.value.message and 'python: "3.12"' in (failure.value.hint or "")

"""The project layout keeps `import datasets` meaning Hugging Face's package."""

import configparser
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_datasets_folder_does_not_shadow_huggingface_datasets(tmp_path):
    # A stand-in for an installed Hugging Face `datasets`, placed *after* the repo root on the
    # path, as site-packages is when a user runs `python -m ...` from the checkout.
    fake = tmp_path / "site" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("IS_HF = True\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    code = (
        "import datasets, act_jax_datasets.episodes as e;"
        "print(getattr(datasets, 'IS_HF', False), e.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "True", "the repo's datasets/ folder shadowed the installed `datasets`"
    assert Path(out[1]).is_relative_to(ROOT / "datasets")


def test_datasets_folder_is_not_a_regular_package():
    assert not (ROOT / "datasets" / "__init__.py").exists()


def test_every_package_folder_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = set()
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in {"act_jax", "interp", "hardware", "datasets"}:
            parts = rel.parts
            if parts[0] == "datasets":
                parts = ("act_jax_datasets",) + parts[1:]
            found.add(".".join(parts))
    assert found <= listed, f"package folders missing from setup.cfg: {found - listed}"

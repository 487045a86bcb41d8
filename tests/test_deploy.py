import os
import subprocess
import sys

import pytest

from perceptual_sr.app.deploy import stage_space
from perceptual_sr.commands.cli import main


def test_the_space_gets_exactly_what_it_runs(tmp_path):
    files = {str(path) for path in stage_space(tmp_path)}
    assert {"app.py", "requirements.txt", "README.md", "perceptual_sr/app/demo.py",
            "perceptual_sr/pretrained/perceptual-sr-x4/model.safetensors",
            "perceptual_sr/pretrained/perceptual-sr-x4/real-photo/model.safetensors",
            "examples/animal_cat.jpg"} <= files
    assert not [name for name in files if name.startswith(("tests/", "docs/", ".git")) or "vgg16" in name
                or "alexnet" in name or "__pycache__" in name]
    front_matter = (tmp_path / "README.md").read_text().split("---\n")[1]
    assert "sdk: gradio" in front_matter and "app_file: app.py" in front_matter


@pytest.mark.slow
def test_the_staged_app_starts_from_the_staged_folder_alone(tmp_path):
    stage_space(tmp_path)
    script = ("import perceptual_sr, app\n"
              "from perceptual_sr import SRPipeline\n"
              "from perceptual_sr.app.demo import build_demo\n"
              "assert perceptual_sr.__file__.startswith(%r), perceptual_sr.__file__\n"
              "build_demo(SRPipeline.from_pretrained(), cache_examples=False)\n"
              "print('ok')\n") % str(tmp_path)
    environment = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_deploy_space_creates_a_gradio_space_and_uploads_the_staged_folder(tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi, RepoUrl

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs["repo_type"], kwargs["space_sdk"])
        return RepoUrl(f"https://huggingface.co/spaces/{repo_id}")

    def upload_folder(self, *, repo_id, repo_type, folder_path, **kwargs):
        from pathlib import Path

        calls["upload"] = (repo_id, repo_type, sorted(str(p.relative_to(folder_path))
                                                      for p in Path(folder_path).rglob("*") if p.is_file()))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert main(["deploy-space", "someone/sr-demo"]) == 0
    assert calls["create"] == ("someone/sr-demo", "space", "gradio")
    assert calls["upload"][:2] == ("someone/sr-demo", "space") and "app.py" in calls["upload"][2]
    assert "https://huggingface.co/spaces/someone/sr-demo" in capsys.readouterr().out
    assert main(["deploy-space", "someone/sr-demo", "--dry-run"]) == 0
    listed = capsys.readouterr().out.split()
    assert "app.py" in listed and "perceptual_sr/app/demo.py" in listed
    assert main(["deploy-space", "not a space!!"]) == 2 and "expected a Space id" in capsys.readouterr().err

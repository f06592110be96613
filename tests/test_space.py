"""push_to_hub.py --space: a Gradio Space (app.py + the modules it imports, requirements.txt, README with the Space
metadata, app_config.json naming the model) written by --dry_run, uploaded to the local Hub stand-in, and runnable:
the exported app serves its page with the model that app_config.json names."""

import json
import shutil
import urllib.request

import yaml
from test_push_to_hub import REPO_ID, REPO_ROOT, _folder_files, fabricate_output_dir

import push_to_hub
from publishing import SPACE_CODE_FILES
from scripts.app_browser import running_app

SPACE_ID = "alice/tsn-paligemma-demo"
SPACE_FILES = {*SPACE_CODE_FILES, "requirements.txt", "README.md", "app_config.json"}


def space_metadata(readme: bytes) -> dict:
    return yaml.safe_load(readme.decode().split("---")[1])


def test_dry_run_writes_the_model_and_its_space(tmp_path):
    run = fabricate_output_dir(tmp_path / "run")
    export = tmp_path / "export"
    argv = [str(run.output_dir), "--repo_id", REPO_ID, "--space", SPACE_ID, "--dry_run", str(export)]
    assert push_to_hub.main(argv) == 0
    space = _folder_files(export / "space")
    assert set(space) == SPACE_FILES
    for name in SPACE_CODE_FILES:  # the project's own files, unchanged
        assert space[name] == (REPO_ROOT / name).read_bytes()
    assert json.loads(space["app_config.json"]) == {"model": REPO_ID}
    metadata = space_metadata(space["README.md"])
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py" and metadata["models"] == [REPO_ID]
    assert "gradio" in space["requirements.txt"].decode() and "torchvision" in space["requirements.txt"].decode()
    card = (export / "model" / "README.md").read_text()
    assert f"[{SPACE_ID}](https://huggingface.co/spaces/{SPACE_ID})" in card


def test_upload_creates_a_gradio_space_beside_the_model(tmp_path, hub):
    run = fabricate_output_dir(tmp_path / "run")
    argv = [str(run.output_dir), "--repo_id", REPO_ID, "--space", SPACE_ID]
    assert push_to_hub.main(argv) == 0
    space = hub.files(f"spaces/{SPACE_ID}")
    assert set(space) == SPACE_FILES and json.loads(space["app_config.json"]) == {"model": REPO_ID}
    created = [call.json for call in hub.calls("create_repo")]
    assert {"type": "space", "sdk": "gradio"}.items() <= next(c for c in created if c.get("type") == "space").items()
    assert f"spaces/{SPACE_ID}" in hub.files(REPO_ID)["README.md"].decode()


def test_bad_space_id_fails_before_any_upload(tmp_path, hub, capsys):
    run = fabricate_output_dir(tmp_path / "run")
    assert push_to_hub.main([str(run.output_dir), "--repo_id", REPO_ID, "--space", "not a space id"]) == 1
    assert "--repo_id 'not a space id' is not a valid Hub repo id" in capsys.readouterr().err
    assert hub.calls("create_repo") == []


def test_the_exported_space_serves_the_model_its_config_names(tmp_path, tiny_checkpoint):
    run = fabricate_output_dir(tmp_path / "run")
    export = tmp_path / "export"
    argv = [str(run.output_dir), "--repo_id", REPO_ID, "--space", SPACE_ID, "--dry_run", str(export)]
    assert push_to_hub.main(argv) == 0
    space = tmp_path / "space"
    shutil.copytree(export / "space", space)
    # On the Hub the Space loads REPO_ID; here the same app_config.json names a local model folder instead.
    (space / "app_config.json").write_text(json.dumps({"model": str(tiny_checkpoint())}))
    with running_app(None, app_file=space / "app.py") as url:
        page = urllib.request.urlopen(url, timeout=30).read().decode()
    assert "TSN-PaliGemma aerial-image model" in page

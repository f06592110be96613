# Every target bootstraps .venv itself: a fresh clone needs nothing but python3 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Offline by default: nothing in tests or the demo may reach the Hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: venv test lint demo app bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,hpo]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint
	$(PY) -m pytest -q

# The demo fine-tunes the shipped captioner (examples/rs-mini) with QLoRA on the bundled sample; see configs/demo.yaml.
demo: $(STAMP)
	$(PY) finetune.py configs/demo.yaml

# The captioner in a web page at http://127.0.0.1:7860: the shipped model unless APP_MODEL names another
# (e.g. APP_MODEL=outputs/demo/merged after `make demo`).
APP_MODEL ?= examples/rs-mini
app: $(STAMP)
	$(PY) app.py --model $(APP_MODEL) $(APP_ARGS)

bench: $(STAMP)
	@for script in bench/[!_]*.py; do echo "== $$script"; $(PY) -m bench.$$(basename $$script .py) || exit 1; done

clean:
	rm -rf outputs .pytest_cache .ruff_cache

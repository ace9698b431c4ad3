# Two commands:  `make run` (set up, then start the web UI with all four extensions)
#                `make test` (set up, then run the whole test suite)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  := models/gemma-3-270m-q4_k_m.gguf
EXTENSIONS := memory rag-enhancer adapter-switcher vram-advisor
# llama-cpp-python builds from source (~10 min on 2 cores, once: pip caches the wheel)
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: run test setup browser clean adapters

run: setup
	$(BIN)/pocketpack serve --model $(MODEL) --extensions $(EXTENSIONS)

test: setup browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# three demo voices (pirate, formal, poet) trained on the embedded model: ~3 min each on 2 idle cores
adapters: setup
	$(BIN)/pocketpack adapters demo --base $(MODEL) --dir user_data/loras

GRADIO_437 := .cache/gradio-4.37.2-py3-none-any.whl
GRADIO_437_ENV := .cache/gradio-4.37

setup: $(VENV)/.installed $(MODEL) $(GRADIO_437) $(GRADIO_437_ENV)/.installed

# torch first, pinned, so that nothing later pulls the multi-GB CUDA build
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -r requirements.lock
	$(BIN)/pip install --no-deps -e .
	touch $@

$(MODEL): $(VENV)/.installed
	$(BIN)/pocketpack model default --model-dir models

# TGWUI's gradio (4.37) is read, not installed, by the UI compatibility test
$(GRADIO_437): $(VENV)/.installed
	$(BIN)/pip download --no-deps --quiet -d .cache gradio==4.37.2

# A second environment whose gradio is TGWUI's 4.37 (huggingface_hub pinned as TGWUI's fork
# needs), seeing the main .venv's other packages, to build every extension's ui() under it
$(GRADIO_437_ENV)/.installed: $(VENV)/.installed
	$(PYTHON) -m venv $(GRADIO_437_ENV)
	$(GRADIO_437_ENV)/bin/pip install --quiet gradio==4.37.2 huggingface_hub==0.25.2
	{ $(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; echo "$(CURDIR)"; } \
	  > "$$($(GRADIO_437_ENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_pocketpack.pth"
	touch $@

# Debian's Chromium for the browser test (needs root; skipped with a message otherwise)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and not root: the browser test will be skipped"; fi; }

clean:
	rm -rf $(VENV) models

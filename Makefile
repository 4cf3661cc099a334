# Two commands for a fresh Linux machine:
#   make demo   install recon and run its main job on the built-in default scene
#   make test   install the test dependencies and run the suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU build of torch; on a CUDA machine run `make install TORCH=torch` (gsplat then uses its CUDA kernels).
TORCH ?= torch==2.13.0

.PHONY: install install-dev demo test system-deps js-tools blender-bpy

system-deps:
	bash scripts/install_system_deps.sh

# "$(TORCH)" in the same pip command as the extras keeps the pinned CPU torch. The enhance extra's
# spandrel pulls torchvision (a CUDA build here, whose compiled ops cannot load beside the CPU torch);
# recon declares those ops before torchvision is imported, so spandrel, transformers and diffusers
# import either way (recon/enhance/torchvision_compat.py, docs/enhance.md).
$(VENV)/.installed: pyproject.toml
	$(MAKE) system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev,export,video,priors,cluster,enhance]" "$(TORCH)"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed

demo: install
	$(VENV)/bin/recon demo

# Node tools for the export tests (Khronos glTF-Validator, Niantic's SPZ library as WASM); the
# tests that use them skip when they are missing.
JS_TOOLS := tools/js/node_modules/.package-lock.json
$(JS_TOOLS): tools/js/package.json tools/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix tools/js --no-audit --no-fund --loglevel=error || echo "npm ci failed: the glTF/SPZ reference checks will be skipped"; \
	else echo "npm not found: the glTF/SPZ reference checks will be skipped"; fi

js-tools: $(JS_TOOLS)

# Blender as a Python module (the official build, with USD, which Debian's Blender lacks) for
# tests/test_blender.py, in its own venv: bpy pins numpy < 2 and Python 3.11.
BPY_VENV ?= .venv-blender
BPY_PYTHON ?= python3.11
$(BPY_VENV)/.installed:
	test -x $(BPY_VENV)/bin/python || $(BPY_PYTHON) -m venv $(BPY_VENV)
	$(BPY_VENV)/bin/python -m pip install -q "bpy==5.0.1"
	touch $@

blender-bpy: $(BPY_VENV)/.installed

# The viewer tests (issue 7) drive Debian's chromium through Playwright: installed here only when
# missing (as root; otherwise the script prints the apt-get command).
test: install-dev js-tools blender-bpy
	bash scripts/install_system_deps.sh --test
	$(PY) -m pytest tests  # pytest exits 5 when no test is collected, which fails the target

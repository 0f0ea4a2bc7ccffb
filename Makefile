# Each target does its own set-up: a .venv with the pinned toolchain, created on first use.
# `make demo` installs only the runtime (jax, flax, orbax, pillow); `make test` adds the test,
# training, notebook, web-app, video, export and oneDNN extras (building the oneDNN FFI part), the
# CPU build of torch as the parity reference, and Chromium (from Debian) for the web app's browser test.
VENV ?= .venv
PY := $(VENV)/bin/python
WEIGHTS ?= weights/flax
EXTRAS := test,train,notebooks,serve,video,export,onednn,keras

.PHONY: demo test check test-all bench quality notebooks clean

$(VENV)/.runtime: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	# torch first, pinned: the CPU 2.13.0 build is the parity reference for the tests only
	# (adain_jax never imports it); installing it first keeps pip from pulling a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	# ONNX export: see the `export` extra in pyproject.toml for why --no-deps.
	$(PY) -m pip install -q --no-deps jax2onnx==0.17.1
	# The oneDNN bfloat16 convolution's FFI part (3 s; says why and goes on where it cannot build).
	$(PY) -m adain_jax.onednn.build
	command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends chromium; } \
		|| echo "(no Chromium: tests/test_serve_browser.py cannot run)"
	touch $@

# The main job: get the official weights (or say why not), stylize the packaged example pairs, write outputs/.
# Without them (no network, say) the commands fall back to the model packaged with adain-jax.
demo: $(VENV)/.runtime
	@test -d $(WEIGHTS) || $(PY) convert/vgg_to_flax.py --download --out $(WEIGHTS) \
		|| echo "(no official weights: the demo runs the model packaged with adain-jax)"
	@W=$$(test -d $(WEIGHTS) && echo "--weights $(WEIGHTS)"); \
		$(VENV)/bin/adain-jax info $$W && $(VENV)/bin/adain-jax demo $$W --output outputs

# The default test suite (what CI runs): the linter and the type checker over the library, then pytest
# (slow tests are marked and left to test-all; under CI=true a skip not in tests/skips_allowed.txt fails).
# pytest runs in TEST_WORKERS processes (pytest-xdist; CI has 2 cores), each test file whole in one of
# them (--dist loadfile: a file's module-scoped runs happen once); TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15
test: check $(VENV)/.installed
	$(PYTEST) -m "not slow"

check: $(VENV)/.installed
	$(VENV)/bin/ruff check adain_jax
	$(VENV)/bin/mypy adain_jax

test-all: $(VENV)/.installed
	$(PYTEST)

# Execute both Colab notebooks top to bottom on the CPU (also part of `make test`).
notebooks: $(VENV)/.installed
	ADAIN_JAX_SMOKE=1 $(PY) -m pytest -q tests/test_notebooks.py

bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[$(EXTRAS),bench]'
	$(PY) -m benchmarks.run

# The paper's Figure 3 and Table 1 (Gatys et al. against AdaIN) on a few example pairs.
quality: $(VENV)/.installed
	$(PY) -m benchmarks.quality

clean:
	rm -rf $(VENV) outputs .pytest_cache

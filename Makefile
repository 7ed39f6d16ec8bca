# codette_np: every job runs in a local virtual environment (.venv).
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python

.PHONY: install install-test train test test-asan bench clean

# install: create .venv and install the package (C kernels built by cffi, Numba fallback, matplotlib for the loss plot)
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/*.py)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q -e ".[numba,plot]"
	$(VPY) -c "import codette_np.backend as b; print('codette_np kernels:', b.available())"
	touch $@

# install-test: install also the test tools (pytest, hypothesis) and the llama.cpp client
# (llama-cpp-python built with portable flags, never AMX: see tests/install_llama_cpp.py)
install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed tests/install_llama_cpp.py
	$(VPY) -m pip install -q -e ".[test]"
	$(VPY) tests/install_llama_cpp.py
	touch $@

# train: generate the built-in data (8000 examples, three quarters tool use), train a tokenizer and the
# tiny model (3300 steps of 8 x 256 tokens), evaluate, export GGUF
train: install
	$(VPY) -m codette_np.train --size tiny --batch-size 8 --max-steps 3300 --lr 3e-3 --eval-every 3300 \
		--samples 8000 --mix perspectives=0.1,tools=0.75,consciousness=0.1,mixed=0.05 --out runs/tiny

# test: the whole test suite
test: install-test
	$(VPY) -m pytest -q

# test-asan: rebuild the C kernels with AddressSanitizer + UBSan and run the kernel tests
test-asan: install-test
	$(VPY) -m pip install -q wheel "setuptools>=64"
	CODETTE_SANITIZE=1 $(VPY) -m pip install -q --no-build-isolation --no-deps -e .
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		$(VPY) -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_optim.py
	$(VPY) -m pip install -q --no-build-isolation --no-deps -e .

# bench: kernel and training-step benchmarks side by side per backend, with the GEMM floor and PyTorch fp32 (a benchmark-only tool) for the step; OPENBLAS_CORETYPE/L2_SIZE unset for this command only
bench: install-test
	$(VPY) -m pip install -q torch==2.13.0 || echo "PyTorch 2.13.0 could not be installed: the torch rows are skipped"
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(VPY) -m pytest benchmarks -q \
		--benchmark-columns=median,iqr,rounds --benchmark-sort=name --benchmark-max-time=0.5

# clean: remove build products, caches and the virtual environment
clean:
	rm -rf $(VENV) build *.egg-info codette_np/_ckernels.* .pytest_cache .benchmarks .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

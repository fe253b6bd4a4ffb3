# `make book` and `make test` do the whole set-up on a fresh machine: each creates
# (or reuses) .venv and installs mmbook with the extras it needs from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmbook-installed

# Use the offline copy of the data beside the repository when there is one.
ifeq ($(origin MMBOOK_DATA), undefined)
ifneq ($(wildcard ../shared/data),)
export MMBOOK_DATA := $(abspath ../shared/data)
endif
endif

# Extra flags for the book build, e.g. BOOKFLAGS="-W -n --keep-going" (as in CI).
BOOKFLAGS ?=

.PHONY: install test unit nbval book lab clean gpu-data

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[book,test]'
	touch $(STAMP)

# All tests: unit tests, then every notebook in quick mode under nbval, in parallel.
# Tests never touch the network (MMBOOK_OFFLINE=1 forbids downloads). Two pytest
# workers share the cores, so each uses one thread: oversubscribed OpenMP threads
# spin-wait and can make small models many times slower.
TEST_ENV := MMBOOK_QUICK=1 MMBOOK_OFFLINE=1 OMP_NUM_THREADS=1
test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 --dist loadscope --nbval-lax tests book

unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 tests

nbval: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 --dist loadscope --nbval-lax book

book: $(STAMP)
	$(BIN)/jupyter-book build . $(BOOKFLAGS)
	@echo "Open _build/html/index.html"

lab: $(STAMP)
	$(BIN)/jupyter lab book/

clean:
	rm -rf _build

# The data for a GPU run with the `device` tool, which copies only the repository
# (64 MiB at most): the JPEG copy of CIFAR-10 packed into .gpu/ (git-ignored, about
# 20 MB). Then: run command "bash benchmarks/gpu_check.sh --plan tricks", carry [".gpu"].
gpu-data:
	test -d "$(MMBOOK_DATA)/cifar10" || { echo "no CIFAR-10 copy in MMBOOK_DATA=$(MMBOOK_DATA)"; exit 1; }
	mkdir -p .gpu
	tar czf .gpu/cifar10.tar.gz -C "$(MMBOOK_DATA)" cifar10
	@ls -l .gpu/cifar10.tar.gz

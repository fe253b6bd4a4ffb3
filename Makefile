# `make book` and `make test` do the whole set-up on a fresh machine: each creates
# (or reuses) .venv and installs mmbook with the extras it needs from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmbook-installed
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py
READY  := $(STAMP) $(KERNEL_CONFIG)

# Use the offline copy of the data beside the repository when there is one.
ifeq ($(origin MMBOOK_DATA), undefined)
ifneq ($(wildcard ../shared/data),)
export MMBOOK_DATA := $(abspath ../shared/data)
endif
endif

# Extra flags for the book build, e.g. BOOKFLAGS="-W -n --keep-going" (as in CI).
BOOKFLAGS ?=

.PHONY: install test unit notebooks book book-quick linkcheck browser-check data lab clean gpu-data launch-branch publish-notebooks lab-check

install: $(READY)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[book,test]'
	touch $(STAMP)

# Every kernel (book build, notebook tests, JupyterLab) logs "Kernel is running over TCP without
# encryption". It is harmless here: the kernel and its client are processes of the same
# user on this machine, talking over the loopback interface (127.0.0.1), and every message
# is signed with the key in a connection file that only this user can read. This file,
# which IPython loads for every kernel of this environment, drops that one message and
# keeps every other one.
$(KERNEL_CONFIG): | $(STAMP)
	mkdir -p $(@D)
	printf '%s\n' \
	  '# Written by `make install`; see the Makefile for why.' \
	  'import logging' \
	  'class _DropPlainTCPNotice(logging.Filter):' \
	  '    def filter(self, record):' \
	  '        return "without encryption" not in record.getMessage()' \
	  'logging.getLogger("IPKernelApp").addFilter(_DropPlainTCPNotice())' > $@

# All tests: the unit tests and every notebook in quick mode, two at a time. Each notebook
# is one test (see conftest.py): it runs as the book build runs it, fails on an error or
# on a checked cell that prints other text than recorded, and, once it passes, is stored
# in the quick book's execution cache, so `make book-quick` afterwards (as in CI) renders
# those pages without running them again. Tests never touch the network (MMBOOK_OFFLINE=1
# forbids downloads). Two pytest workers share the cores, so each uses one thread:
# oversubscribed OpenMP threads spin-wait and can make small models many times slower.
TEST_ENV := MMBOOK_QUICK=1 MMBOOK_OFFLINE=1 OMP_NUM_THREADS=1
QUICK_CACHE := _build/quick/_build/.jupyter_cache
test: $(READY)
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 --dist loadscope --run-notebooks --notebook-cache $(QUICK_CACHE) tests book

unit: $(READY)
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 tests

notebooks: $(READY)
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 --dist loadscope --run-notebooks --notebook-cache $(QUICK_CACHE) book

# The book in one of two modes, each in its own folder with its own Sphinx environment
# and its own execution cache, so that pages of one mode never stand in for the other's:
#   make book        full mode, the published numbers   -> _build/full/_build/html
#   make book-quick  quick mode (MMBOOK_QUICK=1), as CI -> _build/quick/_build/html
# The mode comes from the target alone; MMBOOK_QUICK in the environment does not change
# it. Within a mode the execution cache re-runs only notebooks whose content changed
# (see README, "Rules of the house", for changes to mmbook). Notebooks run one at a time,
# so each kernel gets one thread per core (GNU nproc itself obeys OMP_NUM_THREADS, hence
# env -u). OpenMP's wait policy is left at its default (threads spin briefly, then sleep),
# which is fastest when the build has the machine to itself: LeNet's training step ran at
# 8,200-9,000 images/s with it and 6,500-7,400 with OMP_WAIT_POLICY=PASSIVE on two idle
# cores. When something else competes for the cores, BOOK_OMP_WAIT=PASSIVE is the safer
# choice (two such runs at once: 4,700-4,900 images/s each, against 2,800 with the default
# and 520-535 with ACTIVE, endless spinning); see README, "Building the book".
NPROC        := $(shell env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1)
BOOK_THREADS ?= $(NPROC)
BOOK_OMP_WAIT ?=
book:       BOOK_MODE := full
book-quick: BOOK_MODE := quick
linkcheck:  BOOK_MODE := full
BOOK_DIR  = _build/$(BOOK_MODE)
BOOK_HTML = $(BOOK_DIR)/_build/html
BOOK_ENV  = MMBOOK_QUICK=$(if $(filter quick,$(BOOK_MODE)),1,0) OMP_NUM_THREADS=$(BOOK_THREADS) $(if $(BOOK_OMP_WAIT),OMP_WAIT_POLICY=$(BOOK_OMP_WAIT))

# BOOK_JOBS=N (N > 1) first runs the notebooks the execution cache lacks N at a time, one
# thread each per core share, into that cache (scripts/prefill_book_cache.py); the build then
# only renders them. CI's quick build uses BOOK_JOBS=2. Leave it at 1 for the full book:
# kernels that share the cores run slower, and full-mode pages print their training times.
BOOK_JOBS ?= 1
PREFILL_THREADS = $(shell expr $(NPROC) / $(BOOK_JOBS) \| 1)

book book-quick: $(READY)
	@if [ "$(BOOK_JOBS)" != 1 ]; then \
	  $(BOOK_ENV) OMP_NUM_THREADS=$(PREFILL_THREADS) $(BIN)/python scripts/prefill_book_cache.py \
	    --cache $(BOOK_DIR)/_build/.jupyter_cache --jobs $(BOOK_JOBS); fi
	$(BOOK_ENV) $(BIN)/jupyter-book build . --path-output $(BOOK_DIR) $(BOOKFLAGS)
	@echo "Built in $(BOOK_MODE) mode. Open $(BOOK_HTML)/index.html"

# External links of the full-mode book (needs the network). Run after `make book`: it
# reuses that build's execution cache. Broken links are reported in
# _build/full/_build/linkcheck.txt and make this target fail; the publish workflow
# lets that step fail without stopping the deploy.
linkcheck: $(READY)
	$(BOOK_ENV) $(BIN)/jupyter-book build . --path-output $(BOOK_DIR) --builder linkcheck; \
	  status=$$?; mv -f $(BOOK_HTML)/output.txt $(BOOK_DIR)/_build/linkcheck.txt 2>/dev/null; \
	  rm -f $(BOOK_HTML)/output.json; exit $$status

# The notebooks that the published book's Colab and Binder buttons open, pinned to the build
# (see scripts/pin_notebooks.py and publish.yml). Before the build, `make launch-branch`
# points the buttons at PIN_BRANCH in _config.yml; after it, `make publish-notebooks REF=...`
# commits book/ with every install cell installing mmbook at REF (default: this commit) to
# PIN_BRANCH and pushes it, so a learner runs the code that produced the page's numbers.
PIN_BRANCH ?= published
REF ?= $(shell git rev-parse HEAD)
launch-branch: $(READY)
	$(BIN)/python scripts/pin_notebooks.py --launch-branch $(PIN_BRANCH)

publish-notebooks: $(READY)
	$(BIN)/python scripts/pin_notebooks.py --ref $(REF) --launch-branch $(PIN_BRANCH)
	git checkout -B $(PIN_BRANCH)
	git -c user.name="mmbook publish" -c user.email="publish@users.noreply.github.com" \
	  commit -q -m "The book's notebooks, installing mmbook at $(REF)" -- _config.yml book
	git push --force origin $(PIN_BRANCH)

# The quick-mode site as a reader's browser shows it (headless Chromium from Debian's
# packages: apt-get install chromium chromium-driver). Build it first: make book-quick.
# MathJax is served from a local copy of the mathjax@3 npm package when npm can fetch
# one, so that math is checked without reaching MathJax's CDN.
MATHJAX_COPY := _build/browser-check/node_modules/mathjax
browser-check: $(READY)
	@test -f $(MATHJAX_COPY)/es5/tex-mml-chtml.js || ! command -v npm >/dev/null || \
	  npm install --silent --no-save --no-audit --no-fund --prefix _build/browser-check mathjax@3 || true
	$(BIN)/python scripts/browser_check.py _build/quick/_build/html --mathjax $(MATHJAX_COPY)

# JupyterLab as `make lab` opens it, in headless Chromium: jupyterlab-myst renders the
# exercises, folds the solutions and leaves no raw MyST markup (scripts/lab_check.py);
# screenshots in _build/lab-check/.
lab-check: $(READY)
	$(BIN)/python scripts/lab_check.py ch01_what_is_multimodal/what_is_multimodal.ipynb ch03_cnn/02_pooling.ipynb

# The data the notebooks and tests read: a copy of CIFAR-10 in MMBOOK_DATA, downloaded
# from the CIFAR-10 site (checksums verified) when there is none.
data: $(READY)
	$(BIN)/mmbook data --download

# The student edition (README, "Rules of the house"): every gated solution removed,
# starter cells kept. `make student` writes the notebooks to hand out,
# _build/student/<chapter>/<notebook>.ipynb; `make book-student` builds the HTML book
# from them, in a copy of the book's sources (_build/student-book, full mode like
# `make book`; STUDENT_MODE=quick for a faster build) -> _build/student-book/_build/html.
STUDENT_MODE ?= full
.PHONY: student book-student
student: $(READY)
	$(BIN)/python -m mmbook.course.student book _build/student

book-student: $(READY)
	$(BIN)/python -m mmbook.course.student --tree . _build/student-book
	MMBOOK_QUICK=$(if $(filter quick,$(STUDENT_MODE)),1,0) OMP_NUM_THREADS=$(BOOK_THREADS) $(if $(BOOK_OMP_WAIT),OMP_WAIT_POLICY=$(BOOK_OMP_WAIT)) \
	  $(BIN)/jupyter-book build _build/student-book $(BOOKFLAGS)
	@echo "Open _build/student-book/_build/html/index.html"

# The instructor's bundle (course map, "Student edition and grading"): the graded checks of
# instructor/ with a random course seed, in _build/instructor. Keep that folder private.
.PHONY: instructor
instructor: $(READY)
	$(BIN)/python -m mmbook.course.bundle instructor _build/instructor

# The otter-grader export verified by otter-grader 7 itself, offline, in a virtual environment of
# its own (_build/otter-venv; the project's .venv stays as it is): `otter assign` on every master
# notebook of the bundle (each book solution passes its public and hidden tests), then `otter run`
# on a correct and a wrong sample submission. About 25 minutes on two cores; not part of CI.
OTTER_VENV := _build/otter-venv
.PHONY: otter-check
otter-check: instructor
	test -x $(OTTER_VENV)/bin/otter || { $(PYTHON) -m venv $(OTTER_VENV) && \
	  $(OTTER_VENV)/bin/pip install -q "otter-grader>=7,<8" -e ".[course]"; }
	$(OTTER_VENV)/bin/python scripts/verify_otter_export.py $(OTTER_VENV)/bin/otter

lab: $(READY)
	$(BIN)/jupyter lab book/

clean:
	rm -rf _build

# The data for a GPU machine without network access: the CIFAR-10 copy packed into .gpu/
# (git-ignored, about 20 MB), which benchmarks/gpu_check.sh unpacks there. For
# benchmarks/airbench_side_by_side.py, also: pip download --no-deps airbench==0.1.8 -d .gpu
gpu-data:
	test -d "$(MMBOOK_DATA)/cifar10" || { echo "no CIFAR-10 copy in MMBOOK_DATA=$(MMBOOK_DATA)"; exit 1; }
	mkdir -p .gpu
	tar czf .gpu/cifar10.tar.gz -C "$(MMBOOK_DATA)" cifar10
	@ls -l .gpu/cifar10.tar.gz

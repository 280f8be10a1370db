# Two commands for a newcomer: `make run` and `make test` (see README.md).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test bench bench-containers bench-napi-poll golden clean

$(STAMP): pyproject.toml scripts/debian-packages
	bash scripts/debian-packages
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lxcwatch $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest $(ARGS)

# Rewrite the end-to-end golden files after an intended change of the exposition.
golden: $(STAMP)
	$(VENV)/bin/pytest tests/test_e2e_golden.py --update-golden

bench: $(STAMP)
	$(PY) bench/bench.py $(ARGS)

# CPU per sample of the lxc collector: 50 real busybox containers (root) and a 500-container tree.
bench-containers: $(STAMP)
	$(PY) bench/containers.py $(ARGS)

# Cost of the napi_poll collector: per NAPI poll on a veth flood, per sample for 128 CPUs x 8 NICs (root).
bench-napi-poll: $(STAMP)
	$(PY) bench/napi_poll.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

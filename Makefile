# Two commands for a newcomer: `make run` and `make test` (see README.md).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test bench bench-containers golden mutation clean

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

# Mutation testing of the detection core (pyproject [tool.mutmut]); ~30 min on 2 cores. Survivors: `results`.
mutation: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[test,mutation]'
	rm -rf mutants
	$(PY) scripts/mutation run --max-children 2
	$(PY) scripts/mutation results

clean:
	rm -rf $(VENV) build *.egg-info mutants

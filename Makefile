# Three commands for a newcomer: `make run`, `make check` (the fast loop) and `make test` (everything; see README.md).
VENV      := .venv
PY        := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed
ARGS      ?=

.PHONY: run check test bench bench-scaling bench-containers bench-napi-poll bench-fleet golden mixin mutation clean dist

# What the agent needs to run: the package and its runtime dependencies, no test tools.
$(RUN_STAMP): pyproject.toml scripts/debian-packages
	bash scripts/debian-packages run
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	touch $(RUN_STAMP)

# ... and the test extra (pyproject.toml): pytest and pytest-xdist, import-linter, Ansible, the Grafana SDK, Pillow, psutil.
# The Debian packages the tests and benches run against, when missing (README.md).
$(STAMP): $(RUN_STAMP)
	bash scripts/debian-packages test
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/lxcwatch $(ARGS)

# The fast loop: tests/unit without the slow tests (~35 s on 2 cores), serially: on 2 cores xdist's workers cost more
# than they save here. The agent as a process (tests/e2e, ~3 min) and every other tier run in `make test`.
check: $(STAMP)
	$(VENV)/bin/pytest -m "not slow" tests/unit $(ARGS)

# Every tier: unit, e2e, live (root, the real kernel, LXC), lab (Prometheus, Alertmanager), deploy (systemd hosts).
test: $(STAMP)
	$(VENV)/bin/pytest $(ARGS)

# Regenerate the rule files and dashboards from deploy/mixin/config.yml (docs/alerting.md).
mixin: $(STAMP)
	$(PY) deploy/mixin/mixin.py

# Rewrite the end-to-end golden files after an intended change of the exposition.
golden: $(STAMP)
	$(VENV)/bin/pytest tests/e2e/test_e2e_golden.py --update-golden

bench: $(STAMP)
	$(PY) bench/bench.py $(ARGS)

# CPU per sample and per scrape on trees of a few sizes: how the cost grows with CPUs, links and containers.
bench-scaling: $(STAMP)
	$(PY) bench/scaling.py $(ARGS)

# CPU per sample of the lxc collector: 50 real busybox containers (root) and a 500-container tree.
bench-containers: $(STAMP)
	$(PY) bench/containers.py $(ARGS)

# Mutation testing of the detection core (pyproject [tool.mutmut]); ~30 min on 2 cores. Survivors: `results`.
mutation: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[test,mutation]'
	rm -rf mutants
	$(PY) scripts/mutation run --max-children 2
	$(PY) scripts/mutation results

# Cost of the napi_poll collector: per NAPI poll on a veth flood, per sample for 128 CPUs x 8 NICs (root).
bench-napi-poll: $(STAMP)
	$(PY) bench/napi_poll.py $(ARGS)

# The rules at fleet scale: synthetic fleets backfilled into a Prometheus that evaluates them (docs/fleet.md).
bench-fleet: $(STAMP)
	$(PY) bench/fleet.py $(ARGS)

clean:
	rm -rf $(VENV) build $(DIST) *.egg-info mutants

# The release artifacts in dist/: the wheel; a wheelhouse tarball (the wheel and every dependency, built for this
# machine's Python and architecture) that the Ansible role installs on hosts with no network; the Ansible role as
# a tarball for `ansible-galaxy role install` (its files/ links replaced by the files); SHA256SUMS of all three
# (docs/deploy.md).
DIST       := dist
VERSION    := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' lxcwatch/__init__.py)
PLATFORM   := $(shell python3 -c 'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
TAR        := tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --exclude=__pycache__

dist: $(RUN_STAMP)
	rm -rf $(DIST) build
	mkdir -p $(DIST)/wheelhouse
	$(VENV)/bin/pip wheel --quiet --no-deps . -w $(DIST)
	$(VENV)/bin/pip wheel --quiet "$(DIST)/lxcwatch-$(VERSION)-py3-none-any.whl[postmortem]" -w $(DIST)/wheelhouse
	$(TAR) -C $(DIST) -cf - wheelhouse | gzip -n > $(DIST)/lxcwatch-$(VERSION)-wheelhouse-$(PLATFORM).tar.gz
	$(TAR) --dereference -C deploy/ansible/roles -cf - lxcwatch | gzip -n > $(DIST)/lxcwatch-role-$(VERSION).tar.gz
	rm -rf $(DIST)/wheelhouse build
	cd $(DIST) && sha256sum *.whl *.tar.gz > SHA256SUMS
	cat $(DIST)/SHA256SUMS

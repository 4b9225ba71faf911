# Every target sets up what it needs (a virtualenv in .venv, Debian packages when missing) and is safe to re-run.
SHELL := /bin/bash
VENV := .venv
# The lab hosts' modules run on Debian's python3 (3.11 on bookworm), as a production host's do, not on the controller's.
HOST_VENV := .venv-hosts
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
COLLECTION_LINK := .cache/collections/ansible_collections/payments/deploy
DEBIAN_PACKAGES := haproxy redis-server shellcheck prometheus prometheus-alertmanager minisign openssh-server sudo systemd \
	pgbackrest chromium zstd jq python3-venv
GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_25_2.py
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv host-venv system-packages collection lab-up lab-down lab-status demo test lint sanity unit rules \
	integration e2e e2e-full e2e-bake e2e-faults e2e-ssh e2e-fleet clean checks-without-lab fault-lab-up molecule

help:
	@echo "make demo   set up, start the lab, deploy 1.1.0 and show the result"
	@echo "make test   set up and run the whole test suite (lint, sanity, unit, integration, e2e)"
	@echo "make lint | sanity | unit | rules | integration | molecule | e2e | e2e-full | e2e-faults | lab-up | lab-down | lab-status | clean"

$(VENV)/.installed: requirements-dev.txt requirements.txt
	@python=$$(scripts/find-python.sh) || exit 1; \
	  [ -x $(PY) ] || "$$python" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements.txt
	touch $@

venv: $(VENV)/.installed

$(HOST_VENV)/.installed: lab/requirements-hosts.txt | system-packages
	[ -x $(HOST_VENV)/bin/python ] || /usr/bin/python3 -m venv $(HOST_VENV)
	$(HOST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r lab/requirements-hosts.txt
	touch $@

host-venv: $(HOST_VENV)/.installed

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

# ansible-test and `payments.deploy.*` names need the checkout at .../ansible_collections/payments/deploy.
collection:
	@mkdir -p $(dir $(COLLECTION_LINK)) && ln -sfn $(CURDIR) $(COLLECTION_LINK)

lab-up: venv host-venv system-packages collection
	lab/labctl up

lab-down: venv
	lab/labctl down
	@if [ -d $(FAULT_LAB_DIR) ]; then PAYMENTS_LAB_DIR=$(FAULT_LAB_DIR) lab/labctl down; fi

lab-status: venv
	lab/labctl status

demo: lab-up
	$(PY) scripts/demo.py

lint: venv collection
	$(BIN)/ansible-lint --profile production --offline
	$(PY) -m compileall -q lab scripts tests bench recovery

$(GET_PIP_CACHE):
	# ansible-test downloads get-pip from a host that may be unreachable: bootstrap pip from ensurepip.
	mkdir -p $(dir $@)
	printf 'import ensurepip\nensurepip.bootstrap(upgrade=True)\n' > $@

# ansible-test resolves its working directory and lists files with git, so it runs on a copy of the
# collection's files (tracked and not ignored) at .../ansible_collections/payments/deploy in a fresh
# temporary directory outside this repository.
sanity: venv $(GET_PIP_CACHE)
	@top=$$(mktemp -d); tree=$$top/ansible_collections/payments/deploy; mkdir -p $$tree; \
	git ls-files -z --cached --others --exclude-standard | \
	  while IFS= read -r -d '' f; do [ -e "$$f" ] && printf '%s\0' "$$f"; done | xargs -0 cp -d --parents -t $$tree; \
	echo "ansible-test sanity in $$tree"; \
	(cd $$tree && PATH=$(CURDIR)/$(BIN):$$PATH ansible-test sanity --local --python 3.13 --color no); status=$$?; \
	rm -rf $$top; exit $$status

unit: venv collection
	$(PY) -m pytest tests/unit -q

# The roles' molecule scenarios (extensions/molecule, docs/molecule.md), on this machine with the default driver;
# `make test` runs them through tests/integration/molecule.
molecule: venv host-venv collection system-packages
	@# as root the scenarios' PostgreSQL runs as postgres, which cannot enter /root: each scenario gets a directory in /tmp
	set -e; for dir in extensions/molecule/*/; do [ -f $$dir/molecule.yml ] || continue; \
	  eph=$$(mktemp -d /tmp/mol-XXXXXX); \
	  PATH=$(CURDIR)/$(BIN):$$PATH MOLECULE_EPHEMERAL_DIRECTORY=$$eph $(BIN)/molecule test -s $$(basename $$dir); \
	  rm -rf $$eph; done

# The alert rules' unit tests (promtool comes with Debian's prometheus package).
rules: system-packages
	promtool check rules roles/monitoring/files/payments.rules.yml
	promtool test rules tests/promtool/*_test.yml

# One pytest run per suite: each suite's conftest is its own. The smoke suite runs against the lab's staging
# release, so it runs with the end-to-end tests (which start the lab and deploy staging).
LAB_SUITES := tests/integration/smoke/
INTEGRATION_SUITES := $(filter-out $(LAB_SUITES),$(sort $(wildcard tests/integration/*/))) tests/lab/
integration: venv host-venv collection system-packages
	$(PY) scripts/run-in-parallel.py --jobs $(TEST_JOBS) $(SUITE_TARGETS)

# The fault suite runs on a second lab (its own state directory and inventory, every port moved by 200), at the same
# time as the other end-to-end suites on the first: each fault starts from the state the one before left, and the
# two labs share nothing but the machine (nor a pytest base directory: a pytest run deletes older runs' directories).
# Its output is kept in tests/output/fault-suite.log and shown at the end.
# The second lab then also runs SECOND_LAB_E2E, end-to-end files whose fixtures bring the lab to the state they need
# (a live production release, a backup), so that both labs finish at about the same time; the first lab leaves them out.
# --durations: the slowest tests of each run, to keep the suites inside their time budget.
FAULT_LAB_DIR := $(CURDIR)/.lab-faults
FAULT_LAB_ENV := PAYMENTS_LAB_DIR=$(FAULT_LAB_DIR) ANSIBLE_INVENTORY=$(FAULT_LAB_DIR)/inventory/hosts.yml
# The core fault matrix; FAULT_MATRIX=all adds the faults marked `extended` (docs/fault-suite.md says which and why).
FAULT_MATRIX ?= 1
FAULT_SUITE = PAYMENTS_E2E_FAULTS=$(FAULT_MATRIX) $(PY) -m pytest tests/e2e/test_faults.py tests/e2e/test_restore_faults.py -q --durations=15 -p no:cacheprovider
SECOND_LAB_E2E := tests/e2e/test_contract_rollback.py tests/e2e/test_smoke_faults.py tests/e2e/test_maintenance.py

fault-lab-up: venv host-venv system-packages collection
	PAYMENTS_LAB_DIR=$(FAULT_LAB_DIR) lab/labctl up --port-offset 200 >/dev/null

e2e: lab-up fault-lab-up
	@mkdir -p tests/output; log=tests/output/fault-suite.log; start=$$(date +%s); scratch=$$(mktemp -d); \
	$(FAULT_LAB_ENV) $(FAULT_SUITE) $(SECOND_LAB_E2E) --basetemp=$$scratch/t > $$log 2>&1 & faults=$$!; \
	trap 'kill $$faults 2>/dev/null' INT TERM; \
	echo "fault suite and $(SECOND_LAB_E2E) started on the second lab ($(FAULT_LAB_DIR)), output in $$log"; \
	$(PY) -m pytest tests/e2e $(addprefix --ignore=,$(SECOND_LAB_E2E)) -q --durations=15; e2e=$$?; \
	$(PY) -m pytest $(LAB_SUITES) -q; smoke=$$?; \
	wait $$faults; faulted=$$?; \
	echo "== fault suite and $(SECOND_LAB_E2E) (second lab): $$([ $$faulted = 0 ] && echo passed || echo FAILED)"; cat $$log; \
	echo "end-to-end suites: $$(( $$(date +%s) - start )) s"; \
	rm -rf $$scratch; [ $$e2e = 0 ] && [ $$smoke = 0 ] && [ $$faulted = 0 ]

# Every end-to-end test: `make e2e` with the tests marked `extended` (PAYMENTS_E2E_ALL=1; tests/e2e/conftest.py) and the
# full fault matrix on the second lab. About two hours on two cores; `make test` runs the core of both.
e2e-full: export PAYMENTS_E2E_ALL = 1
e2e-full: FAULT_MATRIX = all
e2e-full: e2e

# The bake under customer traffic alone (also part of `make e2e`).
e2e-bake: lab-up
	$(PY) -m pytest tests/e2e/test_bake.py -q

# A deploy and its rollback over SSH (inventories/lab-ssh: a deploy user, become through sudo, host key
# checking on) and the refusals. `make e2e` runs the refusals, `make e2e-full` all; the suite adds the lab's SSH hosts
# (labctl up --ssh, as root) when they are not there.
e2e-ssh: lab-up
	PAYMENTS_E2E_ALL=1 $(PY) -m pytest tests/e2e/test_over_ssh.py -q

# A fleet: a lab of its own with four production app hosts (labctl up --app-hosts 4 --port-offset 400, state in
# .lab-fleet-e2e), one deploy that every host must serve through the frontend, then a release that fails on one host and
# must change nothing on any; the lab is deleted afterwards (about 3 minutes). Not part of `make e2e`: a third lab beside
# the two would slow the others' timing checks.
e2e-fleet: venv host-venv system-packages collection
	PAYMENTS_E2E_FLEET=1 $(PY) -m pytest tests/e2e/test_fleet.py -q -p no:cacheprovider

# The full fault matrix alone on the first lab (34 faults in the phases of a deploy, a rollback and a restore, under
# customer traffic; about 30 minutes). `make e2e` runs the core matrix (7: without the faults marked `extended`) on the
# second lab beside the other suites.
e2e-faults: FAULT_MATRIX = all
e2e-faults: lab-up
	$(FAULT_SUITE)

# The checks that need no lab (lint, sanity, unit, rules, every integration suite) share no port, file or process
# with each other: `make test` runs them TEST_JOBS at a time, longest first, each one's output shown as a block when
# it ends (scripts/run-in-parallel.py). Then `make e2e`: the lab suites, on two labs side by side, with nothing else.
TEST_JOBS ?= 2
SUITE_TARGETS := $(foreach suite,$(INTEGRATION_SUITES),suite-$(subst /,.,$(patsubst tests/%/,%,$(suite))))
SLOW_FIRST := suite-integration.pgbackrest suite-integration.molecule suite-integration.dr_drill suite-lab lint sanity \
	suite-integration.postgres_backup unit suite-integration.loadbalancer suite-integration.release_audit \
	suite-integration.stripe suite-integration.release_install suite-integration.haproxy suite-integration.rollback_mirror \
	suite-integration.production_gate suite-integration.migrations
CHECKS_WITHOUT_LAB := $(SLOW_FIRST) $(filter-out $(SLOW_FIRST),$(SUITE_TARGETS)) rules

suite-%: venv host-venv collection system-packages
	$(PY) -m pytest tests/$(subst .,/,$*)/ -q

checks-without-lab: venv host-venv collection system-packages $(GET_PIP_CACHE)
	$(PY) scripts/run-in-parallel.py --jobs $(TEST_JOBS) $(CHECKS_WITHOUT_LAB)

# The lab suites run even when a check failed: one run reports every failure. Its status is a failure if any failed.
test: venv host-venv collection system-packages
	@$(MAKE) --no-print-directory checks-without-lab; checks=$$?; \
	$(MAKE) --no-print-directory e2e; e2e=$$?; \
	echo "make test: checks without the lab $$([ $$checks = 0 ] && echo passed || echo FAILED), end-to-end suites $$([ $$e2e = 0 ] && echo passed || echo FAILED)"; \
	[ $$checks = 0 ] && [ $$e2e = 0 ]

clean: lab-down
	rm -rf .cache tests/output $(HOST_VENV)

# meshd: the README's commands. `make demo` and `make test` do all set-up they need on a
# fresh Debian machine with Python 3.11 (a virtualenv with meshd and its dev extra, and the
# Debian packages the tests use), then run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Debian packages the test suite drives: dig, kdig, Unbound as a forwarding resolver,
# iproute2 (`ip netns`, `ip link`) for the network-namespace tests of tests/netns, and
# Prometheus with promtool for the alert rules of manifests/monitoring.
DEBIAN_PACKAGES := dnsutils knot-dnsutils unbound iproute2 prometheus
# What the commands `meshd demo` prints need: dig.
DEMO_PACKAGES := dnsutils
# What `make bench` drives: Knot DNS (knotd) and Unbound to compare against, dnsperf to load
# them (taskset comes with util-linux, which every Debian system has).
BENCH_PACKAGES := knot dnsperf unbound
# `make bench` runs bench/dns_bench.py with settings that finish in about three minutes;
# override for the figures that go to bench/RESULTS.md, e.g.
# `make bench BENCH_ARGS="--runs 10 --seconds 6 --workers 2"`.
BENCH_ARGS ?= --runs 3 --seconds 3 --workers 0
# and bench/busy_tail_bench.py (the tail against Knot's, idle and busy: about four minutes
# with these settings; the committed figures use --runs 10 --seconds 5).
BUSY_ARGS ?= --runs 2 --seconds 3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps demo-deps bench-deps demo test test-unit lint proto monitoring bench clean

setup: $(STAMP)

# The C fast path is built in place by the editable install: a changed source rebuilds it.
# (setup.py and MANIFEST.in name the same files.)
FASTPATH_SOURCES := dnsserver/_fastpath.h dnsserver/_fastpath_answer.c dnsserver/_fastpath_blob.c dnsserver/_fastpath_plain.c dnsserver/_fastpath_batch.c dnsserver/_fastpath_sched.c
$(STAMP): pyproject.toml setup.py $(FASTPATH_SOURCES)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "meshd needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# Installs whichever of PACKAGES are missing: the test suite's, the demo's or the benchmark's.
system-deps: PACKAGES := $(DEBIAN_PACKAGES)
demo-deps: PACKAGES := $(DEMO_PACKAGES)
bench-deps: PACKAGES := $(BENCH_PACKAGES)
system-deps demo-deps bench-deps:
	@missing=""; \
	for pkg in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'install ok installed' || \
			missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: setup demo-deps
	$(BIN)/meshd demo

test: setup system-deps
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/meta

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# meshd against Knot DNS and Unbound under dnsperf (not part of `make test`: it measures,
# it does not check). Prints a Markdown table; see bench/README.md.
bench: setup bench-deps
	$(BIN)/python bench/dns_bench.py $(BENCH_ARGS)
	$(BIN)/python bench/busy_tail_bench.py $(BUSY_ARGS)

# Regenerate the committed gRPC/protobuf code from proto/ (tests check it is current).
proto: setup
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/mesh/wire/v1/gossip.proto

# Regenerate manifests/monitoring/prometheusrule.yaml from meshd.rules.yaml (tests check it
# is current).
monitoring: setup
	$(BIN)/python -m tests.meta.monitoring_rules

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

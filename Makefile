# The two commands of the README: `make run` serves the app, `make test` runs every test.
# Both create .venv and install the pinned requirements first.

PYTHON ?= python3
PORT ?= 8501
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bootstrap browser-deps pg-deps clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet "$$(grep -E '^torch==' requirements.txt)"
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

bootstrap: $(STAMP)
	$(PY) -m recengine bootstrap

run: bootstrap
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.address 127.0.0.1 \
		--server.headless true --browser.gatherUsageStats false

# Browser tests need Debian's Chromium. As root we install it; otherwise the tests say
# clearly that they were skipped and why.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's chromium for the browser tests"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else \
			echo "NOTE: /usr/bin/chromium is missing and we are not root: browser tests will be skipped"; \
		fi; \
	fi

# PostgreSQL tests need Debian's server binaries (initdb, pg_ctl); the tests start a throw-away
# cluster of their own (tests/db_backends.py). As root we install the package without letting
# it create (and start) Debian's default "main" cluster; otherwise those tests are skipped.
pg-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "$$RECDEMO_TEST_PG_URL" ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's postgresql for the PostgreSQL tests (no cluster is started)"; \
			apt-get update -q && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-common && \
			conf=/etc/postgresql-common/createcluster.conf && touch $$conf && \
			sed -ri 's/^#?[[:space:]]*(create_main_cluster)[[:space:]]*=.*$$/\1 = false/' $$conf && \
			{ grep -q '^create_main_cluster' $$conf || echo 'create_main_cluster = false' >> $$conf; } && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
		else \
			echo "NOTE: PostgreSQL server binaries are missing and we are not root: PostgreSQL tests will be skipped"; \
		fi; \
	fi

test: $(STAMP) browser-deps pg-deps
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

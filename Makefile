# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
TOPIC ?= how tea is made

.PHONY: demo serve test test-fast check setup fonts servers browser bench clean

setup: $(STAMP) fonts

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PY) not found)"; exit 2; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	@touch $(STAMP)

# Chinese subtitles need a CJK font; a fresh Debian machine has only DejaVu.
fonts:
	@fc-list :lang=zh family 2>/dev/null | grep -q . || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing fonts-wqy-microhei for Chinese subtitles"; \
	    (apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1)) || \
	     echo "warning: could not install a CJK font; Chinese subtitles will be refused"; \
	  else echo "warning: no CJK font found; install fonts-wqy-microhei or fonts-noto-cjk for Chinese subtitles"; fi; }

# The ledger tests also run on a real PostgreSQL, the Celery tests on a real Redis (tests/servers.py starts its
# own throwaway servers, unprivileged, on 127.0.0.1; the Debian packages' own services are not used). Without them
# they skip, saying why. The S3 stand-in for the artifact tests is moto's server mode, a pip test dependency
# (`setup` installs it).
servers:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing postgresql for the ledger tests"; \
	    (apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq postgresql >/dev/null 2>&1)) || \
	     echo "warning: could not install postgresql; the PostgreSQL ledger tests will be skipped"; \
	  else echo "warning: no PostgreSQL server binaries; install postgresql to run the PostgreSQL ledger tests"; fi; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing redis-server for the Celery tests"; \
	    (apt-get install -y -qq redis-server >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq redis-server >/dev/null 2>&1)) || \
	     echo "warning: could not install redis-server; the Celery tests will be skipped"; \
	  else echo "warning: no redis-server found; install redis-server to run the Celery tests"; fi; }

# The dashboard's browser tests drive Debian's chromium through Playwright (never Playwright's own download,
# which cannot work offline). Without it they skip, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium for the dashboard's browser tests"; \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)) || \
	     echo "warning: could not install chromium; the browser tests will be skipped"; \
	  else echo "warning: no chromium found; install the chromium package to run the browser tests"; fi; }

# The API and the dashboard on http://127.0.0.1:8000/ (mock productions need no key; log in with this token).
REELCREW_ADMIN_TOKEN ?= $(shell test -f .serve-token || (head -c 24 /dev/urandom | base64 | tr -d '/+=' > .serve-token); cat .serve-token)
serve: $(STAMP) fonts
	@echo "log in at http://127.0.0.1:8000/ with the token: $(REELCREW_ADMIN_TOKEN)"
	@REELCREW_ADMIN_TOKEN=$(REELCREW_ADMIN_TOKEN) $(BIN)/reelcrew serve --host 127.0.0.1 --port 8000

demo: setup
	$(BIN)/python run_integrated_pipeline.py --mock --yes --topic "$(TOPIC)" --scenes 4

# The suite is CPU-bound (ffmpeg, imports, the CLI's processes): one pytest-xdist worker per core keeps both of
# CI's cores busy; worksteal evens out the long tests. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
XDIST = -n $(PYTEST_WORKERS) --dist worksteal

# The whole suite: what CI runs.
test: setup servers browser
	$(BIN)/python -m pytest $(XDIST)

# For iteration: everything but the tests marked slow, servers or browser (see README, "Tests").
test-fast: setup
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not servers and not browser"

# Lint (pyflakes, pycodestyle at 120 columns, isort, bugbear, pyupgrade) and types; CI runs it with the tests.
check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/bench_assembly.py
	$(BIN)/python bench/bench_quota.py
	$(BIN)/python bench/bench_backup.py

clean:
	rm -rf $(VENV) output

# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-stamp

.PHONY: run test install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	COMMENTS_DEMO=$${COMMENTS_DEMO:-1} COMMENTS_SITE_ORIGINS=$${COMMENTS_SITE_ORIGINS:-http://127.0.0.1:8000} \
		$(BIN)/comments serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist

# The benchmark (bench/run.py): the service, the bare-Starlette ceiling and, once `make bench-peers`
# has installed it, Isso; PostgreSQL too when COMMENTS_BENCH_POSTGRES_URL is set. Extra options in
# BENCH_ARGS, for example BENCH_ARGS='--size 10000,1000000 --targets comments'.
.PHONY: bench bench-peers
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (Debian's package)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null; } || \
		{ echo "could not install wrk: install Debian's package wrk, then run make bench again" >&2; exit 1; }; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

ISSO_VENV = bench/.peers/isso-venv
bench-peers:
	@test -x $(ISSO_VENV)/bin/python || $(PYTHON) -m venv $(ISSO_VENV)
	$(ISSO_VENV)/bin/python -m pip install --quiet 'isso==0.14.*' gunicorn

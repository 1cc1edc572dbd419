# vtrain: `make demo` and `make test` work on a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all install demo test proto bench experiments lint clean snarkjs

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,fast,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m bench.demo

# snarkjs 0.7.6 for the interoperability tests, when node/npm exist (git-ignored local folder).
SNARKJS := .snarkjs/node_modules/snarkjs/build/cli.cjs

$(SNARKJS):
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix .snarkjs snarkjs@0.7.6; \
	else echo "node/npm not found: the snarkjs interoperability tests will be skipped"; fi

snarkjs: $(SNARKJS)

test: $(STAMP)
	-@$(MAKE) --no-print-directory snarkjs
	$(PY) -m pytest -q -n 2 --dist loadfile

proto: $(STAMP)
	$(PY) -m protocol.wire.generate

bench: $(STAMP)
	$(PY) -m bench.run

experiments: $(STAMP)
	$(PY) -m bench.experiments.run_all --out results

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info results demo-out

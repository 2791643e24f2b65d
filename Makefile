# The few commands a newcomer needs. `make run` and `make test` create and fill .venv when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ALL_TIERS := -m "slow or browser or not slow"

.PHONY: run test test-fast index lint bench bench-scale clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU-only torch: pinned so pip takes the 2.13.0+cpu wheel instead of ~6 GB of CUDA builds.
	$(PY) -m pip install -q "torch==2.13.*"
	# the extras too: the Milvus store and Ray build tests run here (elsewhere they skip, saying how to install)
	$(PY) -m pip install -q -e ".[dev,milvus,ray]"
	touch $@

run: $(STAMP)            ## serve the chat on http://127.0.0.1:7860 (builds the index first)
	$(PY) app.py

test: $(STAMP)           ## every test tier: unit, real model (slow), browser
	$(PY) -m pytest $(ALL_TIERS)

test-fast: $(STAMP)      ## the quick unit tests only (fake embedder)
	$(PY) -m pytest

index: $(STAMP)          ## build or update the index
	$(PY) -m qa index

lint: $(STAMP)
	$(PY) -m ruff check qa tests app.py
	$(PY) -m ruff format --check qa tests app.py

bench: $(STAMP)          ## the SQuAD closed-corpus benchmark (see README)
	$(PY) -m qa eval --squad

bench-scale: $(STAMP)    ## speed and size at 10k, 50k and 200k chunks (about 40 minutes on 2 cores)
	$(PY) -m qa bench

clean:
	rm -rf index artifacts .pytest_cache

# Two commands on a fresh machine: `make demo` and `make test`. Both run `make setup` first,
# which is idempotent: a .venv with pinned dependencies, the Spark jars in .cache/jars, WordNet.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TRAIN_STAMP := $(VENV)/.installed-train
JARS    := .cache/jars/.complete
# kgcurate_native: the compiled WAT path (native/, Rust; cargo from rustup, maturin from PyPI as pip's
# build backend). Rebuilt when its sources change; KGCURATE_NATIVE=0 runs the pure-Python parser.
NATIVE  := $(VENV)/.installed-native
NATIVE_SRC := native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
WORDNET := /usr/share/wordnet/data.noun
SAMPLE_FILES ?= 4
SAMPLE_RECORDS ?= 400

.PHONY: setup setup-train demo test bench bench-peers-setup lint clean wordnet constraints dist render
setup: $(STAMP) $(NATIVE) $(JARS) wordnet

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(NATIVE): $(STAMP) $(NATIVE_SRC)
	$(BIN)/pip install -q --force-reinstall --no-deps ./native
	touch $(NATIVE)

# torch, open_clip's trainer, deltalake (kgcurate train / evaluate): tests and benches only, never `make demo`.
setup-train: $(TRAIN_STAMP)
# The CUDA wheels go in one at a time first: one pip call fetches all of its ~3.5 GB of wheels before it
# installs any, so the disk held ~9.4 GB at the peak for a ~5.9 GB result (one at a time: ~5.9 GB).
$(TRAIN_STAMP): $(STAMP)
	if [ "$$(uname -s)" = Linux ]; then for p in $$(grep -E '^(nvidia-|triton==|torch==)' constraints.txt); do \
	  $(BIN)/pip install -q --no-deps "$$p" || exit 1; done; fi
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,train]'
	touch $(TRAIN_STAMP)

# constraints.txt: every installed package pinned, after a change of pyproject.toml's pins.
constraints: $(TRAIN_STAMP)
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze | grep -v '^-e \|^# Editable\|^kgcurate=='; } > constraints.new
	mv constraints.new constraints.txt

$(JARS): $(STAMP) libs/kgcurate/jars.py
	$(BIN)/python -m kgcurate.jars fetch

# WordNet 3.0 database from Debian's wordnet-base (tests fall back to a bundled excerpt).
wordnet:
	@test -f $(WORDNET) || { command -v apt-get >/dev/null && \
	  (apt-get install -y -q wordnet-base >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wordnet-base >/dev/null 2>&1)) ; } || \
	  echo "note: WordNet not installed (need root for apt-get); pass --wordnet-dir to build-metadata"

demo: setup
	$(BIN)/kgcurate make-sample --out samples --files $(SAMPLE_FILES) --records $(SAMPLE_RECORDS)
	@# the files keep their names whatever the size: ./lake would take a new sample's files for ingested ones
	@cmp -s samples/wat/manifest.json .cache/demo-sample.json || { test ! -d lake || \
	  { echo "note: the sample is not the one ./lake was built from: the demo starts a new lake"; rm -rf lake; }; }
	@test -f $(WORDNET) || test -n "$$WNSEARCHDIR" || \
	  echo "note: WordNet not installed: the demo reads the excerpt in tests/fixtures/wordnet (as root: make wordnet)"
	WNSEARCHDIR=$${WNSEARCHDIR:-$$(test -f $(WORDNET) || echo $(CURDIR)/tests/fixtures/wordnet)} \
	  $(BIN)/kgcurate run --config conf/demo.yaml
	@mkdir -p .cache && cp samples/wat/manifest.json .cache/demo-sample.json

# KGCURATE_REQUIRE_NATIVE=1: tests/test_wat_native.py fails (not skips) without the compiled path.
test: setup $(TRAIN_STAMP)
	KGCURATE_REQUIRE_NATIVE=1 $(BIN)/pytest

bench: setup $(TRAIN_STAMP)
	$(BIN)/python bench/run_all.py

# The peer tools the benches compare against, outside the project's venv (never its dependencies).
bench-peers-setup: setup
	$(BIN)/pip install -q --target .cache/peers --no-deps cc2dataset==1.5.0
	$(BIN)/pip install -q --target .cache/peers pysimdjson==7.0.2 loguru==0.7.3 fsspec==2026.9.0
# img2dataset and its ~56 packages (opencv, pandas, albumentations, wandb, ...) in their own folder, run by
# bench/bench_download.py in a subprocess with PYTHONPATH set to it. It pulls the 2018 `dataclasses`
# backport, which shadows the standard library's and breaks wandb's import: removed.
	$(BIN)/pip install -q --target .cache/peers-img2dataset img2dataset==1.47.0
	rm -rf .cache/peers-img2dataset/dataclasses.py .cache/peers-img2dataset/dataclasses-0.6.dist-info

# What a cluster needs, into deploy/dist/ (docs/production.md); both import kgcurate, so they run in the venv.
dist: setup
	$(BIN)/python deploy/build.py

# deploy/stages.json, deploy/k8s/*.yaml and deploy/emr/steps.json from the stage registry and SITE.
render: setup
	$(BIN)/python deploy/pipeline.py render

lint: setup
	$(BIN)/ruff check libs jobs tests bench deploy

clean:
	rm -rf lake samples reports .pytest_cache spark-warehouse

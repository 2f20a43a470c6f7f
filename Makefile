# Every target is a thin alias of a `python -m ...` command listed in README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTHON  := $(BIN)/python
DATA    ?= ../shared/data
STAMP   := $(VENV)/.installed

export CPLVAD_SHARED_DATA ?= $(abspath $(DATA))

.PHONY: setup test test-fast demo synth baseline train distill export calibrate engine bench bench-quick clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e ".[train,dev]"
	@command -v mosquitto >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq mosquitto) || echo "mosquitto not found: MQTT tests will be skipped (apt-get install mosquitto)"; }
	touch $(STAMP)

test: setup
	$(PYTHON) -m pytest -q

test-fast: setup
	$(PYTHON) -m pytest -q -m "not slow"

synth: setup
	$(PYTHON) -m train.synth --layout ucf --seed 0 --out data/ucf
	$(PYTHON) -m train.synth --layout xd --seed 0 --out data/xd

baseline: setup
	$(PYTHON) -m train.baseline --data data/ucf --out runs/mil_ucf

clean:
	rm -rf runs bench/results/tmp .pytest_cache

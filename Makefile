# Every target is a thin alias of a `cplvad ...` command listed in README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTHON  := $(BIN)/python
CPLVAD  := $(BIN)/cplvad
STAMP   := $(VENV)/.installed

.PHONY: setup test test-fast demo demo-fast synth baseline train train-xd distill export calibrate engine bench bench-quick bench-accuracy clean

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

synth: data/ucf/dataset.json data/xd/dataset.json

data/%/dataset.json: | $(STAMP)
	$(CPLVAD) synth --layout $* --seed 0 --out data/$*

baseline: setup data/ucf/dataset.json data/xd/dataset.json
	$(CPLVAD) baseline --data data/ucf --out runs/mil_ucf
	$(CPLVAD) baseline --data data/xd --out runs/mil_xd

train: setup data/ucf/dataset.json
	$(CPLVAD) train --config configs/train/ucf.yaml

train-xd: setup data/xd/dataset.json
	$(CPLVAD) train --config configs/train/xd.yaml

distill: setup
	$(CPLVAD) distill --teacher runs/teacher_ucf --config configs/distill/default.yaml --out runs/student_ucf

export: setup
	$(CPLVAD) export --run runs/student_ucf --out bundle/ $(if $(CLIP),--clip $(CLIP))  # make export CLIP=openai/clip-vit-base-patch16 (or CLIP=random)

calibrate: setup
	$(CPLVAD) calibrate --bundle $(or $(BUNDLE),bundle/) $(foreach s,$(SOURCE),--source $(s)) $(if $(DATA_DIR),--data $(DATA_DIR))

# On the Jetson, in the venv of deploy/README.md (made with --system-site-packages: it sees JetPack's TensorRT).
engine:
	$(PYTHON) -m cplvad engine --bundle $(or $(BUNDLE),bundle/)

demo: setup
	$(CPLVAD) demo $(if $(FAST),--fast)

demo-fast: setup
	$(CPLVAD) demo --fast

bench: setup
	$(CPLVAD) bench --full --out bench/results/$(shell date +%F)

bench-quick: setup
	$(CPLVAD) bench --quick --out bench/results/quick

bench-accuracy: setup  # the full accuracy report; PROFILE=gpu on a GPU machine, REGIME=context (see bench/full.py)
	$(PYTHON) -m bench.full --profile $(or $(PROFILE),cpu) $(if $(REGIME),--regime $(REGIME))

clean:
	rm -rf runs bench/results/tmp .pytest_cache

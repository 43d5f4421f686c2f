# Development entry points. Every fit writes a new logs/<config>/version_N (nothing is overwritten);
# `--ckpt_path best` tests the newest run's best checkpoint.
# Each target creates .venv on a fresh machine, installs the package
# with its dev extra, then runs. torch/torchvision are pinned to the releases this team's machines
# carry on disk (DEVELOPERS.md says why); pyproject.toml itself keeps open ranges for users.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SNN := $(VENV)/bin/snn-lightning
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
INSTALLED := $(VENV)/.installed

.PHONY: quickstart quickstart-fashion test install clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check $(TORCH_PINS) -e ".[dev]"
	touch $(INSTALLED)

quickstart: $(INSTALLED)
	$(SNN) fit --config configs/quickstart.yaml
	$(SNN) test --config configs/quickstart.yaml --ckpt_path best

# Real data offline: Fashion-MNIST from Debian's dataset-fashion-mnist (see configs/quickstart_fashion.yaml).
quickstart-fashion: $(INSTALLED)
	$(SNN) fit --config configs/quickstart_fashion.yaml
	$(SNN) test --config configs/quickstart_fashion.yaml --ckpt_path best

test: $(INSTALLED)
	$(PYTHON) -m pytest -q

clean:
	rm -rf logs lightning_logs .pytest_cache

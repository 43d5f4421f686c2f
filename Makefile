# Development entry points. Every fit writes a new logs/<config>/version_N (nothing is overwritten);
# `--ckpt_path best` tests the newest run's best checkpoint.
# Each target creates .venv on a fresh machine, installs the package
# with its dev extra, then runs. torch/torchvision are pinned to the releases this team's machines
# carry on disk (DEVELOPERS.md says why); pyproject.toml itself keeps open ranges for users.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SNN := $(VENV)/bin/snn-lightning
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# The default torch wheel is the CUDA build (about 3 GB of its 6 GB .venv is NVIDIA libraries); on a
# machine without a GPU, `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the
# CPU-only wheel of the same release from PyTorch's index instead (untried on the team's machines,
# which have no route to it).
TORCH_INDEX ?=
PIP_INDEX := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple)
INSTALLED := $(VENV)/.installed

.PHONY: quickstart quickstart-fashion fashion-teacher fashion-best fashion-best-tser fashion-full-tser fashion-plif-tser quickstart-staa quickstart-dvs quickstart-kd notebooks test lint format install clean distclean

# Fit configs/$(1).yaml, then test the new run's best checkpoint.
define fit_and_test
	$(SNN) fit --config configs/$(1).yaml
	$(SNN) test --config configs/$(1).yaml --ckpt_path best
endef

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check $(PIP_INDEX) $(TORCH_PINS) -e ".[dev]"
	touch $(INSTALLED)

quickstart: $(INSTALLED)
	$(call fit_and_test,quickstart)

# Real data offline: Fashion-MNIST from Debian's dataset-fashion-mnist (see configs/quickstart_fashion.yaml).
quickstart-fashion: $(INSTALLED)
	$(call fit_and_test,quickstart_fashion)

# The ANN teacher the Fashion-MNIST distillation configs read (target: >= 94 % within 30 minutes on 2 cores).
fashion-teacher: $(INSTALLED)
	$(call fit_and_test,quickstart_fashion_teacher)

# The long Fashion-MNIST recipe (target: >= 94 % within 2 hours on 2 cores).
fashion-best: $(INSTALLED)
	$(call fit_and_test,fashion_mnist_best)

# The long recipe with TSER distillation from the teacher (run `make fashion-teacher` first).
fashion-best-tser: $(INSTALLED)
	$(call fit_and_test,fashion_mnist_best_tser)

# The same on all 60,000 training images without validation; the test scores the final weights (last.ckpt).
fashion-full-tser: $(INSTALLED)
	$(SNN) fit --config configs/fashion_mnist_full_tser.yaml
	$(SNN) test --config configs/fashion_mnist_full_tser.yaml --ckpt_path last

# The PLIF paper's network and neuron with the same TSER recipe on all 60,000 images, 13 epochs (fits 2 hours).
fashion-plif-tser: $(INSTALLED)
	$(SNN) fit --config configs/fashion_mnist_plif_tser.yaml
	$(SNN) test --config configs/fashion_mnist_plif_tser.yaml --ckpt_path last

quickstart-staa: $(INSTALLED)
	$(call fit_and_test,quickstart_staa)

quickstart-dvs: $(INSTALLED)
	$(call fit_and_test,quickstart_dvs)

# The ANN teacher first, then the TSER student that reads it.
quickstart-kd: $(INSTALLED)
	$(SNN) fit --config configs/quickstart_kd_teacher.yaml
	$(call fit_and_test,quickstart_kd)

# Re-execute every notebook at full length and store its outputs (run after changing the code they show).
notebooks: $(INSTALLED)
	for notebook in notebooks/*.ipynb; do $(VENV)/bin/jupyter execute --inplace "$$notebook" || exit 1; done

# The suite in TEST_WORKERS processes (pytest-xdist; one file per worker at a time, the cores shared among them).
TEST_WORKERS ?= 2
test: $(INSTALLED)
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# ruff: lint and format check (CI runs it); `make format` rewrites the files.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check snn_lightning tests benchmarks
	$(VENV)/bin/ruff format --check snn_lightning tests benchmarks

format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix snn_lightning tests benchmarks
	$(VENV)/bin/ruff format snn_lightning tests benchmarks

# Run outputs; distclean also removes downloaded data and the virtual environment.
clean:
	rm -rf logs lightning_logs .pytest_cache *.nir

distclean: clean
	rm -rf data $(VENV)

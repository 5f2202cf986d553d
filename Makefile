# Every target first runs scripts/setup.sh, which creates .venv and installs the pinned
# dependencies only when pyproject.toml changed.
VENV := .venv
BIN := $(VENV)/bin
# JupyterLab refuses to run as root unless told; classroom machines and CI often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup install lab lab-zh check test lint format notebooks exercises translations timings site hub hub-proxy browser sandbox release-check clean

setup:  ## create .venv and install the pinned dependencies (skipped when up to date)
	@./scripts/setup.sh

install:  ## what `make test` needs: setup, and beside it browser, sandbox and hub-proxy (each skipped when done)
	@./scripts/install_all.sh

lab: setup  ## open the walkthrough in JupyterLab on 127.0.0.1, with a token
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb $(ROOT_FLAG) $(LAB_ARGS)

# The Chinese edition: JupyterLab's own interface in Chinese (the pinned language pack), chosen in a
# settings folder of its own under build/, so `make lab` stays English.
ZH_SETTINGS := build/lab-zh/settings/@jupyterlab/translation-extension

lab-zh: setup  ## 中文版: JupyterLab in Chinese, opened on notebooks/zh/00_start_here.ipynb
	@mkdir -p "$(ZH_SETTINGS)" build/lab-zh/workspaces
	@echo '{"locale": "zh_CN"}' > "$(ZH_SETTINGS)/plugin.jupyterlab-settings"
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.user_settings_dir="$(CURDIR)/build/lab-zh/settings" \
		--LabApp.workspaces_dir="$(CURDIR)/build/lab-zh/workspaces" \
		--LabApp.default_url=/lab/tree/notebooks/zh/00_start_here.ipynb $(ROOT_FLAG) $(LAB_ARGS)

check: setup  ## the fast tier while you work: ruff, unit tests and doctests (no notebooks, browser or torchrun)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest lesson_utils tests -m "not slow" $(PYTEST_ARGS)

# Two workers (pytest-xdist); --dist loadfile keeps each file on one worker: a notebook's cells share
# one kernel, and a test module its module-scoped fixtures (the browser tests' JupyterLab servers).
# conftest.py hands the longest files out first (tests/durations.json; PYTEST_ARGS=--store-durations
# after a whole run writes it again).
test: install  ## ruff, unit tests, doctests, strict nbval on every notebook (both editions), browser and hub tests
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: setup  ## ruff check (code and notebooks)
	$(BIN)/ruff check .

format: setup  ## ruff format the python files
	$(BIN)/ruff format lesson_utils tests scripts

notebooks: setup  ## re-execute every notebook in place to regenerate its stored outputs
	$(BIN)/python scripts/execute_notebooks.py $(NOTEBOOKS)

exercises: setup  ## regenerate the blank exercise notebooks and solutions.json from the solution notebooks, then execute them
	$(BIN)/python scripts/build_exercises.py
	$(BIN)/python scripts/execute_notebooks.py notebooks/exercises/0*.ipynb notebooks/exercises/solutions/*.ipynb \
		notebooks/zh/exercises/0*.ipynb notebooks/zh/exercises/solutions/*.ipynb

translations: setup  ## extract the _() messages into the .po catalogs (lesson_utils/locale) and compile them
	$(BIN)/python scripts/translations.py

timings: setup  ## run every notebook in a fresh kernel and print a table of seconds (a measurement, not a test)
	$(BIN)/python scripts/execute_notebooks.py --time $(NOTEBOOKS)

site: setup  ## the lessons as a static website, both editions, from the stored outputs, into build/site/ (SITE_ARGS="--out DIR")
	$(BIN)/python scripts/build_site.py $(SITE_ARGS)

# The class's JupyterHub, as root (it makes an account per student): see README, "Teaching a class".
CLASS ?= class.csv
hub: setup hub-proxy  ## the class's JupyterHub on 127.0.0.1:8000 (as root): CLASS=class.csv, HUB_ARGS="--ip 0.0.0.0 --memory 4G ..."
	$(BIN)/python -m lesson_utils.classroom.hub start --class "$(CLASS)" $(HUB_ARGS)

hub-proxy:  ## install node, npm and git when missing (apt-get) and the pinned configurable-http-proxy into build/hub-proxy/
	@./scripts/install_hub.sh

sandbox:  ## install bubblewrap for the grader's --sandbox and its tests when it is missing (needs apt-get)
	@./scripts/install_sandbox.sh

browser:  ## install Debian's Chromium for the browser tests when it is missing (needs apt-get)
	@./scripts/install_browser.sh

release-check: setup  ## before tagging vX.Y.Z: versions agree (pyproject, CHANGELOG, CITATION.cff, 00), no tag yet, then `make test` (quick: RELEASE_ARGS=--no-tests)
	$(BIN)/python scripts/release_check.py $(RELEASE_ARGS)

clean:  ## remove .venv, build outputs and caches
	rm -rf $(VENV) build .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

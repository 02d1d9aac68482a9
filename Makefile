# medclass: the two commands a user needs are `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser repro test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

install: $(BIN)/python browser
	$(BIN)/python -m pip install -c constraints.txt -e '.[all]'

# Debian's chromium for tests/report/test_browser.py (Playwright drives it; its own browser
# downloads are not needed). A no-op when chromium is there; where apt-get is missing or fails,
# prints why and carries on: those tests then skip.
CHROMIUM ?= /usr/bin/chromium
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo -n apt-get)
browser:
	@if [ -x "$(CHROMIUM)" ] || command -v chromium >/dev/null 2>&1; then \
	  echo "chromium: $$(command -v chromium || echo $(CHROMIUM)) (browser tests will run)"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "chromium: no apt-get here, not installed; browser tests will skip"; \
	elif DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q chromium >/dev/null \
	  || { DEBIAN_FRONTEND=noninteractive $(APT_GET) update -q >/dev/null \
	       && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q chromium >/dev/null; }; then \
	  echo "chromium: installed $$(command -v chromium) (browser tests will run)"; \
	else \
	  echo "chromium: apt-get could not install it; browser tests will skip"; \
	fi

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test:
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint:
	$(BIN)/ruff check .

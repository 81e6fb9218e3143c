# The README's two commands: `make demo` and `make test`. Each creates .venv if missing, installs, runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch pair that works on this class of machine (pip takes both from local disk); pyproject takes a range.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-output
export RAY_AUTH_MODE ?= disabled

.PHONY: demo test lint install system-deps clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Headless Chromium for the HTML report tests, and gcc with the libjpeg v62 header for the jpegli codec's shim
# (built on first use), and libjxl's butteraugli_main for the butteraugli metric; installed when we can: root
# and apt-get present.
system-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (Debian package) for the report tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not installed and not root: browser tests will skip"; fi
	@if command -v gcc >/dev/null 2>&1 && [ -f /usr/include/jpeglib.h ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing gcc and libjpeg62-turbo-dev (Debian packages) for the jpegli codec"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libjpeg62-turbo-dev >/dev/null; \
	else echo "gcc or jpeglib.h missing and not root: the jpegli codec will be unavailable"; fi
	@if command -v butteraugli_main >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing libjxl-devtools (Debian package) for the butteraugli metric"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjxl-devtools >/dev/null; \
	else echo "butteraugli_main not installed and not root: the butteraugli metric is unavailable"; fi

demo: $(VENV)/.installed
	$(VENV)/bin/prfeval demo --output $(DEMO_OUT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(VENV)/.installed system-deps lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache

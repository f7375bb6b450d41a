# The two set-up commands: `make demo` and `make test`. Both work on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins mosquitto sox chromium chromium-driver

.PHONY: demo test test-all system-deps install clean

demo: install
	$(VENV)/bin/earmark demo --out demo-out

test: system-deps install
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: system-deps install
	$(PY) -m pytest -m "slow or not slow" $(PYTEST_ARGS)

# System libraries the tests drive for real (PortAudio, a software microphone, an MQTT broker, headless Chromium).
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing system packages (install as root): $$missing"; \
	  fi; \
	fi

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) demo-out runs

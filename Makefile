# Two commands for users: `make demo` and `make test`. Both set the environment up on demand.
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.vlm_node_stamps/ready
# Pytest options, e.g. `make test PYTEST_ARGS="-k codec -x"`.
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint bench clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(SETUP_STAMP): scripts/setup_env.sh requirements/*.txt setup.py setup.cfg package.xml \
		ros2_ws/src/vlm_node_interfaces/msg/*.msg ros2_ws/src/vlm_node_interfaces/CMakeLists.txt \
		vendor/ros2/wheels/*.whl vendor/ros2/src/composition_interfaces/srv/*.srv
	VENV=$(abspath $(VENV)) bash scripts/setup_env.sh
	@touch $@

setup: ## create .venv with ROS 2 wheels, models, and the built message package (idempotent)
	VENV=$(abspath $(VENV)) bash scripts/setup_env.sh
	@touch $(SETUP_STAMP)

demo: $(SETUP_STAMP) ## run the node on bundled road scenes over DDS; writes demo_output/
	$(VENV)/bin/vlm-node demo --output demo_output

test: $(SETUP_STAMP) ## run the test suite (real rclpy + Fast DDS, real models)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(SETUP_STAMP) ## the inner loop: everything but DDS/process, Ray and real-time tests
	$(PY) -m pytest -m "not integration and not ray and not realtime" $(PYTEST_ARGS)

lint: $(SETUP_STAMP) ## flake8 with ament's settings (line length 99)
	$(PY) -m flake8 vlm_node tests launch setup.py

clean: ## remove build outputs (keeps .venv)
	rm -rf build demo_output .pytest_cache

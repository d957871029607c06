# The README's two commands. Each sets up .venv when it needs to (idempotent: a second run skips what is
# done), prints every step with its time, then runs; ARGS go to `gpgrl quickstart` or to pytest.
#
#   make quickstart                      # set up (CPU torch pair + gpgrl[vision]), then gpgrl quickstart
#   make quickstart ARGS="--vision"      # the vision quickstart; ARGS=--overwrite replaces an earlier run
#   make test                            # set up with the dev extras, then exactly what CI runs (.ci/run)
#   make test ARGS="-k quickstart -x"
PYTHON ?= python3
ARGS ?=

.PHONY: quickstart test
quickstart:
	$(PYTHON) scripts/setup.py quickstart $(ARGS)

test:
	$(PYTHON) scripts/setup.py test $(ARGS)

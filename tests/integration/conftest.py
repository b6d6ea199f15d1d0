"""The integration tests' fixtures are in integration_fixtures.py, loaded
here as a plugin (not named fixtures.py: that is a plugin of pytest's own);
tests/lib holds the programs' harnesses (outpost.py, cloud.py, ...)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

pytest_plugins = ["integration_fixtures"]

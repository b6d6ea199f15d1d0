"""The integration tests' fixtures are in integration_fixtures.py, loaded
here as a plugin (not named fixtures.py: that is a plugin of pytest's own);
tests/lib holds the programs' harnesses (outpost.py, cloud.py, ...)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

pytest_plugins = ["integration_fixtures"]


# The longest files first (make integration runs a file to a worker,
# pytest-xdist --dist loadfile, in collection order): a long file begun
# last would run on alone while the other workers idle (228 s -> 205 s
# for make integration). Their seconds (the sum of their tests'
# durations, --durations=0, 2026-12-06) in comments; the rest follow in
# the order they were given.
LONGEST_FIRST = [
    "test_shaping.py",          # 106
    "test_console_browser.py",  # 75
    "test_uplink_outage.py",    # 55
    "test_uplink_tls.py",       # 54
    "test_uplink_faults.py",    # 50
    "test_compression.py",      # 43
    "test_api.py",              # 38
    "test_destinations.py",     # 35
    "test_uplink_e2e.py",       # 34
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))

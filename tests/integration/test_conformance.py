"""docs/CONFORMANCE.md's generated tables are what the receiver accepts."""
import os
import subprocess

from outpost import BUILD, ROOT


def test_conformance_statement_matches_receiver():
    r = subprocess.run([os.path.join(ROOT, "scripts", "gen-conformance"),
                        os.path.join(BUILD, "outpost-receiver"),
                        os.path.join(ROOT, "docs", "CONFORMANCE.md"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout

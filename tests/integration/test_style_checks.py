"""make check-style's own checks, tried on a copy of services/ with a
deliberate violation each: the include rules between the programs'
layers (scripts/check-layers) and the banned functions
(scripts/check-style)."""
import os
import shutil
import subprocess

import pytest

from outpost import ROOT

CHECK_LAYERS = os.path.join(ROOT, "scripts", "check-layers")
CHECK_STYLE = os.path.join(ROOT, "scripts", "check-style")


@pytest.fixture
def tree(tmp_path):
    copy = tmp_path / "services"
    shutil.copytree(os.path.join(ROOT, "services"), copy)
    return copy


def layers(tree):
    return subprocess.run([CHECK_LAYERS, str(tree)], capture_output=True, text=True)


def include(tree, rel, header):
    """Adds #include "header" after the first include of tree/rel."""
    path = tree / rel
    text = path.read_text()
    at = text.index("#include")
    path.write_text(text[:at] + f'#include "{header}"\n' + text[at:])


def test_the_tree_keeps_its_layers(tree):
    r = layers(tree)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("rel, header, rule", [
    ("common/spool.c", "uplink/uplink.h", "common/ may not include uplink/"),
    ("common/log.h", "console/api.h", "common/ may not include console/"),
    ("receiver/receiver.c", "uplink/control.h", "receiver/ may not include uplink/"),
    ("dicom/dicom.cc", "console/httpd.h", "dicom/ may not include console/"),
    ("dicom/dicom.cc", "receiver/receiver.h", "dicom/ may not include receiver/"),
    ("uplink/uplink.c", "receiver/receiver.h", "uplink/ may not include receiver/"),
    ("uplink/uplink.c", "console/api.h", "uplink/ may not include console/"),
    ("console/api.c", "receiver/receiver.h", "console/ may not include receiver/"),
    ("ctl/ctl.c", "uplink/control.h", "ctl/ may not include uplink/"),
    ("ctl/main.c", "console/api.h", "ctl/ may not include console/"),
])
def test_an_include_across_the_layers_fails(tree, rel, header, rule):
    include(tree, rel, header)
    r = layers(tree)
    assert r.returncode == 1
    assert f"{tree / rel}:" in r.stderr and rule in r.stderr, r.stderr


def test_only_the_host_includes_the_console(tree):
    include(tree, "uplink/main.c", "console/httpd.h")
    assert layers(tree).returncode == 0
    include(tree, "uplink/https.c", "console/httpd.h")
    r = layers(tree)
    assert r.returncode == 1 and "uplink/https.c" in r.stderr, r.stderr


def test_a_folder_without_a_layer_fails(tree):
    (tree / "extra").mkdir()
    (tree / "extra" / "x.c").write_text('#include "common/log.h"\n')
    r = layers(tree)
    assert r.returncode == 1 and "has no layer" in r.stderr, r.stderr


@pytest.mark.parametrize("call", ["sprintf(buf, \"%d\", n);", "n = atoi(s);",
                                  "strcpy(dst, src);"])
def test_a_banned_function_fails_check_style(tmp_path, call):
    src = tmp_path / "bad.c"
    src.write_text(f"void f(char *buf, char *dst, const char *src, const char *s, int n)\n"
                   f"{{\n\t{call}\n}}\n")
    r = subprocess.run([CHECK_STYLE, str(src)], capture_output=True, text=True)
    assert r.returncode == 1 and "banned function" in r.stderr, r.stderr

"""rauc-boot, RAUC's custom bootloader backend on the box, against a grubenv
made and read by GRUB's own grub-editenv (so GRUB reads what it writes).
The boot choice GRUB makes from it is exercised under qemu (test_update.py).
"""
import os
import subprocess

import pytest

from appliance import ROOT

RAUC_BOOT = os.path.join(ROOT, "rootfs", "overlay", "usr", "lib", "outpost", "rauc-boot")


@pytest.fixture
def env(tmp_path):
    """A grubenv as firmware/build-image makes it; run(args) runs rauc-boot on it."""
    path = tmp_path / "grubenv"
    subprocess.run(["grub-editenv", str(path), "create"], check=True)
    subprocess.run(["grub-editenv", str(path), "set", "ORDER=a b", "a_ok=1", "a_trial=0",
                    "a_left=3", "b_ok=0", "b_trial=0", "b_left=0"], check=True)

    class Env:
        def run(self, *args):
            return subprocess.run([RAUC_BOOT] + list(args), capture_output=True, text=True,
                                  env=dict(os.environ, OUTPOST_BOOT_MNT=str(tmp_path)))

        def out(self, *args):
            r = self.run(*args)
            assert r.returncode == 0, r.stderr
            return r.stdout.strip()

        def vars(self):
            text = subprocess.run(["grub-editenv", str(path), "list"], capture_output=True,
                                  text=True, check=True).stdout
            return dict(line.split("=", 1) for line in text.splitlines())

        def size(self):
            return path.stat().st_size
    return Env()


def test_an_install_puts_the_new_slot_first_on_trial(env):
    assert env.out("get-primary") == "a"
    assert env.out("get-state", "b") == "bad"
    env.out("set-state", "b", "bad")  # what RAUC does before writing slot b
    env.out("set-primary", "b")       # and after
    v = env.vars()
    assert v["ORDER"] == "b a" and v["b_ok"] == "1" and v["b_trial"] == "1" and v["b_left"] == "3"
    assert v["a_ok"] == "1"  # the way back stays
    assert env.out("get-primary") == "b"
    assert env.run("trial", "b").returncode == 0
    assert env.run("trial", "a").returncode == 1
    assert env.size() == 1024  # GRUB's save_env writes the block in place


def test_good_ends_the_trial_and_bad_takes_the_slot_out(env):
    env.out("set-primary", "b")
    env.out("set-state", "b", "good")
    v = env.vars()
    assert v["b_ok"] == "1" and v["b_trial"] == "0" and v["b_left"] == "3"
    assert env.run("trial", "b").returncode == 1
    env.out("set-primary", "a")
    env.out("set-state", "a", "bad")
    assert env.out("get-state", "a") == "bad"
    assert env.out("get-primary") == "b"  # the first in ORDER that may boot
    assert env.vars()["ORDER"] == "a b"


@pytest.mark.parametrize("args", [["set-state", "c", "good"], ["set-state", "a", "maybe"],
                                  ["set-primary"], ["frobnicate"]])
def test_refuses_what_it_does_not_know_and_changes_nothing(env, args):
    before = env.vars()
    r = env.run(*args)
    assert r.returncode != 0 and r.stderr.startswith("rauc-boot: "), r
    assert env.vars() == before

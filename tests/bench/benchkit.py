"""What every benchmark of `make bench` shares: its command-line flags
(--reps, --tmpdir, --keep), its scratch folder and its clean-up, the check
that the machine is idle, the machine line of a report, and the process
meters read from /proc (CPU seconds, peak memory, children).

Every bench ends the processes it starts by PID (end_process) and removes
its scratch folder unless --keep is given.
"""
import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "lib"), HERE]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- flags and the scratch folder ----------------------------------------------


def parser(doc, reps):
    """An ArgumentParser described by the first paragraph of doc, with the
    flags every bench takes: --reps (default reps), --tmpdir and --keep."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=reps, help="repetitions of every run")
    ap.add_argument("--tmpdir", default=None, help="where the scratch folder goes")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return ap


@contextlib.contextmanager
def scratch(args, prefix):
    """A scratch folder in args.tmpdir, removed at the end unless --keep;
    logs how long the bench took."""
    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=prefix, dir=args.tmpdir)
    try:
        yield tmp
    finally:
        log(f"bench took {time.monotonic() - t_start:.0f} s")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def need_space(path, need, hint=""):
    """Exits when the file system of path has less than need bytes (+1 GiB)."""
    free = shutil.disk_usage(path).free
    if free < need + (1 << 30):
        sys.exit(f"{path}: {free / 1e9:.1f} GB free, the bench needs {need / 1e9:.1f} GB"
                 f"{' (' + hint + ')' if hint else ''}")


# --- the machine -----------------------------------------------------------------


def machine_busy_s():
    """CPU time all CPUs spent busy since boot (/proc/stat), in seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # all but idle and iowait


def machine_iowait_s():
    """CPU time all CPUs spent idle waiting for I/O since boot (/proc/stat), in seconds."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[5]) / CLK_TCK


def background_load(seconds=1.0):
    """CPUs kept busy by whatever runs on the machine, sampled for a while."""
    b0, t0 = machine_busy_s(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_s() - b0) / (time.monotonic() - t0)


def idle_load():
    """The background load before a bench, with a warning when it is not idle."""
    load = background_load()
    if load > 0.15:
        log(f"warning: the machine is not idle ({load:.2f} CPUs busy)")
    return load


def machine_line(tmpdir):
    """CPUs, RAM, the file system tmpdir is on (and its journal) and the kernel."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", tmpdir],
                        capture_output=True, text=True).stdout.split()
    fstype = fs[0] if fs else "?"
    if fstype == "ext4" and len(fs) > 1:
        dev = os.path.basename(fs[1])
        try:
            with open(f"/sys/fs/ext4/{dev}/journal_task") as f:
                task = f.read().strip()
            fstype += " (no journal)" if task in ("", "<none>") else " (journal)"
        except OSError:
            pass
    opts = fs[2] if len(fs) > 2 else ""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs ({model}), {ram:.0f} GiB RAM, {tmpdir} on {fstype}"
            f"{' [' + opts + ']' if opts else ''}, Linux {platform.release()}")


def med_range(values, fmt):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


# --- processes -------------------------------------------------------------------


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def proc_cpu_s(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def end_process(proc, sig=signal.SIGTERM, timeout=20):
    """sig (SIGTERM), then SIGKILL, by PID; returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode

"""CPU seconds of a process and everything it starts, including processes nobody waits for.

``getrusage(RUSAGE_CHILDREN)`` (and a child subreaper) only counts descendants that were waited for.
PySpark's daemon sets SIGCHLD to SIG_IGN, so the kernel reaps its forked workers itself and their CPU
never reaches any parent: a Spark stage's Python work (the WAT parser, the image downloads) went
uncounted (``bench_download`` saw the whole ``kgcurate download`` cost the same CPU for 20 and 2,000
images). A cgroup counts every task in it, reaped or not: :class:`Meter` makes one (cgroup v2, or v1's
``cpuacct``), moves the calling process into it before it starts anything, and reads its usage.
Where no cgroup can be made (not root, no controller), it falls back to summing ``/proc`` over the
process tree (utime + stime + cutime + cstime of every live descendant), which misses workers that
exit, and says so.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

_ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/cpu,cpuacct"), Path("/sys/fs/cgroup"))
_TICK = os.sysconf("SC_CLK_TCK")


def _current(root: Path, kind: str) -> Path:
    """This process's cgroup in the hierarchy at ``root`` (from /proc/self/cgroup), to nest under and return
    to: a service's own group keeps its limits and accounting."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (kind == "v2" and controllers == "") or (kind == "v1" and "cpuacct" in controllers.split(",")):
            return root / path.lstrip("/")
    return root


def _usage_file(root: Path) -> tuple[Path, str] | None:
    """(the file holding a cgroup's CPU usage, its kind) under ``root``, or None."""
    if (root / "cpuacct.usage").exists():
        return Path("cpuacct.usage"), "v1"  # nanoseconds
    if (root / "cgroup.controllers").exists():
        return Path("cpu.stat"), "v2"  # usage_usec line
    return None


class Meter:
    """CPU seconds used by this process and all its descendants since :meth:`start`."""

    def __init__(self, name: str) -> None:
        self.name = f"{name}-{os.getpid()}"
        self.group: Path | None = None
        self.kind = ""
        self.parent_procs: Path | None = None
        self.base = 0.0

    def start(self) -> Meter:
        for root in _ROOTS:
            found = _usage_file(root)
            if found is None:
                continue
            home = _current(root, found[1])
            group = home / self.name
            try:
                group.mkdir(exist_ok=True)
                (group / "cgroup.procs").write_text(str(os.getpid()))
            except OSError:
                with contextlib.suppress(OSError):
                    group.rmdir()
                continue
            self.group, self.kind, self.parent_procs = group, found[1], home / "cgroup.procs"
            self._file = group / found[0]
            break
        else:
            print(f"cpu_meter: no cgroup could be made under {', '.join(map(str, _ROOTS))}: CPU is summed over "
                  "live processes, and workers that exited (PySpark's) are missed", file=sys.stderr)
        self.base = self._total()
        return self

    @property
    def exact(self) -> bool:
        return self.group is not None

    def require_exact(self) -> Meter:
        """Stop a bench whose CPU figures would undercount: without a cgroup, PySpark's self-reaped workers
        (the work itself) are missed, and the stderr note alone went unseen in the benches' captured output."""
        if not self.exact:
            raise SystemExit("cpu_meter: no cgroup could be made (run the bench as root, or with a delegated cgroup "
                             "v2 cpu controller): without one PySpark's workers go uncounted, so no ratio is given")
        return self

    def _total(self) -> float:
        if self.group is None:
            return tree_cpu(os.getpid())
        text = self._file.read_text()
        if self.kind == "v1":
            return int(text) / 1e9
        usage = next(line for line in text.splitlines() if line.startswith("usage_usec "))
        return int(usage.split()[1]) / 1e6

    def seconds(self) -> float:
        return self._total() - self.base

    def stop(self) -> None:
        """Move this process back to the group it started in and remove the meter's group if nothing else
        is in it. A descendant still running (PySpark's JVM lives until its Python exits) keeps it:
        :func:`remove_groups` in the parent removes it once that process has gone."""
        if self.group is None:
            return
        with contextlib.suppress(OSError):
            self.parent_procs.write_text(str(os.getpid()))
            self.group.rmdir()
        self.group = None


def remove_groups(name: str, pid: int, wait_s: float = 30.0) -> None:
    """Remove the group a :class:`Meter` named ``name`` made in process ``pid`` (which has exited), once the
    processes left in it (a JVM shutting down) are gone."""
    import time

    deadline = time.monotonic() + wait_s
    for root in _ROOTS:
        found = _usage_file(root)
        if found is None:
            continue
        group = _current(root, found[1]) / f"{name}-{pid}"
        while group.is_dir():
            try:
                group.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    print(f"cpu_meter: {group} still has processes; left in place", file=sys.stderr)
                    break
                time.sleep(0.2)


def processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds: utime + stime + cutime + cstime) of every process, from /proc."""
    found: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone since the listing
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": the state is fields[0]
        found[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK)
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live process below it, children they waited for included."""
    procs = processes()
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(c for c, (p, _) in procs.items() if p == pid and c not in tree)
    return sum(procs[pid][1] for pid in tree if pid in procs)

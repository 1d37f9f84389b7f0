"""In-process ``Root`` vs ``os.*`` with ``dir_fd`` on the same directory, per operation.

Each row compares, in the same run and interleaved, one ``Root`` method with what a
careful user of ``os`` would write against a directory fd (no beneath-the-root check at
all: that is the floor).  Rows marked "native" call the compiled helper directly, without
the Python wrapper, to show where the time goes.  Goal (issues 2 and 6): ``Root`` within
1.5x of ``os``.

    python -m bench.bench_root [--quick] [--repeats N] [--dir DIR] [--pin CPU]
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile

from beneathd._native import ffi, lib
from beneathd.daemon import Root

from bench._util import (Case, apply_pin, base_parser, calibrate, fmt_ns, interleave, md_table,
                         paired_ratios, quantile, verdict)

GOAL = 1.5
SMALL = b"x" * 100


def build(top: str) -> None:
    with open(os.path.join(top, "f"), "wb") as f:
        f.write(SMALL)
    os.makedirs(os.path.join(top, "a", "b"))
    with open(os.path.join(top, "a", "b", "f"), "wb") as f:
        f.write(SMALL)
    os.symlink("f", os.path.join(top, "l"))
    with open(os.path.join(top, "r0"), "wb") as f:
        f.write(SMALL)
    with open(os.path.join(top, "w"), "wb") as f:
        f.write(SMALL)
    os.mkdir(os.path.join(top, "ls"))
    for i in range(100):
        open(os.path.join(top, "ls", f"entry-{i:03d}"), "wb").close()


def cases(root: Root, dfd: int, jroot: Root) -> list[tuple[str, float, list[Case], int]]:
    """(row title, cost weight, [os case, Root case, (native case)], ...).  ``jroot``: the
    same root with a crash journal attached, as the daemon runs it."""
    O_RDONLY = os.O_RDONLY | os.O_CLOEXEC
    rfd = ffi.new("bn_root *", {"fd": root.fileno(), "rx": 0, "journal": ffi.NULL})  # what Root passes
    out = ffi.new("int64_t[13]")
    st, lst = os.stat, os.lstat
    rows: list[tuple[str, float, list[Case], int]] = []

    # -- stat, one component ------------------------------------------------------------
    def os_stat1(n: int) -> None:
        for _ in range(n):
            st("f", dir_fd=dfd)

    def root_stat1(n: int) -> None:
        s = root.stat
        for _ in range(n):
            s("f")

    def native_stat1(n: int) -> None:
        f = lib.bn_stat
        for _ in range(n):
            f(rfd, b"f", out)

    rows.append(("stat `f` (1 component)", 1, [Case("os", os_stat1), Case("Root", root_stat1),
                                                Case("native bn_stat (openat2+fstat)", native_stat1)], 0))

    # -- stat, three components ---------------------------------------------------------
    def os_stat3(n: int) -> None:
        for _ in range(n):
            st("a/b/f", dir_fd=dfd)

    def root_stat3(n: int) -> None:
        s = root.stat
        for _ in range(n):
            s("a/b/f")

    def native_stat3(n: int) -> None:
        f = lib.bn_stat
        for _ in range(n):
            f(rfd, b"a/b/f", out)

    rows.append(("stat `a/b/f` (3 components)", 1, [Case("os", os_stat3), Case("Root", root_stat3),
                                                     Case("native bn_stat", native_stat3)], 0))

    # -- stat through a one-component symlink ------------------------------------------------
    def os_statl(n: int) -> None:
        for _ in range(n):
            st("l", dir_fd=dfd)

    def root_statl(n: int) -> None:
        s = root.stat
        for _ in range(n):
            s("l")

    rows.append(("stat `l` (1-component symlink -> f)", 1, [Case("os", os_statl), Case("Root", root_statl)], 0))

    # -- lstat ------------------------------------------------------------------------------
    def os_lstat1(n: int) -> None:
        for _ in range(n):
            lst("f", dir_fd=dfd)

    def root_lstat1(n: int) -> None:
        s = root.lstat
        for _ in range(n):
            s("f")

    rows.append(("lstat `f`", 1, [Case("os", os_lstat1), Case("Root", root_lstat1)], 0))

    def os_lstat3(n: int) -> None:
        for _ in range(n):
            lst("a/b/f", dir_fd=dfd)

    def root_lstat3(n: int) -> None:
        s = root.lstat
        for _ in range(n):
            s("a/b/f")

    def native_lstat3(n: int) -> None:
        f = lib.bn_lstat
        for _ in range(n):
            f(rfd, b"a/b/f", out)

    rows.append(("lstat `a/b/f`", 1, [Case("os", os_lstat3), Case("Root", root_lstat3),
                                      Case("native bn_lstat", native_lstat3)], 0))

    # -- mkdir + rmdir -------------------------------------------------------------------
    def os_mkrm(n: int) -> None:
        mk, rm = os.mkdir, os.rmdir
        for _ in range(n):
            mk("d", dir_fd=dfd)
            rm("d", dir_fd=dfd)

    def root_mkrm(n: int) -> None:
        mk, rm = root.mkdir, root.rmdir
        for _ in range(n):
            mk("d")
            rm("d")

    rows.append(("mkdir + rmdir `d`", 6, [Case("os", os_mkrm), Case("Root", root_mkrm)], 0))

    # -- open + close ----------------------------------------------------------------------
    def os_open(n: int) -> None:
        o, iop = os.open, io.open
        for _ in range(n):
            iop(o("f", O_RDONLY, dir_fd=dfd), "rb").close()

    def root_open(n: int) -> None:
        o = root.open
        for _ in range(n):
            o("f", "rb").close()

    rows.append(("open(`f`, 'rb') + close (file object)", 3, [Case("os", os_open), Case("Root", root_open)], 0))

    def os_openfd(n: int) -> None:
        o, c = os.open, os.close
        for _ in range(n):
            c(o("f", O_RDONLY, dir_fd=dfd))

    def native_openfd(n: int) -> None:
        o, c = lib.bn_open_regular, os.close
        for _ in range(n):
            c(o(rfd, b"f", O_RDONLY, 0))

    rows.append(("open + close, raw fd", 2, [Case("os", os_openfd),
                                             Case("native bn_open_regular", native_openfd)], 0))

    # -- read_file ---------------------------------------------------------------------------
    def os_read(n: int) -> None:
        o, iop = os.open, io.open
        for _ in range(n):
            with iop(o("f", O_RDONLY, dir_fd=dfd), "rb") as f:
                f.read()

    def root_read(n: int) -> None:
        r = root.read_file
        for _ in range(n):
            r("f")

    rows.append(("read_file `f` (100 B)", 3, [Case("os", os_read), Case("Root", root_read)], 0))

    # -- rename back and forth -----------------------------------------------------------
    def os_rename(n: int) -> None:
        rn = os.rename
        for _ in range(n):
            rn("r0", "r1", src_dir_fd=dfd, dst_dir_fd=dfd)
            rn("r1", "r0", src_dir_fd=dfd, dst_dir_fd=dfd)

    def root_rename(n: int) -> None:
        rn = root.rename
        for _ in range(n):
            rn("r0", "r1")
            rn("r1", "r0")

    rows.append(("rename `r0`->`r1`->`r0`", 4, [Case("os", os_rename), Case("Root", root_rename)], 0))

    # -- write_file (atomic, small, over an existing file) ------------------------------------
    WO = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

    def os_write(n: int) -> None:
        o, w, c, rn = os.open, os.write, os.close, os.rename
        for _ in range(n):
            fd = o(".w.tmp", WO, 0o666, dir_fd=dfd)
            w(fd, SMALL)
            c(fd)
            rn(".w.tmp", "w", src_dir_fd=dfd, dst_dir_fd=dfd)

    def root_write(n: int) -> None:
        wf = root.write_file
        for _ in range(n):
            wf("w", SMALL)

    def native_write(n: int) -> None:
        f = lib.bn_write_file
        fl = lib.BN_AW_OVERWRITE | lib.BN_AW_KEEP_MODE
        for _ in range(n):
            f(rfd, b"w", SMALL, len(SMALL), 0o666, fl, ffi.NULL, ffi.NULL)

    def journaled_write(n: int) -> None:
        wf = jroot.write_file
        for _ in range(n):
            wf("w", SMALL)

    rows.append(("write_file `w` 100 B (os: tmp+write+rename)", 10,
                 [Case("os", os_write), Case("Root", root_write),
                  Case("Root + crash journal", journaled_write),
                  Case("native bn_write_file", native_write)], 0))

    # -- listdir -------------------------------------------------------------------------
    def os_listdir(n: int) -> None:
        o, c, ld = os.open, os.close, os.listdir
        fl = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        for _ in range(n):
            fd = o("ls", fl, dir_fd=dfd)
            try:
                ld(fd)
            finally:
                c(fd)

    def root_listdir(n: int) -> None:
        ld = root.listdir
        for _ in range(n):
            ld("ls")

    rows.append(("listdir `ls` (100 entries)", 10, [Case("os", os_listdir), Case("Root", root_listdir)], 0))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--n", type=int, default=None, help="operations per sample (default: calibrated)")
    p.add_argument("--sample-ms", type=float, default=None,
                   help="target duration of one sample of the os contender (default 20, --quick 5)")
    a = p.parse_args(argv)
    apply_pin(a.pin)
    repeats = a.repeats or (7 if a.quick else 15)
    target = (a.sample_ms or (5 if a.quick else 20)) * 1e6
    top = tempfile.mkdtemp(prefix="bench-root-", dir=a.dir)
    jdir = tempfile.mkdtemp(prefix="bench-journal-", dir=a.dir)
    try:
        build(top)
        dfd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        root = Root(top)
        # the daemon's configuration: a journal outside the root (same file system here)
        jroot = Root(top, journal=jdir)
        table = []
        for title, weight, cs, _ in cases(root, dfd, jroot):
            # n is set so that one sample of the os contender lasts about --sample-ms
            n = a.n or max(20, calibrate(cs[0], target))
            res = interleave(cs, repeats, n)
            b = res["os"]
            for c in cs:
                s = res[c.name]
                if c.name == "os":
                    continue
                ratio = s.median / b.median
                pr = paired_ratios(s, b)
                goal = GOAL if c.name == "Root" else None
                table.append([
                    title, c.name,
                    fmt_ns(b.median), f"{fmt_ns(b.min)} .. {fmt_ns(b.max)}",
                    fmt_ns(s.median), f"{fmt_ns(s.min)} .. {fmt_ns(s.max)}",
                    f"{ratio:.2f}x", f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}",
                    f"{goal}x" if goal else "-", verdict(ratio, goal),
                ])
            print(f"  done: {title} (n={n})", file=sys.stderr)
        root.close()
        jroot.close()
        os.close(dfd)
    finally:
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree(jdir, ignore_errors=True)

    print("### Root vs os.* with dir_fd (per operation, in-process)\n")
    print(f"Command: `python -m bench.bench_root{' --quick' if a.quick else ''}`; "
          f"{repeats} interleaved rounds per contender (each a sample of n operations, n set so that "
          f"one os sample lasts ~{target / 1e6:.0f} ms), median per-op time, spread min .. max; "
          "ratio = median(subject) / median(os); paired = p25 .. p75 of the per-round ratios.\n")
    print(md_table(
        ["operation", "subject", "os median", "os min..max", "subject median", "subject min..max",
         "ratio", "paired p25..p75", "goal", "verdict"],
        table))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Native helpers for beneathd, compiled out-of-line (cffi API mode) as ``beneathd._native``.

Every dangerous step is one C call: resolve beneath the root with ``openat2(2)``
(``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS``), then act on the final component with an
``*at`` syscall relative to the resolved parent.  Functions return ``>= 0`` on success
and ``-errno`` on failure; ``-BN_EESCAPE`` means "openat2 said the path escapes" (its
``EXDEV``), kept apart from an ``EXDEV`` that a rename or link reports for a mount
boundary.  No function here ever resolves a caller's path without openat2.
"""

from cffi import FFI

CDEF = r"""
#define BN_EESCAPE 4096
#define BN_ENOTREG 4097
#define BN_RESOLVE_NO_XDEV 1

#define BN_CP_RECURSIVE 1
#define BN_CP_OVERWRITE 2
#define BN_CP_PRESERVE 4
#define BN_REFLINK_NEVER 0
#define BN_REFLINK_AUTO 1
#define BN_REFLINK_ALWAYS 2
#define BN_AW_OVERWRITE 1
#define BN_AW_KEEP_MODE 2
#define BN_AW_EXACT_MODE 4
#define BN_JSLOT 4096
#define BN_JSLOTS 256

/* The crash journal (see bn_jadd): a shared mapping of a BN_JSLOTS x BN_JSLOT file. */
typedef struct bn_journal bn_journal;
bn_journal *bn_journal_map(int fd);
void bn_journal_unmap(bn_journal *j);

int bn_openat2(int dirfd, const char *path, int flags, int mode, int rx);
int bn_open_regular(int root, const char *path, int flags, int mode, int rx);
int bn_lstat(int root, const char *path, int64_t *out, int rx);
int bn_stat(int root, const char *path, int64_t *out, int rx);
int bn_fstat(int fd, int64_t *out);
int bn_readlink(int root, const char *path, char *buf, size_t size, int rx);
int bn_mkdir(int root, const char *path, int mode, int rx);
int bn_unlink(int root, const char *path, int rx);
int bn_rmdir(int root, const char *path, int rx);
int bn_rename(int root, const char *src, const char *dst, unsigned int flags, int rx);
int bn_link(int root, const char *src, const char *dst, int rx);
int bn_symlink(int root, const char *target, const char *path, int rx);
int bn_mkfifo(int root, const char *path, int mode, int rx);
int bn_chmod(int root, const char *path, int mode, int rx);
int bn_chown(int root, const char *path, int uid, int gid, int rx);
int bn_utime(int root, const char *path, int64_t atime_ns, int64_t mtime_ns, int now, int rx);
int bn_truncate(int root, const char *path, int64_t length, int rx);
int bn_write_file(int root, const char *path, const char *buf, size_t len, int mode, int flags, bn_journal *j, int rx);
int bn_copy_file(int root, const char *src, const char *dst, int overwrite, int reflink, int preserve, bn_journal *j, int rx);
int bn_cp(int root, const char *src, const char *dst, int flags, bn_journal *j, int rx);
int bn_rm(int root, const char *path, int recursive, int force, int rx);
int bn_copy_fd(int in, int out, int reflink);

/* Test hook: with bn_set_hook(1), the native code calls bn_py_hook(stage) between its steps
   (stage 1: parent resolved, before acting on the leaf; 2: in a tree walk, after fstatat and
   before opening the entry; 3: atomic replace, before the link/rename). Off by default. */
extern "Python" void bn_py_hook(int stage);
void bn_set_hook(int on);

int bn_landlock_abi(void);
int bn_landlock_create(uint64_t handled_fs);
int bn_landlock_allow(int ruleset, int fd, uint64_t access);
int bn_landlock_restrict(int ruleset);
"""

SOURCE = r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

/* struct open_how and RESOLVE_* (linux/openat2.h), spelled out so old headers build. */
struct bn_open_how { uint64_t flags; uint64_t mode; uint64_t resolve; };
#define BN_RESOLVE_NO_XDEV_K 0x01
#define BN_RESOLVE_NO_MAGICLINKS 0x02
#define BN_RESOLVE_BENEATH 0x08

/* The one resolve policy: every lookup of a caller's path goes through here. */
#define BN_RESOLVE (BN_RESOLVE_BENEATH | BN_RESOLVE_NO_MAGICLINKS)
#define BN_EAGAIN_TRIES 128

#define BN_EESCAPE 4096
#define BN_ENOTREG 4097
#define BN_RESOLVE_NO_XDEV 1
#define BN_CP_RECURSIVE 1
#define BN_CP_OVERWRITE 2
#define BN_CP_PRESERVE 4
#define BN_REFLINK_NEVER 0
#define BN_REFLINK_AUTO 1
#define BN_REFLINK_ALWAYS 2
#define BN_AW_OVERWRITE 1
#define BN_AW_KEEP_MODE 2
#define BN_AW_EXACT_MODE 4
#define BN_JSLOT 4096
#define BN_JSLOTS 256
#define BN_MAX_DEPTH 4000

static int bn_tries_eagain = BN_EAGAIN_TRIES;

/* Deterministic race tests: a callback between steps, off (one predictable branch) by default. */
static void bn_py_hook(int stage);
static volatile int bn_hook_on = 0;
void bn_set_hook(int on) { bn_hook_on = on; }
#define BN_HOOK(stage) do { if (bn_hook_on) bn_py_hook(stage); } while (0)

int bn_openat2(int dirfd, const char *path, int flags, int mode, int rx)
{
    struct bn_open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC);
    if (flags & O_CREAT || (flags & O_TMPFILE) == O_TMPFILE)
        how.mode = (uint64_t)(mode & 07777);
    how.resolve = BN_RESOLVE | ((rx & BN_RESOLVE_NO_XDEV) ? BN_RESOLVE_NO_XDEV_K : 0);
    for (int i = 0; i < bn_tries_eagain; i++) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno == EAGAIN || errno == EINTR)
            continue;
        if (errno == EXDEV)
            return -BN_EESCAPE;
        return -errno;
    }
    return -EAGAIN;
}

/* ---- the parent + leaf split -------------------------------------------------------- */

typedef struct {
    int pfd;        /* parent directory (the root itself for one component), or -1 */
    int own;        /* pfd must be closed */
    int tfd;        /* for "." / ".." / trailing slash: the target, opened beneath (O_PATH) */
    int slash;      /* the caller wrote trailing slash(es) */
    int dots;       /* the final component is "." or ".." */
    char leaf[NAME_MAX + 2];   /* final component, without slash */
    char leafs[NAME_MAX + 3];  /* final component, with "/" when the caller wrote one */
} bn_path;

static void bn_release(bn_path *p)
{
    if (p->own && p->pfd >= 0)
        close(p->pfd);
    if (p->tfd >= 0)
        close(p->tfd);
    p->pfd = p->tfd = -1;
    p->own = 0;
}

/*
 * Split `path` into its parent (opened beneath the root) and its final component.
 * With want_target, a final "." / ".." / trailing slash (which the kernel would resolve
 * or follow itself) is opened whole with openat2 into tfd, so that the caller acts on
 * that fd and never hands the kernel a component it would follow unchecked.
 */
static int bn_split(int root, const char *path, int rx, int want_target, bn_path *p)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    p->pfd = p->tfd = -1;
    p->own = p->slash = p->dots = 0;
    if (n == 0)
        return -ENOENT;
    if (path[0] == '/')
        return -BN_EESCAPE;
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    while (n > 0 && buf[n - 1] == '/') {
        buf[--n] = 0;
        p->slash = 1;
    }
    char *sl = strrchr(buf, '/');
    const char *leaf = sl ? sl + 1 : buf;
    size_t ln = strlen(leaf);
    if (ln > NAME_MAX)
        return -ENAMETOOLONG;
    memcpy(p->leaf, leaf, ln + 1);
    memcpy(p->leafs, leaf, ln + 1);
    if (p->slash) {
        p->leafs[ln] = '/';
        p->leafs[ln + 1] = 0;
    }
    p->dots = (strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0);
    if (p->dots || (p->slash && want_target)) {
        int fd = bn_openat2(root, path, O_PATH, 0, rx);
        if (fd < 0)
            return fd;
        p->tfd = fd;
        return 0;   /* acted on through tfd only, never through the parent */
    }
    if (!sl) {
        p->pfd = root;
        BN_HOOK(1);
        return 0;
    }
    char *e = sl;
    while (e > buf && e[-1] == '/')
        e--;
    *e = 0;
    int fd = bn_openat2(root, buf, O_PATH | O_DIRECTORY, 0, rx);
    if (fd < 0) {
        bn_release(p);
        return fd;
    }
    p->pfd = fd;
    p->own = 1;
    BN_HOOK(1);
    return 0;
}

static int bn_neg(int r) { return r < 0 ? -errno : r; }

static void bn_stat_out(const struct stat *st, int64_t *out)
{
    out[0] = st->st_mode;
    out[1] = (int64_t)st->st_ino;
    out[2] = (int64_t)st->st_dev;
    out[3] = (int64_t)st->st_nlink;
    out[4] = st->st_uid;
    out[5] = st->st_gid;
    out[6] = st->st_size;
    out[7] = (int64_t)st->st_atim.tv_sec * 1000000000LL + st->st_atim.tv_nsec;
    out[8] = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    out[9] = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
    out[10] = st->st_blksize;
    out[11] = st->st_blocks;
    out[12] = (int64_t)st->st_rdev;
}

int bn_fstat(int fd, int64_t *out)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    bn_stat_out(&st, out);
    return 0;
}

/* ---- reads -------------------------------------------------------------------------- */

int bn_lstat(int root, const char *path, int64_t *out, int rx)
{
    bn_path p;
    struct stat st;
    int r = bn_split(root, path, rx, 1, &p);
    if (r < 0)
        return r;
    if (p.tfd >= 0)
        r = bn_neg(fstat(p.tfd, &st));
    else
        r = bn_neg(fstatat(p.pfd, p.leaf, &st, AT_SYMLINK_NOFOLLOW));
    bn_release(&p);
    if (r == 0)
        bn_stat_out(&st, out);
    return r;
}

int bn_stat(int root, const char *path, int64_t *out, int rx)
{
    struct stat st;
    if (path[0] == '/')
        return -BN_EESCAPE;
    int fd = bn_openat2(root, path, O_PATH, 0, rx);
    if (fd < 0)
        return fd;
    int r = bn_neg(fstat(fd, &st));
    close(fd);
    if (r == 0)
        bn_stat_out(&st, out);
    return r;
}

int bn_readlink(int root, const char *path, char *buf, size_t size, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 1, &p);
    if (r < 0)
        return r;
    if (p.tfd >= 0)
        r = -EINVAL;   /* "." / ".." / "x/" resolve to a directory, never a link */
    else {
        ssize_t n = readlinkat(p.pfd, p.leaf, buf, size);
        r = n < 0 ? -errno : (n >= (ssize_t)size ? -ENAMETOOLONG : (int)n);
    }
    bn_release(&p);
    return r;
}

/*
 * Open a regular file beneath the root, never blocking and never keeping anything
 * else: O_NONBLOCK|O_NOCTTY for the open itself (a FIFO or device does not block and
 * is closed at once), then fstat, then O_NONBLOCK is dropped again unless asked for.
 */
int bn_open_regular(int root, const char *path, int flags, int mode, int rx)
{
    struct stat st;
    if (path[0] == '/')
        return -BN_EESCAPE;
    if (path[0] == 0)
        return -ENOENT;
    int fd = bn_openat2(root, path, flags | O_NONBLOCK | O_NOCTTY, mode, rx);
    if (fd == -ENXIO || fd == -ENODEV || fd == -EWOULDBLOCK) {
        /* a FIFO without a reader or a device without a driver: say what it is */
        int pfd = bn_openat2(root, path, O_PATH, 0, rx);
        if (pfd < 0)
            return fd;
        int r = fstat(pfd, &st);
        close(pfd);
        return (r == 0 && !S_ISREG(st.st_mode)) ? -BN_ENOTREG : fd;
    }
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : -BN_ENOTREG;
    }
    if (!(flags & O_NONBLOCK))
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);   /* F_SETFL takes only the status flags */
    return fd;
}

/* ---- namespace operations: parent + leaf, the kernel never follows the leaf here ----- */

int bn_mkdir(int root, const char *path, int mode, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 0, &p);
    if (r < 0)
        return r;
    r = p.dots ? -EEXIST : bn_neg(mkdirat(p.pfd, p.leafs, (mode_t)mode));
    bn_release(&p);
    return r;
}

int bn_unlink(int root, const char *path, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 0, &p);
    if (r < 0)
        return r;
    r = p.dots ? -EISDIR : bn_neg(unlinkat(p.pfd, p.leafs, 0));
    bn_release(&p);
    return r;
}

int bn_rmdir(int root, const char *path, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 0, &p);
    if (r < 0)
        return r;
    if (p.dots)
        r = strcmp(p.leaf, ".") == 0 ? -EINVAL : -ENOTEMPTY;
    else
        r = bn_neg(unlinkat(p.pfd, p.leafs, AT_REMOVEDIR));
    bn_release(&p);
    return r;
}

int bn_rename(int root, const char *src, const char *dst, unsigned int flags, int rx)
{
    bn_path s, d;
    int r = bn_split(root, src, rx, 0, &s);
    if (r < 0)
        return r;
    r = bn_split(root, dst, rx, 0, &d);
    if (r < 0) {
        bn_release(&s);
        return r;
    }
    if (s.dots || d.dots)
        r = -EBUSY;
    else if (flags)
        r = bn_neg((int)syscall(SYS_renameat2, s.pfd, s.leafs, d.pfd, d.leafs, flags));
    else
        r = bn_neg(renameat(s.pfd, s.leafs, d.pfd, d.leafs));
    bn_release(&s);
    bn_release(&d);
    return r;
}

int bn_link(int root, const char *src, const char *dst, int rx)
{
    bn_path s, d;
    /* want_target: a source "x/" would make linkat follow x; we answer for it instead */
    int r = bn_split(root, src, rx, 1, &s);
    if (r < 0)
        return r;
    if (s.tfd >= 0) {
        bn_release(&s);
        return -EPERM;   /* resolves to a directory: no hard links to directories */
    }
    r = bn_split(root, dst, rx, 0, &d);
    if (r < 0) {
        bn_release(&s);
        return r;
    }
    r = d.dots ? -EEXIST : bn_neg(linkat(s.pfd, s.leaf, d.pfd, d.leafs, 0));
    bn_release(&s);
    bn_release(&d);
    return r;
}

int bn_symlink(int root, const char *target, const char *path, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 0, &p);
    if (r < 0)
        return r;
    r = p.dots ? -EEXIST : bn_neg(symlinkat(target, p.pfd, p.leafs));
    bn_release(&p);
    return r;
}

int bn_mkfifo(int root, const char *path, int mode, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 0, &p);
    if (r < 0)
        return r;
    r = p.dots ? -EEXIST : bn_neg(mknodat(p.pfd, p.leafs, S_IFIFO | (mode & 07777), 0));
    bn_release(&p);
    return r;
}

/* ---- metadata on the final component itself (never through a final symlink) --------- */

static char *bn_procfd(char *buf, size_t n, int fd)
{
    snprintf(buf, n, "/proc/self/fd/%d", fd);
    return buf;
}

static int bn_chmod_fd(int fd, int mode)
{
    /* fd is O_PATH; it never names a symlink here unless O_NOFOLLOW gave us the link */
    long r = syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH);
    if (r == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISLNK(st.st_mode))
        return -EOPNOTSUPP;
    char pb[64];
    return bn_neg(chmod(bn_procfd(pb, sizeof pb, fd), (mode_t)mode));
}

int bn_chmod(int root, const char *path, int mode, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 1, &p);
    if (r < 0)
        return r;
    mode &= 07777;
    if (p.tfd >= 0)
        r = bn_chmod_fd(p.tfd, mode);
    else {
        long k = syscall(SYS_fchmodat2, p.pfd, p.leaf, mode, AT_SYMLINK_NOFOLLOW);
        if (k == 0)
            r = 0;
        else if (errno != ENOSYS)
            r = -errno;
        else {
            /* no fchmodat2: pin the leaf with O_PATH|O_NOFOLLOW, refuse a link, go via /proc */
            int fd = openat(p.pfd, p.leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                r = -errno;
            else {
                r = bn_chmod_fd(fd, mode);
                close(fd);
            }
        }
    }
    bn_release(&p);
    return r;
}

int bn_chown(int root, const char *path, int uid, int gid, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 1, &p);
    if (r < 0)
        return r;
    if (p.tfd >= 0)
        r = bn_neg(fchownat(p.tfd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH));
    else
        r = bn_neg(fchownat(p.pfd, p.leaf, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW));
    bn_release(&p);
    return r;
}

int bn_utime(int root, const char *path, int64_t atime_ns, int64_t mtime_ns, int now, int rx)
{
    bn_path p;
    struct timespec ts[2];
    int r = bn_split(root, path, rx, 1, &p);
    if (r < 0)
        return r;
    ts[0].tv_sec = atime_ns / 1000000000LL;
    ts[0].tv_nsec = atime_ns % 1000000000LL;
    ts[1].tv_sec = mtime_ns / 1000000000LL;
    ts[1].tv_nsec = mtime_ns % 1000000000LL;
    for (int i = 0; i < 2; i++)
        if (ts[i].tv_nsec < 0) {
            ts[i].tv_nsec += 1000000000LL;
            ts[i].tv_sec -= 1;
        }
    const struct timespec *t = now ? NULL : ts;
    if (p.tfd >= 0)
        r = bn_neg(utimensat(p.tfd, "", t, AT_EMPTY_PATH));
    else
        r = bn_neg(utimensat(p.pfd, p.leaf, t, AT_SYMLINK_NOFOLLOW));
    bn_release(&p);
    return r;
}

int bn_truncate(int root, const char *path, int64_t length, int rx)
{
    if (length < 0)
        return -EINVAL;
    int fd = bn_open_regular(root, path, O_WRONLY, 0, rx);
    if (fd < 0)
        return fd;
    int r = bn_neg(ftruncate(fd, (off_t)length));
    close(fd);
    return r;
}

/* ---- data: copy and atomic replace -------------------------------------------------- */

static int bn_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len > (1 << 30) ? (1 << 30) : len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int bn_copy_fd(int in, int out, int reflink)
{
    if (reflink != BN_REFLINK_NEVER) {
        if (ioctl(out, FICLONE, in) == 0)
            return 0;
        if (reflink == BN_REFLINK_ALWAYS)
            return -errno;
    }
    int use_cfr = 1;
    char *buf = NULL;
    for (;;) {
        ssize_t n;
        if (use_cfr) {
            n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                          errno == EOPNOTSUPP || errno == EBADF)) {
                use_cfr = 0;
                continue;
            }
        } else {
            if (!buf && !(buf = malloc(1 << 20)))
                return -ENOMEM;
            n = read(in, buf, 1 << 20);
            if (n > 0) {
                int r = bn_write_all(out, buf, (size_t)n);
                if (r < 0) {
                    free(buf);
                    return r;
                }
            }
        }
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            return -e;
        }
    }
    free(buf);
    return 0;
}

static void bn_tmpname(char *out, size_t n, const char *leaf)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&r;
    snprintf(out, n, ".%.200s.beneathd-%016llx", leaf, (unsigned long long)r);
}

/*
 * Crash journal for temporary names. Linux cannot link an O_TMPFILE over an existing
 * name, so replacing one takes a visible temporary name and a rename; a SIGKILL between
 * the two would leave that name behind. So, when a journal `j` is given (a file in a
 * private directory outside the root, mapped MAP_SHARED: what is stored there is in the
 * page cache at once and outlives the process), a record exists from just before a
 * temporary name appears until just after it is gone: one slot holding "BNJ1", a length
 * and the temporary's absolute path as /proc/self/fd shows its directory. No syscall but
 * that readlink. The next Root that takes the journal removes what the records name
 * (beneath the root only; daemon/journal.py). Best effort: a path that does not fit a
 * slot (over ~4 KiB) leaves the call unjournaled. More than BN_JSLOTS temporaries at once
 * in one process wait for a free slot.
 */
typedef struct bn_journal bn_journal;
struct bn_journal { char *map; uint64_t used[BN_JSLOTS / 64]; };

bn_journal *bn_journal_map(int fd)
{
    struct bn_journal *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->map = mmap(NULL, (size_t)BN_JSLOT * BN_JSLOTS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (j->map == MAP_FAILED) {
        int e = errno;
        free(j);
        errno = e;
        return NULL;
    }
    return j;
}

void bn_journal_unmap(bn_journal *j)
{
    if (j) {
        munmap(j->map, (size_t)BN_JSLOT * BN_JSLOTS);
        free(j);
    }
}

static int bn_jclaim(bn_journal *j)
{
    for (;;) {
        for (int w = 0; w < BN_JSLOTS / 64; w++) {
            uint64_t cur = __atomic_load_n(&j->used[w], __ATOMIC_RELAXED);
            while (~cur) {
                int b = __builtin_ctzll(~cur);
                if (__atomic_compare_exchange_n(&j->used[w], &cur, cur | (1ULL << b), 0,
                                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                    return w * 64 + b;
            }
        }
        sched_yield();
    }
}

static int bn_jadd(bn_journal *j, int dfd, const char *tmp)
{
    char pb[64], p[PATH_MAX];
    if (!j)
        return -1;
    ssize_t n = readlink(bn_procfd(pb, sizeof pb, dfd), p, sizeof p);
    if (n <= 0)
        return -1;
    size_t t = strlen(tmp), len = (size_t)n + 1 + t;
    if (8 + len > BN_JSLOT)
        return -1;
    int s = bn_jclaim(j);
    char *rec = j->map + (size_t)s * BN_JSLOT;
    uint32_t l32 = (uint32_t)len;
    memcpy(rec + 8, p, (size_t)n);
    rec[8 + n] = '/';
    memcpy(rec + 9 + n, tmp, t);
    memcpy(rec + 4, &l32, 4);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(rec, "BNJ1", 4);
    return s;
}

static void bn_jdel(bn_journal *j, int s)
{
    if (j && s >= 0) {
        __atomic_store_n(j->map + (size_t)s * BN_JSLOT, (char)0, __ATOMIC_RELEASE);
        __atomic_fetch_and(&j->used[s / 64], ~(1ULL << (s % 64)), __ATOMIC_RELEASE);
    }
}

/*
 * Atomically make dfd/leaf hold new content: fill an O_TMPFILE (or, where the file system
 * has none, a hidden temporary name) with `fill`, then link it in (noreplace) or rename
 * it over the old name. The destination is whole or absent; the temporary name, if any,
 * is removed on every failure and journaled in `j` (see bn_jadd) while it exists.
 */
typedef int (*bn_fill_fn)(int fd, void *arg);

static int bn_atomic_replace(int dfd, const char *leaf, int mode, int flags,
                             const struct stat *meta, bn_fill_fn fill, void *arg, bn_journal *j)
{
    char tmp[NAME_MAX + 64], pb[64];
    int rec = -1;
    int r, fd, named = 0;
    struct stat old;
    int have_old = fstatat(dfd, leaf, &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (have_old && S_ISDIR(old.st_mode))
        return -EISDIR;
    if (have_old && !(flags & BN_AW_OVERWRITE))
        return -EEXIST;

    fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, (mode_t)(mode & 07777));
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        for (int i = 0; i < 16 && fd < 0; i++) {
            bn_tmpname(tmp, sizeof tmp, leaf);
            rec = bn_jadd(j, dfd, tmp);
            fd = openat(dfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                        (mode_t)(mode & 07777));
            if (fd < 0) {
                int e = errno;
                bn_jdel(j, rec);
                errno = e;
                if (e != EEXIST)
                    break;
            }
        }
        named = fd >= 0;
    }
    if (fd < 0)
        return -errno;
    r = fill(fd, arg);
    if (r == 0 && (flags & BN_AW_KEEP_MODE) && have_old && S_ISREG(old.st_mode))
        r = bn_neg(fchmod(fd, old.st_mode & 07777));
    else if (r == 0 && (flags & BN_AW_EXACT_MODE))
        r = bn_neg(fchmod(fd, mode & 07777));
    if (r == 0 && meta) {
        struct timespec ts[2] = {meta->st_atim, meta->st_mtim};
        if (fchown(fd, meta->st_uid, meta->st_gid) < 0 && errno != EPERM)
            r = -errno;
        if (r == 0)
            r = bn_neg(fchmod(fd, meta->st_mode & 07777));
        if (r == 0)
            r = bn_neg(futimens(fd, ts));
    }
    if (r == 0)
        BN_HOOK(3);
    if (r == 0 && !named) {
        /* the unprivileged way to link an O_TMPFILE: through its /proc/self/fd magic link */
        bn_procfd(pb, sizeof pb, fd);
        if (have_old)
            errno = EEXIST;   /* known to exist: the noreplace link would fail anyway */
        else if (linkat(AT_FDCWD, pb, dfd, leaf, AT_SYMLINK_FOLLOW) == 0)
            goto done;
        if (errno != EEXIST || !(flags & BN_AW_OVERWRITE)) {
            r = -errno;
            goto done;
        }
        for (int i = 0; i < 16; i++) {
            bn_tmpname(tmp, sizeof tmp, leaf);
            rec = bn_jadd(j, dfd, tmp);
            if (linkat(AT_FDCWD, pb, dfd, tmp, AT_SYMLINK_FOLLOW) == 0) {
                named = 1;
                break;
            }
            int e = errno;
            bn_jdel(j, rec);
            if (e != EEXIST) {
                r = -e;
                goto done;
            }
        }
        if (!named)
            r = -EEXIST;
    }
    if (r == 0 && named) {
        if (flags & BN_AW_OVERWRITE)
            r = bn_neg(renameat(dfd, tmp, dfd, leaf));
        else
            r = bn_neg((int)syscall(SYS_renameat2, dfd, tmp, dfd, leaf, RENAME_NOREPLACE));
    }
    if (r < 0 && named)
        unlinkat(dfd, tmp, 0);
    if (named)
        bn_jdel(j, rec);
done:
    close(fd);
    return r;
}

struct bn_buf { const char *buf; size_t len; };
static int bn_fill_buf(int fd, void *arg)
{
    struct bn_buf *b = arg;
    return bn_write_all(fd, b->buf, b->len);
}

/*
 * Extended attributes (user.*, ACLs, ...), as `cp -a` and shutil.copystat copy them: every
 * name the source lists that the destination accepts. Like shutil, a refusal for lack of
 * privilege or support (EPERM, ENOTSUP, EINVAL, ENODATA) skips that name.
 */
static int bn_xattr_skip(int e) { return e == EPERM || e == ENOTSUP || e == EINVAL || e == ENODATA; }

static int bn_copy_xattrs(int in, int out)
{
    char small[1024], *list = small, *val = NULL;
    ssize_t n = flistxattr(in, small, sizeof small);
    if (n < 0 && errno == ERANGE) {
        n = flistxattr(in, NULL, 0);
        if (n > 0 && !(list = malloc((size_t)n)))
            return -ENOMEM;
        if (n > 0)
            n = flistxattr(in, list, (size_t)n);
    }
    int r = n < 0 ? (bn_xattr_skip(errno) ? 0 : -errno) : 0;
    if (n > 0 && !(val = malloc(XATTR_SIZE_MAX)))
        r = -ENOMEM;
    for (char *name = list; r == 0 && n > 0 && name < list + n; name += strlen(name) + 1) {
        ssize_t v = fgetxattr(in, name, val, XATTR_SIZE_MAX);
        if (v < 0)
            r = bn_xattr_skip(errno) ? 0 : -errno;
        else if (fsetxattr(out, name, val, (size_t)v, 0) < 0)
            r = bn_xattr_skip(errno) ? 0 : -errno;
    }
    free(val);
    if (list != small)
        free(list);
    return r;
}

struct bn_src { int fd; int reflink; int xattrs; };
static int bn_fill_fd(int fd, void *arg)
{
    struct bn_src *s = arg;
    int r = bn_copy_fd(s->fd, fd, s->reflink);
    return (r == 0 && s->xattrs) ? bn_copy_xattrs(s->fd, fd) : r;
}

int bn_write_file(int root, const char *path, const char *buf, size_t len, int mode, int flags, bn_journal *j, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 0, &p);
    if (r < 0)
        return r;
    if (p.dots)
        r = -EISDIR;
    else if (p.slash)
        r = -EISDIR;
    else {
        struct bn_buf b = {buf, len};
        r = bn_atomic_replace(p.pfd, p.leaf, mode, flags, NULL, bn_fill_buf, &b, j);
    }
    bn_release(&p);
    return r;
}

int bn_copy_file(int root, const char *src, const char *dst, int overwrite, int reflink, int preserve, bn_journal *j, int rx)
{
    struct stat st;
    bn_path p;
    int sfd = bn_open_regular(root, src, O_RDONLY, 0, rx);
    if (sfd < 0)
        return sfd;
    int r = bn_neg(fstat(sfd, &st));
    if (r == 0)
        r = bn_split(root, dst, rx, 0, &p);
    if (r < 0) {
        close(sfd);
        return r;
    }
    if (p.dots || p.slash)
        r = -EISDIR;
    else {
        struct bn_src s = {sfd, reflink, preserve};
        r = bn_atomic_replace(p.pfd, p.leaf, st.st_mode & 07777,
                              (overwrite ? BN_AW_OVERWRITE : 0) | BN_AW_EXACT_MODE,
                              preserve ? &st : NULL, bn_fill_fd, &s, j);
    }
    bn_release(&p);
    close(sfd);
    return r;
}

/* ---- trees: descend by dirfd only (O_NOFOLLOW|O_DIRECTORY), never through a link ---- */

static int bn_opendir_at(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int bn_rm_contents(int dfd, int depth);

/* Remove dfd/name whatever it is; a directory is emptied through its own fd first. */
static int bn_rm_entry(int dfd, const char *name, int depth)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        if (unlinkat(dfd, name, 0) == 0)
            return 0;
        if (errno == ENOENT)
            return 0;
        int why = errno;
        if (why != EISDIR && why != EPERM)
            return -why;
        BN_HOOK(2);
        int cfd = bn_opendir_at(dfd, name);
        if (cfd == -ENOTDIR || cfd == -ELOOP) {
            if (why == EPERM)
                return -EPERM;
            continue;   /* swapped for a file or a link meanwhile: unlink that */
        }
        if (cfd == -ENOENT)
            return 0;
        if (cfd < 0)
            return cfd;
        int r = bn_rm_contents(cfd, depth + 1);   /* takes cfd */
        if (r < 0)
            return r;
        if (unlinkat(dfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != ENOTEMPTY && errno != ENOTDIR)
            return -errno;
    }
    return -EAGAIN;
}

static int bn_rm_contents(int dfd, int depth)
{
    if (depth > BN_MAX_DEPTH) {
        close(dfd);
        return -ELOOP;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return -e;
    }
    int r = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
            continue;
        r = bn_rm_entry(dirfd(d), n, depth);
        if (r < 0)
            break;
        errno = 0;
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    return r;
}

int bn_rm(int root, const char *path, int recursive, int force, int rx)
{
    bn_path p;
    int r = bn_split(root, path, rx, 0, &p);
    if (r < 0)
        return (force && r == -ENOENT) ? 0 : r;
    if (p.dots) {
        bn_release(&p);
        return -EINVAL;   /* rm refuses "." and ".." */
    }
    if (p.slash) {
        struct stat st;
        if (fstatat(p.pfd, p.leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
            bn_release(&p);
            return -ENOTDIR;
        }
    }
    if (!recursive) {
        r = bn_neg(unlinkat(p.pfd, p.leaf, 0));
        if (r == -EISDIR || r == -EPERM) {
            struct stat st;
            if (fstatat(p.pfd, p.leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
                r = -EISDIR;
        }
    } else
        r = bn_rm_entry(p.pfd, p.leaf, 0);
    if (r == -ENOENT && force)
        r = 0;
    bn_release(&p);
    return r;
}

struct bn_cpctx {
    int flags;
    bn_journal *j;   /* crash journal for temporary names, or NULL */
    dev_t top_dev;
    ino_t top_ino;   /* the destination top directory: never copied into itself */
};

static int bn_set_meta(int fd, const struct stat *st, int is_link_parent, const char *name)
{
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    if (is_link_parent) {   /* fd is the parent, name the symlink */
        if (fchownat(fd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM)
            return -errno;
        return bn_neg(utimensat(fd, name, ts, AT_SYMLINK_NOFOLLOW));
    }
    if (fchown(fd, st->st_uid, st->st_gid) < 0 && errno != EPERM)
        return -errno;
    if (fchmod(fd, st->st_mode & 07777) < 0)
        return -errno;
    return bn_neg(futimens(fd, ts));
}

static int bn_cp_dir(int sfd, int dfd, struct bn_cpctx *c, int depth);

/* Copy sfd/name (not followed) to dfd/name. */
static int bn_cp_entry(int sfd, int dfd, const char *name, struct bn_cpctx *c, int depth)
{
    struct stat st;
    int preserve = c->flags & BN_CP_PRESERVE;
    if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    BN_HOOK(2);
    if (S_ISDIR(st.st_mode)) {
        if (st.st_dev == c->top_dev && st.st_ino == c->top_ino)
            return 0;   /* the copy itself, inside its source: cp's "into itself" */
        int cs = bn_opendir_at(sfd, name);
        if (cs < 0)
            return cs == -ENOENT ? 0 : cs;
        if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST) {
            int e = errno;
            close(cs);
            return -e;
        }
        int cd = bn_opendir_at(dfd, name);
        if (cd < 0) {
            close(cs);
            return cd == -ELOOP ? -EEXIST : cd;
        }
        int r = bn_cp_dir(cs, cd, c, depth + 1);
        if (r == 0 && preserve)
            r = bn_copy_xattrs(cs, cd);
        if (r == 0) {
            if (preserve)
                r = bn_set_meta(cd, &st, 0, NULL);
            else
                r = bn_neg(fchmod(cd, st.st_mode & 07777));
        }
        close(cs);
        close(cd);
        return r;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(sfd, name, target, sizeof target - 1);
        if (n < 0)
            return errno == ENOENT ? 0 : -errno;
        target[n] = 0;
        if (symlinkat(target, dfd, name) < 0) {
            if (errno != EEXIST || !(c->flags & BN_CP_OVERWRITE))
                return -errno;
            struct stat dst;
            if (fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(dst.st_mode))
                return -EISDIR;
            char tmp[NAME_MAX + 64];
            bn_tmpname(tmp, sizeof tmp, name);
            int rec = bn_jadd(c->j, dfd, tmp);
            if (symlinkat(target, dfd, tmp) < 0) {
                int e = errno;
                bn_jdel(c->j, rec);
                return -e;
            }
            int e = renameat(dfd, tmp, dfd, name) < 0 ? errno : 0;
            if (e)
                unlinkat(dfd, tmp, 0);
            bn_jdel(c->j, rec);
            if (e)
                return -e;
        }
        return preserve ? bn_set_meta(dfd, &st, 1, name) : 0;
    }
    if (S_ISFIFO(st.st_mode)) {
        if (mknodat(dfd, name, S_IFIFO | (st.st_mode & 07777), 0) < 0 &&
            (errno != EEXIST || !(c->flags & BN_CP_OVERWRITE)))
            return -errno;
        return 0;
    }
    if (!S_ISREG(st.st_mode))
        return 0;   /* sockets and device nodes are not copied */
    int fd = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return (errno == ENOENT) ? 0 : -errno;
    struct stat st2;
    int r = bn_neg(fstat(fd, &st2));
    if (r == 0 && !S_ISREG(st2.st_mode))
        r = -BN_ENOTREG;   /* swapped after the fstatat: refuse rather than guess */
    if (r == 0) {
        struct bn_src s = {fd, BN_REFLINK_AUTO, preserve};
        r = bn_atomic_replace(dfd, name, st2.st_mode & 07777,
                              (c->flags & BN_CP_OVERWRITE) ? BN_AW_OVERWRITE : 0,
                              preserve ? &st2 : NULL, bn_fill_fd, &s, c->j);
    }
    close(fd);
    return r;
}

static int bn_cp_dir(int sfd, int dfd, struct bn_cpctx *c, int depth)
{
    if (depth > BN_MAX_DEPTH)
        return -ELOOP;
    int rfd = dup(sfd);
    if (rfd < 0)
        return -errno;
    DIR *d = fdopendir(rfd);
    if (!d) {
        int e = errno;
        close(rfd);
        return -e;
    }
    int r = 0, first = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
            continue;
        r = bn_cp_entry(sfd, dfd, n, c, depth);
        if (r < 0 && first == 0)
            first = r;   /* like cp: go on, report the first failure */
        errno = 0;
    }
    if (first == 0 && errno != 0)
        first = -errno;
    closedir(d);
    return first;
}

int bn_cp(int root, const char *src, const char *dst, int flags, bn_journal *j, int rx)
{
    struct stat st;
    bn_path p;
    if (src[0] == '/')
        return -BN_EESCAPE;
    /* the top-level source is followed (in-tree only) */
    int sfd = bn_openat2(root, src[0] ? src : "", O_PATH, 0, rx);
    if (sfd < 0)
        return src[0] ? sfd : -ENOENT;
    int r = bn_neg(fstat(sfd, &st));
    close(sfd);
    if (r < 0)
        return r;
    if (!S_ISDIR(st.st_mode)) {
        if (!S_ISREG(st.st_mode))
            return -BN_ENOTREG;
        return bn_copy_file(root, src, dst, flags & BN_CP_OVERWRITE, BN_REFLINK_AUTO,
                            flags & BN_CP_PRESERVE, j, rx);
    }
    if (!(flags & BN_CP_RECURSIVE))
        return -EISDIR;
    int sd = bn_openat2(root, src, O_RDONLY | O_DIRECTORY, 0, rx);
    if (sd < 0)
        return sd;
    r = bn_split(root, dst, rx, 0, &p);
    if (r < 0) {
        close(sd);
        return r;
    }
    if (p.dots) {
        r = -EEXIST;
        goto out;
    }
    if (mkdirat(p.pfd, p.leaf, 0700) < 0) {
        if (errno != EEXIST || !(flags & BN_CP_OVERWRITE)) {
            r = -errno;
            goto out;
        }
    }
    int dd = bn_opendir_at(p.pfd, p.leaf);
    if (dd < 0) {
        r = dd == -ELOOP ? -EEXIST : dd;
        goto out;
    }
    struct stat dst_st;
    struct bn_cpctx c = {flags, j, 0, 0};
    if (fstat(dd, &dst_st) == 0) {
        c.top_dev = dst_st.st_dev;
        c.top_ino = dst_st.st_ino;
    }
    if (dst_st.st_dev == st.st_dev && dst_st.st_ino == st.st_ino)
        r = -EINVAL;   /* cp -r a a */
    else
        r = bn_cp_dir(sd, dd, &c, 0);
    if (r == 0 && (flags & BN_CP_PRESERVE))
        r = bn_copy_xattrs(sd, dd);
    if (r == 0)
        r = (flags & BN_CP_PRESERVE) ? bn_set_meta(dd, &st, 0, NULL) : bn_neg(fchmod(dd, st.st_mode & 07777));
    close(dd);
out:
    bn_release(&p);
    close(sd);
    return r;
}

/* ---- Landlock ------------------------------------------------------------------------ */

struct bn_ll_ruleset_attr { uint64_t handled_access_fs; };
struct bn_ll_path_beneath { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));
#define BN_LL_CREATE_RULESET_VERSION (1U << 0)
#define BN_LL_RULE_PATH_BENEATH 1

int bn_landlock_abi(void)
{
    long r = syscall(SYS_landlock_create_ruleset, NULL, 0, BN_LL_CREATE_RULESET_VERSION);
    return r < 0 ? -errno : (int)r;
}

int bn_landlock_create(uint64_t handled_fs)
{
    struct bn_ll_ruleset_attr a = {handled_fs};
    long r = syscall(SYS_landlock_create_ruleset, &a, sizeof a, 0);
    return r < 0 ? -errno : (int)r;
}

int bn_landlock_allow(int ruleset, int fd, uint64_t access)
{
    struct bn_ll_path_beneath pb = {access, fd};
    return bn_neg((int)syscall(SYS_landlock_add_rule, ruleset, BN_LL_RULE_PATH_BENEATH, &pb, 0));
}

int bn_landlock_restrict(int ruleset)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return bn_neg((int)syscall(SYS_landlock_restrict_self, ruleset, 0));
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("beneathd._native", SOURCE, extra_compile_args=["-O2", "-Wall"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

/*
 * ops.c: the thin operations.  Each is one call into the resolver (bn_split or bn_openat2,
 * native/resolve.c) and one *at syscall on what it returned, plus the errno an edge case
 * needs ("." or ".." as a last component, a trailing slash).  Nothing here looks a path up.
 */
#include "internal.h"

#include <string.h>
#include <time.h>

void bn_stat_out(const struct stat *st, int64_t *out)
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

/* ---- reads -------------------------------------------------------------------------- */

/* openat2 of the whole path (O_PATH, with O_NOFOLLOW: the final name itself) and fstat. */
static int bn_fstat_path(const bn_root *rt, const char *path, int flags, int64_t *out)
{
    struct stat st;
    int fd = bn_openat2(rt->fd, path, flags, 0, rt->rx);
    if (fd < 0)
        return fd;
    int r = bn_neg(fstat(fd, &st));
    close(fd);
    if (r == 0)
        bn_stat_out(&st, out);
    return r;
}

/* Does path end in a plain name (no trailing slash, not "." or "..")? Then openat2 with
   O_NOFOLLOW acts on that name itself, exactly as fstatat(parent, leaf, NOFOLLOW) would. */
static int bn_plain_leaf(const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] == '/')
        return 0;
    const char *leaf = strrchr(path, '/');
    leaf = leaf ? leaf + 1 : path;
    return !(leaf[0] == '.' && (leaf[1] == 0 || (leaf[1] == '.' && leaf[2] == 0)));
}

int bn_lstat(const bn_root *rt, const char *path, int64_t *out)
{
    bn_path p;
    struct stat st;
    if (!rt->rx && path[0] != '/' && bn_plain_leaf(path)) {
        /* one openat2 of the whole path (the name itself, not followed) and an fstat: the
           cost of stat, instead of opening the parent and then fstatat on the name */
        return bn_fstat_path(rt, path, O_PATH | O_NOFOLLOW, out);
    }
    int r = bn_split(rt, path, 1, &p);
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

int bn_stat(const bn_root *rt, const char *path, int64_t *out)
{
    if (path[0] == '/')
        return -BN_EESCAPE;
    return bn_fstat_path(rt, path, O_PATH, out);
}

int bn_readlink(const bn_root *rt, const char *path, char *buf, size_t size)
{
    bn_path p;
    int r = bn_split(rt, path, 1, &p);
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

/* ---- namespace operations: parent + leaf, the kernel never follows the leaf here ----- */

/* Make a new name (a directory, a link or a FIFO) at the leaf; "." and ".." exist already. */
static int bn_create(const bn_root *rt, const char *path, mode_t kind, int mode, const char *target)
{
    bn_path p;
    int r = bn_split(rt, path, 0, &p);
    if (r < 0)
        return r;
    if (p.dots)
        r = -EEXIST;
    else if (kind == S_IFDIR)
        r = bn_neg(mkdirat(p.pfd, p.leafs, (mode_t)mode));
    else if (kind == S_IFLNK)
        r = bn_neg(symlinkat(target, p.pfd, p.leafs));
    else
        r = bn_neg(mknodat(p.pfd, p.leafs, S_IFIFO | (mode & 07777), 0));
    bn_release(&p);
    return r;
}

int bn_mkdir(const bn_root *rt, const char *path, int mode)
{
    return bn_create(rt, path, S_IFDIR, mode, NULL);
}

int bn_unlink(const bn_root *rt, const char *path)
{
    bn_path p;
    int r = bn_split(rt, path, 0, &p);
    if (r < 0)
        return r;
    r = p.dots ? -EISDIR : bn_neg(unlinkat(p.pfd, p.leafs, 0));
    bn_release(&p);
    return r;
}

int bn_rmdir(const bn_root *rt, const char *path)
{
    bn_path p;
    int r = bn_split(rt, path, 0, &p);
    if (r < 0)
        return r;
    if (p.dots)
        r = strcmp(p.leaf, ".") == 0 ? -EINVAL : -ENOTEMPTY;
    else
        r = bn_neg(unlinkat(p.pfd, p.leafs, AT_REMOVEDIR));
    bn_release(&p);
    return r;
}

int bn_rename(const bn_root *rt, const char *src, const char *dst, unsigned int flags)
{
    bn_path s, d;
    int r = bn_split(rt, src, 0, &s);
    if (r < 0)
        return r;
    r = bn_split(rt, dst, 0, &d);
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

int bn_link(const bn_root *rt, const char *src, const char *dst)
{
    bn_path s, d;
    /* want_target: a source "x/" would make linkat follow x; we answer for it instead */
    int r = bn_split(rt, src, 1, &s);
    if (r < 0)
        return r;
    if (s.tfd >= 0) {
        bn_release(&s);
        return -EPERM;   /* resolves to a directory: no hard links to directories */
    }
    r = bn_split(rt, dst, 0, &d);
    if (r < 0) {
        bn_release(&s);
        return r;
    }
    r = d.dots ? -EEXIST : bn_neg(linkat(s.pfd, s.leaf, d.pfd, d.leafs, 0));
    bn_release(&s);
    bn_release(&d);
    return r;
}

int bn_symlink(const bn_root *rt, const char *target, const char *path)
{
    return bn_create(rt, path, S_IFLNK, 0, target);
}

int bn_mkfifo(const bn_root *rt, const char *path, int mode)
{
    return bn_create(rt, path, S_IFIFO, mode, NULL);
}

/* ---- metadata on the final component itself (never through a final symlink) --------- */

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

int bn_chmod_leaf(int dfd, const char *leaf, int mode)
{
    if (syscall(SYS_fchmodat2, dfd, leaf, mode, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (errno != ENOSYS)
        return -errno;
    /* no fchmodat2: pin the leaf with O_PATH|O_NOFOLLOW, refuse a link, go via /proc */
    int fd = openat(dfd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = bn_chmod_fd(fd, mode);
    close(fd);
    return r;
}

int bn_chmod(const bn_root *rt, const char *path, int mode)
{
    bn_path p;
    int r = bn_split(rt, path, 1, &p);
    if (r < 0)
        return r;
    mode &= 07777;
    r = p.tfd >= 0 ? bn_chmod_fd(p.tfd, mode) : bn_chmod_leaf(p.pfd, p.leaf, mode);
    bn_release(&p);
    return r;
}

int bn_chown(const bn_root *rt, const char *path, int uid, int gid)
{
    bn_path p;
    int r = bn_split(rt, path, 1, &p);
    if (r < 0)
        return r;
    if (p.tfd >= 0)
        r = bn_neg(fchownat(p.tfd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH));
    else
        r = bn_neg(fchownat(p.pfd, p.leaf, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW));
    bn_release(&p);
    return r;
}

int bn_utime(const bn_root *rt, const char *path, int64_t atime_ns, int64_t mtime_ns, int now)
{
    bn_path p;
    struct timespec ts[2];
    int r = bn_split(rt, path, 1, &p);
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

int bn_truncate(const bn_root *rt, const char *path, int64_t length)
{
    if (length < 0)
        return -EINVAL;
    int fd = bn_open_regular(rt, path, O_WRONLY, 0);
    if (fd < 0)
        return fd;
    int r = bn_neg(ftruncate(fd, (off_t)length));
    close(fd);
    return r;
}

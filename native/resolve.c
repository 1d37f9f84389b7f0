/*
 * resolve.c: the one door through which a caller's path becomes an fd.
 *
 * Why this is enough.  openat2(2) with RESOLVE_BENEATH refuses, inside the kernel and
 * atomically with the lookup itself, any resolution that would leave the directory it
 * starts from: an absolute path, a ".." above it, an absolute symlink, or a relative one
 * that climbs out.  RESOLVE_NO_MAGICLINKS refuses /proc-style magic links, which jump
 * without a path.  The kernel checks the whole walk at once, so there is no window between
 * a check and a use for a rename or a symlink swap to slip into; the only race it admits
 * is a rename that moves a ".." it has crossed, and then it fails with EAGAIN, which we
 * retry a bounded number of times (BN_EAGAIN_TRIES) and then report.
 *
 * Where EXDEV means what.  From openat2, EXDEV means "this walk would escape" (and with
 * RESOLVE_NO_XDEV, also "this walk would cross a mount"): bn_openat2 turns it into
 * -BN_EESCAPE at once so that no caller confuses it with the EXDEV that renameat2 or
 * linkat report for two names on different mounts (move() copies across those).
 *
 * Acting on the final component.  A path is split into its parent, resolved here, and its
 * last name, which the operation hands to one *at syscall relative to that parent fd with
 * AT_SYMLINK_NOFOLLOW or the like (native/ops.c): the kernel never follows the last name
 * unless the operation is one that follows links, and then it is opened here whole.
 * A last component of "." or "..", or a trailing slash, would make the kernel resolve
 * something itself, so such a path is opened here whole (tfd) and the operation acts on
 * that fd.  Tree walks descend one getdents name at a time (bn_open_child_dir).
 */
#include "internal.h"

#include <string.h>

static int bn_tries_eagain = BN_EAGAIN_TRIES;

/* Deterministic race tests: a callback between steps, off (one predictable branch) by default. */
volatile int bn_hook_on = 0;
void bn_set_hook(int on) { bn_hook_on = on; }

static int bn_openat2_how(int dirfd, const char *path, int flags, int mode, uint64_t resolve)
{
    struct bn_open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC);
    if (flags & O_CREAT || (flags & O_TMPFILE) == O_TMPFILE)
        how.mode = (uint64_t)(mode & 07777);
    how.resolve = resolve;
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

int bn_openat2(int dirfd, const char *path, int flags, int mode, int rx)
{
    return bn_openat2_how(dirfd, path, flags, mode,
                          BN_RESOLVE | ((rx & BN_RESOLVE_NO_XDEV) ? BN_RESOLVE_NO_XDEV_K : 0));
}

int bn_open_child_dir(int dfd, const char *name)
{
    /* No link is ever followed inside a tree (RESOLVE_NO_SYMLINKS: a link gives ELOOP);
       mounts inside it are crossed, as they always were by the walks. */
    return bn_openat2_how(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK, 0,
                          BN_RESOLVE | BN_RESOLVE_NO_SYMLINKS);
}

/* ---- the parent + leaf split -------------------------------------------------------- */

void bn_release(bn_path *p)
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
int bn_split(int root, const char *path, int rx, int want_target, bn_path *p)
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

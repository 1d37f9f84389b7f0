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

static int bn_openat2_raw(int dirfd, const char *path, int flags, int mode, uint64_t resolve)
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
        return -errno;
    }
    return -EAGAIN;
}

/*
 * openat2 with EXDEV told apart: an escape (-BN_EESCAPE), or with RESOLVE_NO_XDEV a mount
 * crossed (-BN_EMOUNT).  The kernel says EXDEV for both, so a refused walk is tried once
 * more without NO_XDEV: EXDEV again means it escapes; anything else means only the mount
 * was in the way (O_PATH, so the retry opens nothing that matters; it is closed at once).
 */
static int bn_openat2_how(int dirfd, const char *path, int flags, int mode, uint64_t resolve)
{
    int fd = bn_openat2_raw(dirfd, path, flags, mode, resolve);
    if (fd != -EXDEV)
        return fd;
    if (!(resolve & BN_RESOLVE_NO_XDEV_K))
        return -BN_EESCAPE;
    int again = bn_openat2_raw(dirfd, path, O_PATH | (flags & (O_NOFOLLOW | O_DIRECTORY)), 0,
                               resolve & ~(uint64_t)BN_RESOLVE_NO_XDEV_K);
    if (again >= 0)
        close(again);
    return again == -EXDEV ? -BN_EESCAPE : -BN_EMOUNT;
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
int bn_split(const bn_root *rt, const char *path, int want_target, bn_path *p)
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
        int fd = bn_openat2(rt->fd, path, O_PATH, 0, rt->rx);
        if (fd < 0)
            return fd;
        p->tfd = fd;
        return 0;   /* acted on through tfd only, never through the parent */
    }
    if (!sl) {
        p->pfd = rt->fd;
    } else {
        char *e = sl;
        while (e > buf && e[-1] == '/')
            e--;
        *e = 0;
        int fd = bn_openat2(rt->fd, buf, O_PATH | O_DIRECTORY, 0, rt->rx);
        if (fd < 0)
            return fd;
        p->pfd = fd;
        p->own = 1;
    }
    if (rt->rx & BN_RESOLVE_NO_XDEV) {
        /* The *at call on the leaf would cross a mount sitting there (lookups always do):
           under --no-xdev that is refused like any other crossing. Mounts are the
           operator's, so this look does not race with the project user. */
        int fd = bn_openat2(p->pfd, p->leaf, O_PATH | O_NOFOLLOW, 0, rt->rx);
        if (fd == -BN_EMOUNT || fd == -BN_EESCAPE) {
            bn_release(p);
            return fd;
        }
        if (fd >= 0)
            close(fd);
    }
    BN_HOOK(1);
    return 0;
}

/* ---- what more than one operation needs: final links, realpath, mkdir -p ---------------- */

#define BN_MAX_LINKS 40

/* Join head (up to its last '/') and a link target into out; -ENAMETOOLONG if it does not fit. */
static int bn_join_target(char *out, const char *target)
{
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        n--;
    while (n > 0 && out[n - 1] != '/')
        n--;   /* n: the length of the head, with its slash */
    size_t t = strlen(target);
    if (n + t >= PATH_MAX)
        return -ENAMETOOLONG;
    memmove(out + n, target, t + 1);
    return 0;
}

/* Replace path's last name by a link's target (relative: beneath the root; absolute: an escape). */
static int bn_take_link(char *path, const char *target, int *links)
{
    if (++*links > BN_MAX_LINKS)
        return -ELOOP;
    return target[0] == '/' ? -BN_EESCAPE : bn_join_target(path, target);
}

/* readlink of the final component of path, or -EINVAL when it is not a link. */
static int bn_leaf_link(const bn_root *rt, const char *path, char *target)
{
    bn_path p;
    int r = bn_split(rt, path, 0, &p);
    if (r < 0)
        return r;
    if (p.dots || p.slash) {
        bn_release(&p);
        return -EINVAL;   /* names a directory: never a link */
    }
    ssize_t n = readlinkat(p.pfd, p.leaf, target, PATH_MAX);
    r = n < 0 ? -errno : (n >= PATH_MAX ? -ENAMETOOLONG : (int)n);
    bn_release(&p);
    if (r >= 0)
        target[r] = 0;
    return r;
}

int bn_follow_final(const bn_root *rt, const char *path, char *out)
{
    size_t n = strlen(path);
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(out, path, n + 1);
    char target[PATH_MAX];
    for (int links = 0;;) {
        /* readlinkat alone decides (EINVAL: not a link): a name flipped between a file and
           a link meanwhile is one or the other, never an error of its own */
        int r = bn_leaf_link(rt, out, target);
        if (r < 0)
            return (r == -BN_EESCAPE || r == -BN_EMOUNT || r == -ENAMETOOLONG) ? r : 0;
        r = bn_take_link(out, target, &links);
        if (r < 0)
            return r;
    }
}

/* The path of fd relative to the root's current name ("." for the root), into out. */
static int bn_rel_to_root(int root, int fd, char *out, size_t size)
{
    char pb[64], top[PATH_MAX], here[PATH_MAX];
    for (int i = 0; i < 8; i++) {
        ssize_t t = readlink(bn_procfd(pb, sizeof pb, root), top, sizeof top - 1);
        ssize_t h = readlink(bn_procfd(pb, sizeof pb, fd), here, sizeof here - 1);
        if (t < 0 || h < 0)
            return -errno;
        top[t] = here[h] = 0;
        while (t > 1 && top[t - 1] == '/')
            top[--t] = 0;
        const char *rel = NULL;
        if (strcmp(here, top) == 0)
            rel = ".";
        else if (strncmp(here, top, (size_t)t) == 0 && (here[t] == '/' || t == 1))
            rel = here + t + (t > 1);
        if (rel) {
            size_t n = strlen(rel);
            if (n + 1 > size)
                return -ENAMETOOLONG;
            memcpy(out, rel, n + 1);
            return (int)n;
        }
    }
    return -BN_EESCAPE;   /* not beneath the root's current name: the root moved */
}

int bn_realpath(const bn_root *rt, const char *path, char *out, size_t size)
{
    /* Like os.path.realpath(strict=False): what exists is resolved (openat2, then the
       kernel's own name for the fd), a missing tail is kept as written, and a dangling
       link at the end of what exists is followed textually. */
    char cur[PATH_MAX], rest[PATH_MAX], target[PATH_MAX];
    size_t n = strlen(path);
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    if (path[0] == '/')
        return -BN_EESCAPE;
    memcpy(cur, n ? path : ".", n ? n + 1 : 2);
    rest[0] = 0;
    for (int links = 0;;) {
        int fd = bn_openat2(rt->fd, cur, O_PATH, 0, rt->rx);
        if (fd >= 0) {
            char base[PATH_MAX];
            int r = bn_rel_to_root(rt->fd, fd, base, sizeof base);
            close(fd);
            if (r < 0)
                return r;
            const char *a = strcmp(base, ".") == 0 ? "" : base;
            int w = rest[0] ? snprintf(out, size, "%s%s%s", a, a[0] ? "/" : "", rest)
                            : snprintf(out, size, "%s", base);
            return (w < 0 || (size_t)w >= size) ? -ENAMETOOLONG : w;
        }
        if (fd != -ENOENT)
            return fd;
        int r = bn_leaf_link(rt, cur, target);
        if (r >= 0) {
            r = bn_take_link(cur, target, &links);
            if (r < 0)
                return r;
            continue;
        }
        if (r == -BN_EESCAPE || r == -BN_EMOUNT)
            return r;
        /* cur is missing: keep its last name, resolve its head */
        size_t m = strlen(cur);
        while (m > 0 && cur[m - 1] == '/')
            cur[--m] = 0;
        char *sl = strrchr(cur, '/');
        const char *tail = sl ? sl + 1 : cur;
        if (!tail[0])
            return -ENOENT;
        size_t tl = strlen(tail), rl = strlen(rest);
        if (tl + 1 + rl >= sizeof rest)
            return -ENAMETOOLONG;
        memmove(rest + tl + (rl ? 1 : 0), rest, rl + 1);
        memcpy(rest, tail, tl);
        if (rl)
            rest[tl] = '/';
        if (sl)
            *sl = 0;
        else
            strcpy(cur, ".");
        if (!cur[0])
            strcpy(cur, ".");
    }
}

int bn_mkdir_p(const bn_root *rt, const char *path, int mode)
{
    /* pathlib's mkdir(parents=True): path itself, and if that says ENOENT the ancestors
       from the top with mode 0777 (less the umask), then path again; each one a bn_mkdir,
       so each is resolved by the door above.  Returns 0 (made), 1 (path is a directory
       already: the caller's exist_ok decides) or -errno; -EEXIST is a name that is there
       and is not a directory (a file, a dangling link).
       A name mkdir says exists is looked at here, at once: a second look by the caller
       could find it removed meanwhile and call a missing path existing.  If it is gone by
       then, or mkdir says ENOENT below an ancestor just made or found (an rm -r of an
       ancestor meanwhile), the whole walk starts again, BN_MKDIR_TRIES times at most;
       then -ENOENT. */
    enum { BN_MKDIR_TRIES = 16 };
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    while (n > 0 && buf[n - 1] == '/')
        n--;
    for (int tries = 0; tries < BN_MKDIR_TRIES; tries++) {
        size_t i = n;   /* the name made next is buf[0..i); i == n: path itself */
        int walked = 0; /* path said ENOENT: making the ancestors, from the top */
        for (;;) {
            char cut = buf[i];
            buf[i] = 0;
            int r = i == n ? bn_mkdir(rt, path, mode) : bn_mkdir(rt, buf, 0777);
            if (r == -EEXIST) {
                /* a directory (an in-tree link to one counts, as for pathlib's is_dir)? */
                int fd = bn_openat2(rt->fd, buf, O_PATH | O_DIRECTORY, 0, rt->rx);
                if (fd >= 0) {
                    close(fd);
                    r = 1;
                } else if (fd == -ENOENT) {
                    /* gone, or a dangling link: the name itself says which (made again
                       as a directory by someone else meanwhile: a directory) */
                    struct stat st;
                    fd = bn_openat2(rt->fd, buf, O_PATH | O_NOFOLLOW, 0, rt->rx);
                    r = fd;
                    if (fd >= 0) {
                        r = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) ? 1 : -EEXIST;
                        close(fd);
                    }
                } else {
                    /* not a directory; an ancestor that is a link out says so */
                    r = (i == n || fd == -ENOTDIR) ? -EEXIST : fd;
                }
            }
            buf[i] = cut;
            if (i == n && r != -ENOENT)
                return r;
            if (r == -ENOENT && (walked || i < n))
                break;   /* something above went away meanwhile: again from the start */
            if (r < 0 && r != -ENOENT)
                return r;
            /* the next ancestor from the top (the first one once path said ENOENT) */
            size_t k = walked ? i + 1 : 1;
            walked = 1;
            while (k < n && (buf[k] != '/' || buf[k - 1] == '/'))
                k++;
            i = k < n ? k : n;
        }
    }
    return -ENOENT;
}

/*
 * Open a regular file beneath the root, never blocking and never keeping anything
 * else: O_NONBLOCK|O_NOCTTY for the open itself (a FIFO or device does not block and
 * is closed at once), then fstat, then O_NONBLOCK is dropped again unless asked for.
 */
int bn_open_regular(const bn_root *rt, const char *path, int flags, int mode)
{
    struct stat st;
    if (path[0] == '/')
        return -BN_EESCAPE;
    if (path[0] == 0)
        return -ENOENT;
    int fd = bn_openat2(rt->fd, path, flags | O_NONBLOCK | O_NOCTTY, mode, rt->rx);
    if (fd == -ENXIO || fd == -ENODEV || fd == -EWOULDBLOCK) {
        /* a FIFO without a reader or a device without a driver: say what it is */
        int pfd = bn_openat2(rt->fd, path, O_PATH, 0, rt->rx);
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

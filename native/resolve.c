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
 * retry under the one retry policy (bn_retry_again: BN_RETRY_TRIES, BN_RETRY_MS) and then
 * report.
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
 *
 * Two resolvers, one door.  Everything above is the default; an operator may choose the
 * emulated resolver (bn_emulated, below) where openat2 is missing or blocked.  bn_openat2
 * picks one by rt->rx, so every operation, split and walk uses the same one.
 */
#include "internal.h"

#include <string.h>

#define BN_MAX_LINKS 40   /* links followed in one resolution, as the kernel allows */

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
    for (bn_retry again = {0, 0};;) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        if (!bn_retry_again(&again))
            return -EAGAIN;
    }
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

/* ---- the emulated resolver (opt-in: rx & BN_RESOLVE_EMULATED) --------------------------
 *
 * For kernels and sandboxes without a usable openat2, and only when the operator asks for
 * it.  The same answers as openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS [| NO_SYMLINKS
 * | NO_XDEV]), computed one component at a time from the starting fd:
 *
 * - each component is opened with O_PATH|O_NOFOLLOW from the directory before it, so the
 *   kernel never follows a link and never sees more than one name;
 * - a link is read (readlinkat on its own O_PATH fd) and its target spliced in front of
 *   what is left, 40 links at most (ELOOP); an absolute target is an escape; a link on
 *   procfs or nsfs is a magic link (ELOOP), and the kernel's own rules for following a
 *   link that it no longer applies, MS_NOSYMFOLLOW and fs.protected_symlinks, are kept;
 * - "expect" is the lexical path below the start made of real directories only; a ".."
 *   there is refused as an escape, and a ".." below it is opened and then checked: the
 *   kernel's name for the new fd (/proc/self/fd) must be the start's name plus expect,
 *   and the start's name must not have changed meanwhile.  A rename that moved anything
 *   under the walk fails that check, and the whole resolution is tried again
 *   (bn_retry_again, then EAGAIN), as openat2 does when it sees a rename;
 * - at the end, the directory the last name was opened from is checked the same way, so
 *   a directory moved out of the root mid-walk (which a walk downwards alone would not
 *   notice) cannot carry the result outside;
 * - the last name is opened with the caller's flags plus O_NOFOLLOW; if it turns out to be
 *   a link and the caller did not ask for O_NOFOLLOW, the link is followed as above.
 *
 * The checks need procfs: Root refuses the emulated resolver where /proc/self/fd does not
 * answer (daemon/root.py).  BN_HOOK(4) runs after each component, for the swap tests.
 */

#include <sys/statfs.h>
#include <sys/vfs.h>

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif
#define BN_NSFS_MAGIC 0x6e736673
#ifndef ST_NOSYMFOLLOW
#define ST_NOSYMFOLLOW 0x2000
#endif
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif

/* /proc/self/fd, held open so that each look is one readlinkat (not a walk from /proc).
   Trusted only while it is still the directory opened: fstat must give the identity
   recorded then.  A number closed by someone else and reused (for a directory an attacker
   fills with links named like fd numbers) or a forked child's copy (another process's
   /proc/self) fails that, and a fresh one is opened; the old number is never closed here,
   as it may not be ours any more. */
#include <pthread.h>
static int bn_fd_dir = -1;
static dev_t bn_fd_dir_dev;
static ino_t bn_fd_dir_ino;
static pid_t bn_fd_dir_pid;   /* a forked child inherits the fd and the identity: not its own */
static pthread_mutex_t bn_fd_dir_lock = PTHREAD_MUTEX_INITIALIZER;

static int bn_fd_dir_valid(int dir)
{
    struct stat st;
    return dir >= 0 && bn_fd_dir_pid == getpid() && fstat(dir, &st) == 0 && st.st_dev == bn_fd_dir_dev &&
           st.st_ino == bn_fd_dir_ino;
}

/* /proc/self/fd of this process, or -errno */
static int bn_fd_dir_get(void)
{
    pthread_mutex_lock(&bn_fd_dir_lock);
    int dir = bn_fd_dir;
    if (!bn_fd_dir_valid(dir)) {
        struct statfs sf;
        struct stat st;
        dir = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0) {
            dir = -errno;
        } else if (fstatfs(dir, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC || fstat(dir, &st) < 0) {
            close(dir);
            dir = -ENOSYS;   /* not procfs: the checks would mean nothing */
        } else {
            bn_fd_dir = dir;
            bn_fd_dir_pid = getpid();
            bn_fd_dir_dev = st.st_dev;
            bn_fd_dir_ino = st.st_ino;
        }
    }
    pthread_mutex_unlock(&bn_fd_dir_lock);
    return dir;
}

/* The kernel's name of fd (readlink of /proc/self/fd/N, dir: bn_fd_dir_get()) into out;
   its length or -errno. */
static int bn_fd_name(int dir, int fd, char *out, size_t size)
{
    char num[16];
    if (dir < 0)
        return dir;
    snprintf(num, sizeof num, "%d", fd);
    ssize_t n = readlinkat(dir, num, out, size - 1);
    if (n < 0)
        return -errno;
    if ((size_t)n >= size - 1)
        return -ENAMETOOLONG;
    out[n] = 0;
    return (int)n;
}

/* Is fd where the walk thinks it is: start's name + "/" + expect, start unmoved?  0 or -EAGAIN. */
static int bn_emul_check(int start, int fd, const char *expect)
{
    char top[PATH_MAX], here[PATH_MAX], again[PATH_MAX];
    int dir = bn_fd_dir_get();
    int t = bn_fd_name(dir, start, top, sizeof top);
    if (t < 0)
        return t;
    int h = bn_fd_name(dir, fd, here, sizeof here);
    if (h < 0)
        return h;
    size_t tl = (size_t)t;
    if (tl == 1)
        tl = 0;   /* the start is "/": its children are "/name" */
    int ok = expect[0] ? (strncmp(here, top, tl) == 0 && here[tl] == '/' && strcmp(here + tl + 1, expect) == 0)
                       : strcmp(here, top) == 0;
    if (!ok)
        return -EAGAIN;
    int a = bn_fd_name(dir, start, again, sizeof again);
    if (a < 0)
        return a;
    return strcmp(top, again) == 0 ? 0 : -EAGAIN;
}

/* The mount fd is on: its mount id where statx gives one (Linux >= 5.8), else its device. */
static int bn_mount_of(int fd, uint64_t *out)
{
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) < 0)
        return -errno;
    *out = (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id
                                        : ((uint64_t)sx.stx_dev_major << 32 | sx.stx_dev_minor);
    return 0;
}

static int bn_protected_symlinks = -1;

/* fs.protected_symlinks, read once; unreadable (a sandbox) counts as on, the default everywhere */
static int bn_protected(void)
{
    int prot = __atomic_load_n(&bn_protected_symlinks, __ATOMIC_RELAXED);
    if (prot >= 0)
        return prot;
    prot = 1;
    int f = open("/proc/sys/fs/protected_symlinks", O_RDONLY | O_CLOEXEC);
    if (f >= 0) {
        char c = '1';
        if (read(f, &c, 1) == 1)
            prot = c != '0';
        close(f);
    }
    __atomic_store_n(&bn_protected_symlinks, prot, __ATOMIC_RELAXED);
    return prot;
}

int bn_emulated_ready(int fd)
{
    struct statfs sf;
    char name[PATH_MAX];
    if (statfs("/proc/self/fd", &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC)
        return -ENOSYS;
    int r = bn_fd_name(bn_fd_dir_get(), fd, name, sizeof name);   /* (opens it now, once) */
    if (r < 0)
        return r;
    if (name[0] != '/')
        return -ENOSYS;
    bn_protected();   /* now, before Landlock can make /proc/sys unreadable */
    return 0;
}

/* May the walk follow the link lfd found in directory dfd, as the kernel would decide?
   0, or -ELOOP (a magic link; MS_NOSYMFOLLOW) or -EACCES (fs.protected_symlinks). */
static int bn_may_follow(int dfd, int lfd)
{
    struct statfs sf;
    if (fstatfs(lfd, &sf) < 0)
        return -errno;
    if (sf.f_type == PROC_SUPER_MAGIC || sf.f_type == BN_NSFS_MAGIC || (sf.f_flags & ST_NOSYMFOLLOW))
        return -ELOOP;
    if (!bn_protected())
        return 0;
    struct stat d, l;
    if (fstat(dfd, &d) < 0 || fstat(lfd, &l) < 0)
        return -errno;
    if ((d.st_mode & (S_ISVTX | S_IWOTH)) != (S_ISVTX | S_IWOTH) || l.st_uid == geteuid() || l.st_uid == d.st_uid)
        return 0;
    return -EACCES;
}

/* Put the target of link lfd (found in dfd) in front of rest, which holds what follows it. */
static int bn_emul_link(int dfd, int lfd, uint64_t resolve, int *links, char *rest, const char *after, int slash)
{
    char target[PATH_MAX], tail[PATH_MAX];
    if (resolve & BN_RESOLVE_NO_SYMLINKS)
        return -ELOOP;
    if (++*links > BN_MAX_LINKS)
        return -ELOOP;
    int r = bn_may_follow(dfd, lfd);
    if (r < 0)
        return r;
    ssize_t n = readlinkat(lfd, "", target, sizeof target);
    if (n < 0)
        return -errno;
    if ((size_t)n >= sizeof target)
        return -ENAMETOOLONG;
    target[n] = 0;
    if (n == 0)
        return -ENOENT;
    if (target[0] == '/')
        return -BN_EESCAPE;
    size_t al = strlen(after);
    if (al >= sizeof tail)
        return -ENAMETOOLONG;
    memcpy(tail, after, al + 1);
    /* target, then "/" and the rest (or a lone "/" when the link was written with one) */
    int w = snprintf(rest, PATH_MAX, "%s%s%s", target, (al || slash) ? "/" : "", tail);
    return (w < 0 || w >= PATH_MAX) ? -ENAMETOOLONG : 0;
}

/* The walk ended on a directory (".", "..", a trailing slash): open it as the kernel would. */
static int bn_emul_open_dir(int cur, int flags, int mode)
{
    if (flags & O_CREAT)
        return (flags & O_EXCL) ? -EEXIST : -EISDIR;
    return bn_neg(openat(cur, ".", flags | O_CLOEXEC, (mode_t)mode));
}

static int bn_emul_once(int start, const char *path, int flags, int mode, uint64_t resolve)
{
    char rest[PATH_MAX], expect[PATH_MAX], name[NAME_MAX + 1];
    size_t elen = 0;
    int depth = 0, cur = start, links = 0, r = 0, result = -1;
    uint64_t mnt0 = 0, mnt;
    const int xdev = (resolve & BN_RESOLVE_NO_XDEV_K) != 0;
    size_t n = strlen(path);
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(rest, path, n + 1);
    expect[0] = 0;
    if (xdev && (r = bn_mount_of(start, &mnt0)) < 0)
        return r;
    const char *p = rest;
    for (;;) {
        while (*p == '/')
            p++;
        size_t ln = strcspn(p, "/");
        if (ln > NAME_MAX) {
            r = -ENAMETOOLONG;
            break;
        }
        const char *q = p + ln;
        int slash = *q == '/';
        while (*q == '/')
            q++;
        int last = *q == 0;
        int dots = (ln == 1 && p[0] == '.') || (ln == 2 && p[0] == '.' && p[1] == '.');
        memcpy(name, p, ln);
        name[ln] = 0;
        p = q;
        if (ln == 0 || (ln == 1 && name[0] == '.')) {
            if (!last)
                continue;
            /* the walk ends on a directory: open it with the caller's flags */
            result = bn_emul_open_dir(cur, flags, mode);
            break;
        }
        if (last && slash && (flags & O_CREAT) && !dots) {
            r = -EISDIR;   /* what open("name/", O_CREAT) says, whether name exists or not */
            break;
        }
        int nfd;
        if (dots) {
            if (depth == 0) {
                r = -BN_EESCAPE;
                break;
            }
            nfd = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (nfd < 0) {
                r = -errno;
                break;
            }
            while (elen > 0 && expect[elen - 1] != '/')
                elen--;
            expect[elen > 0 ? --elen : 0] = 0;
            depth--;
            r = bn_emul_check(start, nfd, expect);
        } else if (!last || slash) {
            nfd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (nfd < 0) {
                r = -errno;
                break;
            }
            struct stat st;
            if (fstat(nfd, &st) < 0) {
                r = -errno;
            } else if (S_ISLNK(st.st_mode)) {
                r = bn_emul_link(cur, nfd, resolve, &links, rest, p, slash && last);
                close(nfd);
                if (r < 0)
                    break;
                p = rest;
                continue;
            } else if (!S_ISDIR(st.st_mode)) {
                r = -ENOTDIR;
            } else {
                if (elen + ln + 2 >= sizeof expect) {
                    r = -ENAMETOOLONG;
                } else {
                    if (elen)
                        expect[elen++] = '/';
                    memcpy(expect + elen, name, ln + 1);
                    elen += ln;
                    depth++;
                }
            }
        } else {
            /* the last name, with the caller's flags; a link there is followed unless asked not to.
               An open that creates or truncates checks the walk first, so that it does not
               act in a directory that has left the start meanwhile (the check after it stays) */
            if ((flags & (O_CREAT | O_TRUNC)) && cur != start && (r = bn_emul_check(start, cur, expect)) < 0)
                break;
            int fd = openat(cur, name, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
            int lfd = -1;
            if (fd >= 0 && (flags & (O_PATH | O_NOFOLLOW)) == O_PATH) {
                struct stat st;
                if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
                    lfd = fd;
                    fd = -1;
                }
            } else if (fd < 0 && !(flags & O_NOFOLLOW) && (errno == ELOOP || errno == ENOTDIR)) {
                int e = errno;
                struct stat st;
                lfd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                int moved = 0;
                if (lfd >= 0 && fstat(lfd, &st) < 0) {
                    close(lfd);
                    lfd = -1;
                } else if (lfd >= 0 && !S_ISLNK(st.st_mode)) {
                    /* not a link at this second look: ELOOP said it was one at the first,
                       and so did ENOTDIR if it is a directory now: the name was swapped
                       in between (an answer for neither state), so try again */
                    moved = e == ELOOP || S_ISDIR(st.st_mode);
                    close(lfd);
                    lfd = -1;
                }
                if (moved) {
                    r = -EAGAIN;
                    break;
                }
                errno = e;
            }
            if (lfd >= 0) {
                r = bn_emul_link(cur, lfd, resolve, &links, rest, "", 0);
                close(lfd);
                if (r < 0)
                    break;
                p = rest;
                continue;
            }
            if (fd < 0) {
                r = -errno;
                break;
            }
            if (xdev && (r = bn_mount_of(fd, &mnt)) == 0 && mnt != mnt0)
                r = -BN_EMOUNT;
            if (r < 0)
                close(fd);
            else
                result = fd;
            break;
        }
        if (r == 0 && xdev && (r = bn_mount_of(nfd, &mnt)) == 0 && mnt != mnt0)
            r = -BN_EMOUNT;
        if (r < 0) {
            close(nfd);
            break;
        }
        if (cur != start)
            close(cur);
        cur = nfd;
        BN_HOOK(4);
        if (last) {
            result = bn_emul_open_dir(cur, flags, mode);
            break;
        }
    }
    if (r == 0 && result < 0)
        r = result;
    if (r == 0 && cur != start) {
        r = bn_emul_check(start, cur, expect);   /* the walk did not leave the start meanwhile */
        if (r < 0) {
            struct stat made, there;
            /* a file this open made (O_EXCL) where the walk should not have been: unmade,
               if the name still holds it, so the retry does not find it (EEXIST) */
            if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL) && fstat(result, &made) == 0 &&
                fstatat(cur, name, &there, AT_SYMLINK_NOFOLLOW) == 0 && made.st_dev == there.st_dev &&
                made.st_ino == there.st_ino)
                unlinkat(cur, name, 0);
            close(result);
        }
    }
    if (cur != start)
        close(cur);
    return r < 0 ? r : result;
}

static int bn_emulated(int start, const char *path, int flags, int mode, uint64_t resolve)
{
    if (path[0] == '/')
        return -BN_EESCAPE;
    if (path[0] == 0)
        return -ENOENT;
    for (bn_retry again = {0, 0};;) {
        int r = bn_emul_once(start, path, flags, mode, resolve);
        if (r == -BN_EMOUNT) {
            /* as bn_openat2_how: a walk that crosses a mount and then escapes is an escape */
            int a = bn_emulated(start, path, O_PATH | (flags & (O_NOFOLLOW | O_DIRECTORY)), 0,
                                resolve & ~(uint64_t)BN_RESOLVE_NO_XDEV_K);
            if (a >= 0)
                close(a);
            return a == -BN_EESCAPE ? a : r;
        }
        if (r != -EAGAIN && r != -EINTR)
            return r;
        if (!bn_retry_again(&again))
            return -EAGAIN;
    }
}

static int bn_resolve(int dirfd, const char *path, int flags, int mode, uint64_t resolve, int rx)
{
    if (rx & BN_RESOLVE_EMULATED)
        return bn_emulated(dirfd, path, flags, mode, resolve);
    return bn_openat2_how(dirfd, path, flags, mode, resolve);
}

int bn_openat2(int dirfd, const char *path, int flags, int mode, int rx)
{
    return bn_resolve(dirfd, path, flags, mode,
                      BN_RESOLVE | ((rx & BN_RESOLVE_NO_XDEV) ? BN_RESOLVE_NO_XDEV_K : 0), rx);
}

int bn_open_child_dir(int dfd, const char *name)
{
    /* Names from getdents, one or more joined by "/": each opened from the one before with
       O_NOFOLLOW, so no link is ever followed (a link gives ENOTDIR, or ELOOP in the middle,
       as openat2 with RESOLVE_NO_SYMLINKS says) and nothing but a step down is taken; mounts
       inside the tree are crossed, as the walks always did.  No resolver is involved, so the
       walks are the same under both. */
    const int last_flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    char comp[NAME_MAX + 1];
    int cur = dfd;
    for (const char *p = name;;) {
        size_t ln = strcspn(p, "/");
        int last = p[ln] == 0;
        if (ln == 0 || ln > NAME_MAX || (ln == 1 && p[0] == '.' && !(last && p == name)) ||
            (ln == 2 && p[0] == '.' && p[1] == '.')) {
            if (cur != dfd)
                close(cur);
            return ln > NAME_MAX ? -ENAMETOOLONG : -EINVAL;   /* not a name getdents gives */
        }
        memcpy(comp, p, ln);
        comp[ln] = 0;
        int fd = openat(cur, comp, last ? last_flags : (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        int e = errno;
        if (fd < 0 && e == ENOTDIR && !last) {
            struct stat st;
            if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                e = ELOOP;
        }
        if (cur != dfd)
            close(cur);
        if (fd < 0 || last)
            return fd < 0 ? -e : fd;
        cur = fd;
        p += ln + 1;
    }
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
       ancestor meanwhile), the whole walk starts again under the one retry policy
       (bn_retry_again); then -ENOENT. */
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    while (n > 0 && buf[n - 1] == '/')
        n--;
    for (bn_retry again = {0, 0};;) {
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
        if (!bn_retry_again(&again))
            return -ENOENT;
    }
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

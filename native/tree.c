/*
 * tree.c: rm -r and cp -r, by descending directory fds, at any depth a file system holds.
 *
 * A project user can build a tree as deep as they like (one mkdirat per level never needs
 * a long path), so a walker must not spend anything per level that is bounded elsewhere:
 *
 * - Stack.  The walk is a loop over an explicit, heap-allocated stack of frames (one per
 *   directory on the current path), never recursion: a thread's C stack (the daemon walks
 *   in worker threads) is the same few hundred bytes at depth 3 or 1,000,000.
 *
 * - Names.  A frame reads its directory whole on entry (getdents64, as fts does) into one
 *   arena shared by the walk: frames are LIFO, so a frame's listing is always at the
 *   arena's end while it is the top.  A frame names itself by an offset into its parent's
 *   listing, so a level costs a frame (~130 bytes) plus its names, and no path string from
 *   the top is ever built (it could exceed PATH_MAX).
 *
 * - Fds.  Holding one fd per level would run into RLIMIT_NOFILE at a few thousand levels.
 *   A frame keeps its fds open only while bn_keep() says so: always for the first
 *   BN_TREE_PREFIX levels (an ordinary tree never closes one), and otherwise densely near
 *   the top of the stack and ever more sparsely further up (every 2^k-th frame at distances
 *   of 2^k * 2 * BN_TREE_WINDOW and more), so the fds held grow with log2(depth): 31 per
 *   side at 3000 levels, 42 at 100,000 (cp walks two trees).  A closed frame is reopened when the walk
 *   comes back to it, from the nearest open ancestor, one getdents name at a time through
 *   bn_open_child_dir (openat2, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): never through "..",
 *   whose meaning changes when a directory is moved.  Each reopened directory must have the
 *   device and inode recorded when it was first opened; if a directory was moved or
 *   replaced meanwhile the walk fails with BN_ECHANGED instead of going on somewhere else.
 *   Re-walking costs a few openat2 per level on the way back up (the log-spaced checkpoints
 *   keep each gap short).
 *
 * - Limit.  rt->max_depth levels (Root.walk_limit; at most BN_TREE_MAX_DEPTH, the default):
 *   deeper, a walk reports BN_ETOODEEP. The daemon lowers it under Landlock, which makes
 *   every level cost time proportional to its depth (docs/SECURITY.md, Hostile trees).
 *   There is no ELOOP without a symlink.
 *
 * Links are never followed inside a tree: entries are lstat'ed (fstatat NOFOLLOW) and
 * directories opened with RESOLVE_NO_SYMLINKS, so a directory swapped for a link between
 * the two steps fails to open (ELOOP) instead of being descended into.
 */
#include "internal.h"

#include <dirent.h>
#include <sys/inotify.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BN_TREE_PREFIX 8        /* levels whose fds are never closed */
#define BN_TREE_WINDOW 2        /* see bn_keep */
#define BN_TREE_OPEN_MAX 128    /* open frames tracked; bn_keep allows ~60 at the depth limit */

/* What cp copies onto a directory once its contents are done. */
typedef struct {
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec atim, mtim;
} bn_meta;

typedef struct {
    int fd[2];            /* O_RDONLY|O_DIRECTORY per side, or -1 while closed (bn_keep) */
    dev_t dev[2];
    ino_t ino[2];         /* what a reopen must find */
    size_t name;          /* arena offset of its name (in the parent's listing) */
    size_t list, end;     /* arena range of its own listing */
    size_t pos;           /* next name to visit */
    int err;              /* cp: the first failure inside this directory */
    bn_retry retry;       /* rm: refills and swaps seen (the one retry policy, internal.h) */
    long rec;             /* watch: this directory's entry in the bn_wlist */
    bn_meta meta;         /* cp: the source directory's */
} bn_frame;

typedef struct {
    int sides;                          /* 1: rm, 2: cp (source, copy) */
    bn_frame *f;
    size_t n, cap;
    char *arena;
    size_t alen, acap;
    size_t open[BN_TREE_OPEN_MAX];      /* indices of frames with open fds, ascending */
    int nopen;
    char *dents;                        /* getdents64 buffer */
    size_t max_depth;                   /* frames at most (the walk limit) */
    bn_job *job;                        /* cancel flag and counters, or NULL */
} bn_walk;

#define BN_DENTS 32768

static int bn_keep(size_t i, size_t top)
{
    size_t d = top - i;
    if (i < BN_TREE_PREFIX || d < 2 * BN_TREE_WINDOW)
        return 1;
    size_t g = 1;
    while (g * 2 * BN_TREE_WINDOW <= d)
        g *= 2;   /* the largest power of two with g * WINDOW <= d */
    return i % g == 0;
}

static int bn_walk_init(bn_walk *w, int sides, const char *top_name, const bn_root *rt)
{
    memset(w, 0, sizeof *w);
    w->sides = sides;
    w->max_depth = (rt->max_depth > 0 && rt->max_depth < BN_TREE_MAX_DEPTH) ? (size_t)rt->max_depth
                                                                            : BN_TREE_MAX_DEPTH;
    size_t n = strlen(top_name) + 1;
    w->acap = n > 4096 ? n : 4096;
    w->arena = malloc(w->acap);
    w->dents = malloc(BN_DENTS);
    if (!w->arena || !w->dents) {
        free(w->arena);
        free(w->dents);
        w->arena = w->dents = NULL;
        return -ENOMEM;
    }
    memcpy(w->arena, top_name, n);
    w->alen = n;
    return 0;
}

static void bn_frame_close(bn_walk *w, bn_frame *f)
{
    for (int s = 0; s < w->sides; s++)
        if (f->fd[s] >= 0) {
            close(f->fd[s]);
            f->fd[s] = -1;
        }
}

static void bn_walk_free(bn_walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        bn_frame_close(w, &w->f[i]);
    free(w->f);
    free(w->arena);
    free(w->dents);
}

/* Append n bytes to a malloc'd buffer *b of *len used, *cap allocated (doubling). */
static int bn_buf_put(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (*len + n > c)
            c *= 2;
        char *a = realloc(*b, c);
        if (!a)
            return -ENOMEM;
        *b = a;
        *cap = c;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    return 0;
}

static int bn_arena_put(bn_walk *w, const char *s, size_t n)
{
    return bn_buf_put(&w->arena, &w->alen, &w->acap, s, n);
}

/* The frame's listing, read whole into the arena's end ("." and ".." left out). */
static int bn_read_names(bn_walk *w, bn_frame *f)
{
    int fd = f->fd[0];
    w->alen = f->list;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, w->dents, BN_DENTS);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            /* struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name */
            unsigned short reclen;
            memcpy(&reclen, w->dents + off + 16, sizeof reclen);
            const char *name = w->dents + off + 19;
            off += reclen;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
                continue;
            int r = bn_arena_put(w, name, strlen(name) + 1);
            if (r < 0)
                return r;
        }
    }
    f->end = w->alen;
    f->pos = f->list;
    return 0;
}

static void bn_open_add(bn_walk *w, size_t i)
{
    int k = w->nopen;
    while (k > 0 && w->open[k - 1] > i) {
        w->open[k] = w->open[k - 1];
        k--;
    }
    w->open[k] = i;
    w->nopen++;
}

/* After the stack grew: close what bn_keep no longer wants (frame 0 and the top stay). */
static void bn_enforce(bn_walk *w)
{
    size_t top = w->n - 1;
    int k = 0;
    for (int j = 0; j < w->nopen; j++) {
        size_t i = w->open[j];
        if (bn_keep(i, top))
            w->open[k++] = i;
        else
            bn_frame_close(w, &w->f[i]);
    }
    w->nopen = k;
}

static int bn_fd_is(int fd, dev_t dev, ino_t ino)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

/*
 * Make frame i's fds open again: from the nearest open ancestor, reopen each frame below
 * it by name, checking each is the directory it was.  Frames bn_keep wants stay open;
 * the others are opened only to reach the next one.
 */
static int bn_ensure(bn_walk *w, size_t i)
{
    if (w->f[i].fd[0] >= 0)
        return 0;
    size_t top = w->n - 1;
    int k = w->nopen - 1;
    while (k >= 0 && w->open[k] > i)
        k--;
    size_t a = w->open[k];   /* frame 0 is always open */
    int prev[2] = {w->f[a].fd[0], w->f[a].fd[1]}, prev_tmp = 0;
    for (size_t j = a + 1; j <= i; j++) {
        bn_frame *f = &w->f[j];
        int fd[2] = {-1, -1}, r = 0;
        for (int s = 0; s < w->sides && r == 0; s++) {
            fd[s] = bn_open_child_dir(prev[s], w->arena + f->name);
            if (fd[s] < 0) {
                r = fd[s] == -ENOMEM || fd[s] == -EMFILE || fd[s] == -ENFILE ? fd[s] : -BN_ECHANGED;
                fd[s] = -1;
            } else if (!bn_fd_is(fd[s], f->dev[s], f->ino[s]))
                r = -BN_ECHANGED;
        }
        if (prev_tmp)
            for (int s = 0; s < w->sides; s++)
                close(prev[s]);
        if (r < 0) {
            for (int s = 0; s < w->sides; s++)
                if (fd[s] >= 0)
                    close(fd[s]);
            return r;
        }
        prev[0] = fd[0];
        prev[1] = fd[1];
        prev_tmp = !(j == i || (bn_keep(j, top) && w->nopen < BN_TREE_OPEN_MAX));
        if (!prev_tmp) {
            f->fd[0] = fd[0];
            f->fd[1] = fd[1];
            bn_open_add(w, j);
        }
    }
    return 0;
}

/* The directory fds of the walk's top frame's parent: frame top-1, or `base` for frame 0. */
static int bn_parent_fd(bn_walk *w, const int *base, int side, int *out)
{
    if (w->n == 1) {
        *out = base[side];
        return 0;
    }
    int r = bn_ensure(w, w->n - 2);
    *out = w->f[w->n - 2].fd[side];
    return r;
}

/* Push a frame for the directory whose fds are `fd` (taken in every case); `st0`, if the
   caller has it, is fd[0]'s fstat (not made twice). */
static int bn_push(bn_walk *w, const int *fd, size_t name, const bn_meta *meta, const struct stat *st0)
{
    int r = 0;
    bn_frame *f = NULL;
    if (w->n >= w->max_depth)
        r = -BN_ETOODEEP;
    if (r == 0 && w->n == w->cap) {
        size_t c = w->cap ? w->cap * 2 : 64;
        bn_frame *nf = realloc(w->f, c * sizeof *nf);
        if (!nf)
            r = -ENOMEM;
        else {
            w->f = nf;
            w->cap = c;
        }
    }
    if (r == 0) {
        f = &w->f[w->n];
        memset(f, 0, sizeof *f);
        f->fd[0] = f->fd[1] = -1;
        for (int s = 0; s < w->sides && r == 0; s++) {
            struct stat st;
            if (s == 0 && st0)
                st = *st0;
            else if (fstat(fd[s], &st) < 0) {
                r = -errno;
                break;
            }
            f->dev[s] = st.st_dev;
            f->ino[s] = st.st_ino;
        }
    }
    if (r < 0) {
        for (int s = 0; s < w->sides; s++)
            close(fd[s]);
        return r;
    }
    f->fd[0] = fd[0];
    f->fd[1] = w->sides > 1 ? fd[1] : -1;
    f->name = name;
    f->list = w->alen;
    if (meta)
        f->meta = *meta;
    w->n++;
    bn_open_add(w, w->n - 1);
    bn_enforce(w);
    r = bn_read_names(w, f);
    if (r < 0) {
        bn_frame_close(w, f);
        w->nopen--;   /* the top is the last open frame */
        w->n--;
        w->alen = f->list;
    }
    return r;
}

static void bn_pop(bn_walk *w)
{
    bn_frame *f = &w->f[w->n - 1];
    if (f->fd[0] >= 0) {
        bn_frame_close(w, f);
        w->nopen--;
    }
    w->alen = f->list;
    w->n--;
}

/* ---- rm -r ----------------------------------------------------------------------------- */

/*
 * Remove dfd/<arena name> whatever it is: unlink it, or push its frame to empty it first
 * (returns 1).  A name swapped between a file, a link and a directory meanwhile is tried
 * again under the one retry policy (bn_retry_again), counting what `again` has seen.
 */
static int bn_rm_name(bn_walk *w, int dfd, size_t name, bn_retry again)
{
    for (;;) {
        const char *n = w->arena + name;
        if (unlinkat(dfd, n, 0) == 0) {
            bn_did(w->job, 1, 0);
            return 0;
        }
        if (errno == ENOENT)
            return 0;
        int why = errno;
        if (why != EISDIR && why != EPERM)
            return -why;
        BN_HOOK(2);
        int cfd = bn_open_child_dir(dfd, n);
        if (cfd == -ENOTDIR || cfd == -ELOOP) {
            if (why == EPERM)
                return -EPERM;
            if (!bn_retry_again(&again))
                return -EAGAIN;
            continue;   /* swapped for a file or a link meanwhile: unlink that */
        }
        if (cfd == -ENOENT)
            return 0;
        if (cfd < 0)
            return cfd;
        int fds[1] = {cfd};
        int r = bn_push(w, fds, name, NULL, NULL);
        if (r < 0)
            return r;
        w->f[w->n - 1].retry = again;
        return 1;
    }
}

static int bn_rm_tree(const bn_root *rt, int pfd, const char *leaf, bn_job *job)
{
    bn_walk w;
    int base[1] = {pfd};
    int r = bn_walk_init(&w, 1, leaf, rt);
    if (r < 0)
        return r;
    w.job = job;
    const bn_retry fresh = {0, 0};
    r = bn_rm_name(&w, pfd, 0, fresh);
    while (r >= 0 && w.n > 0) {
        if (bn_cancelled(job)) {
            r = -ECANCELED;   /* what is not removed yet stays */
            break;
        }
        bn_frame *f = &w.f[w.n - 1];
        if (f->pos < f->end) {
            size_t name = f->pos;
            f->pos += strlen(w.arena + name) + 1;
            r = bn_ensure(&w, w.n - 1);
            if (r == 0)
                r = bn_rm_name(&w, w.f[w.n - 1].fd[0], name, fresh);
            continue;
        }
        /* emptied: remove it from its parent */
        int dfd;
        r = bn_parent_fd(&w, base, 0, &dfd);
        if (r < 0)
            break;
        f = &w.f[w.n - 1];
        if (unlinkat(dfd, w.arena + f->name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
            bn_did(job, 1, 0);
            bn_pop(&w);
            continue;
        }
        int e = errno;
        bn_retry again = f->retry;
        if ((e == ENOTEMPTY || e == ENOTDIR) && !bn_retry_again(&again)) {
            r = -EAGAIN;   /* refilled or swapped again and again meanwhile */
        } else if (e == ENOTEMPTY) {
            f->retry = again;   /* entries appeared meanwhile: list it again */
            r = bn_ensure(&w, w.n - 1);
            if (r == 0)
                r = bn_read_names(&w, &w.f[w.n - 1]);
        } else if (e == ENOTDIR) {
            size_t name = f->name;   /* swapped for a file: remove that */
            bn_pop(&w);
            r = w.n ? bn_ensure(&w, w.n - 1) : 0;
            if (r == 0)
                r = bn_rm_name(&w, w.n ? w.f[w.n - 1].fd[0] : pfd, name, again);
        } else
            r = -e;
    }
    bn_walk_free(&w);
    return r < 0 ? r : 0;
}

int bn_rm(const bn_root *rt, const char *path, int recursive, int force, bn_job *job)
{
    bn_path p;
    int r = bn_split(rt, path, 0, &p);
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
        if (r == 0)
            bn_did(job, 1, 0);
        if (r == -EISDIR || r == -EPERM) {
            struct stat st;
            if (fstatat(p.pfd, p.leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
                r = -EISDIR;
        }
    } else {
        /* the walk takes a name gone meanwhile as removed; the top must exist (rm -r) */
        struct stat st;
        r = force ? 0 : bn_neg(fstatat(p.pfd, p.leaf, &st, AT_SYMLINK_NOFOLLOW));
        if (r == 0)
            r = bn_rm_tree(rt, p.pfd, p.leaf, job);
    }
    if (r == -ENOENT && force)
        r = 0;
    bn_release(&p);
    return r;
}

/* ---- du ------------------------------------------------------------------------------- */

/* Bytes on disk (st_blocks * 512) and entries of the tree at path, the top included;
   never following a link (the top neither, unless written with a trailing slash or as
   "."/".."), every name counted (a file with several links once per name). */
int bn_du(const bn_root *rt, const char *path, uint64_t *out, bn_job *job)
{
    bn_path p;
    struct stat st;
    out[0] = out[1] = 0;
    int r = bn_split(rt, path, 0, &p);
    if (r < 0)
        return r;
    int top;
    if (p.dots || p.slash) {
        top = bn_openat2(rt->fd, path, O_RDONLY | O_DIRECTORY, 0, rt->rx);
        r = top < 0 ? top : bn_neg(fstat(top, &st));
    } else {
        top = -1;
        r = bn_neg(fstatat(p.pfd, p.leaf, &st, AT_SYMLINK_NOFOLLOW));
        if (r == 0 && S_ISDIR(st.st_mode)) {
            top = bn_open_child_dir(p.pfd, p.leaf);
            if (top < 0)
                r = top;
        }
    }
    bn_release(&p);
    if (r < 0) {
        if (top >= 0)
            close(top);
        return r;
    }
    out[0] = (uint64_t)st.st_blocks * 512;
    out[1] = 1;
    bn_did(job, 1, 0);
    if (top < 0)
        return 0;
    bn_walk w;
    r = bn_walk_init(&w, 1, "", rt);
    if (r < 0) {
        close(top);
        return r;
    }
    w.job = job;
    int fds[1] = {top};
    r = bn_push(&w, fds, 0, NULL, NULL);
    while (r >= 0 && w.n > 0) {
        if (bn_cancelled(job)) {
            r = -ECANCELED;
            break;
        }
        bn_frame *f = &w.f[w.n - 1];
        if (f->pos >= f->end) {
            bn_pop(&w);
            continue;
        }
        size_t name = f->pos;
        f->pos += strlen(w.arena + name) + 1;
        r = bn_ensure(&w, w.n - 1);
        if (r < 0)
            break;
        int dfd = w.f[w.n - 1].fd[0];
        const char *n = w.arena + name;
        if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;   /* gone meanwhile */
            r = -errno;
            break;
        }
        out[0] += (uint64_t)st.st_blocks * 512;
        out[1] += 1;
        bn_did(job, 1, 0);
        if (S_ISDIR(st.st_mode)) {
            fds[0] = bn_open_child_dir(dfd, n);
            if (fds[0] == -ENOENT || fds[0] == -ENOTDIR || fds[0] == -ELOOP)
                continue;   /* removed or swapped for something else meanwhile: not descended */
            r = fds[0] < 0 ? fds[0] : bn_push(&w, fds, name, NULL, NULL);
        }
    }
    bn_walk_free(&w);
    return r < 0 ? r : 0;
}

/* ---- cp -r ----------------------------------------------------------------------------- */

struct bn_cpctx {
    int flags;
    bn_journal *j;   /* crash journal for temporary names, or NULL */
    dev_t top_dev;
    ino_t top_ino;   /* the destination top directory: never copied into itself */
    bn_job *job;     /* cancel flag and counters, or NULL */
};

static void bn_meta_of(const struct stat *st, bn_meta *m)
{
    m->mode = st->st_mode;
    m->uid = st->st_uid;
    m->gid = st->st_gid;
    m->atim = st->st_atim;
    m->mtim = st->st_mtim;
}

/* Owner (where permitted), mode and times onto a copied directory (fd) or link (dfd/name). */
static int bn_set_meta(int fd, const bn_meta *m, const char *link_name)
{
    struct timespec ts[2] = {m->atim, m->mtim};
    if (link_name) {
        if (fchownat(fd, link_name, m->uid, m->gid, AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM)
            return -errno;
        return bn_neg(utimensat(fd, link_name, ts, AT_SYMLINK_NOFOLLOW));
    }
    if (fchown(fd, m->uid, m->gid) < 0 && errno != EPERM)
        return -errno;
    if (fchmod(fd, m->mode & 07777) < 0)
        return -errno;
    return bn_neg(futimens(fd, ts));
}

/* What a finished directory gets: xattrs, then mode (and with preserve owner and times). */
static int bn_cp_dir_done(int cs, int cd, const bn_meta *m, int flags)
{
    int r = 0;
    if (flags & BN_CP_PRESERVE) {
        r = bn_copy_xattrs(cs, cd);
        if (r == 0)
            r = bn_set_meta(cd, m, NULL);
        return r;
    }
    return bn_neg(fchmod(cd, m->mode & 07777));
}

/* Make the symlink `target` (or, target NULL, the FIFO of `mode`) dfd/name.  An existing
   non-directory there is replaced with BN_CP_OVERWRITE, through a journaled temporary name
   and a rename (no moment without the name), as bn_atomic_replace replaces a file. */
static int bn_cp_make(int dfd, const char *name, const char *target, mode_t mode, struct bn_cpctx *c)
{
    if ((target ? symlinkat(target, dfd, name) : mknodat(dfd, name, S_IFIFO | mode, 0)) == 0)
        return 0;
    if (errno != EEXIST || !(c->flags & BN_CP_OVERWRITE))
        return -errno;
    struct stat dst;
    if (fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(dst.st_mode))
        return -EISDIR;
    char tmp[NAME_MAX + 64];
    bn_tmpname(tmp, sizeof tmp, name);
    int rec = bn_jadd(c->j, dfd, tmp);
    if ((target ? symlinkat(target, dfd, tmp) : mknodat(dfd, tmp, S_IFIFO | mode, 0)) < 0) {
        int e = errno;
        bn_jdel(c->j, rec);
        return -e;
    }
    int e = renameat(dfd, tmp, dfd, name) < 0 ? errno : 0;
    if (e)
        unlinkat(dfd, tmp, 0);
    bn_jdel(c->j, rec);
    return -e;
}

/* Copy the non-directory sfd/name (not followed) to dfd/name: a regular file's contents
   (never opening anything else: no FIFO is ever opened), a symlink as a link and a FIFO as
   a FIFO (as cp -a; with preserve, their owner and times, and a FIFO's exact mode).
   Sockets and device nodes are skipped (docs/SECURITY.md, "Faults and hostile trees"). */
static int bn_cp_leaf(int sfd, int dfd, const char *name, const struct stat *st, struct bn_cpctx *c)
{
    int preserve = c->flags & BN_CP_PRESERVE, r;
    if (S_ISLNK(st->st_mode) || S_ISFIFO(st->st_mode)) {
        char target[PATH_MAX];
        if (S_ISLNK(st->st_mode)) {
            ssize_t n = readlinkat(sfd, name, target, sizeof target - 1);
            if (n < 0)
                return errno == ENOENT ? 0 : -errno;
            target[n] = 0;
        }
        r = bn_cp_make(dfd, name, S_ISLNK(st->st_mode) ? target : NULL, st->st_mode & 07777, c);
        if (r < 0 || !preserve)
            return r;
        bn_meta m;
        bn_meta_of(st, &m);
        r = bn_set_meta(dfd, &m, name);   /* owner and times of the name itself */
        return (r == 0 && S_ISFIFO(st->st_mode)) ? bn_chmod_leaf(dfd, name, st->st_mode & 07777) : r;
    }
    if (!S_ISREG(st->st_mode))
        return 0;   /* sockets and device nodes are not copied */
    int fd = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return (errno == ENOENT) ? 0 : -errno;
    struct stat st2;
    r = bn_neg(fstat(fd, &st2));
    if (r == 0 && !S_ISREG(st2.st_mode))
        r = -BN_ENOTREG;   /* swapped after the fstatat: refuse rather than guess */
    if (r == 0) {
        struct bn_src s = {fd, BN_REFLINK_AUTO, preserve, c->job};
        r = bn_atomic_replace(dfd, name, st2.st_mode & 07777,
                              (c->flags & BN_CP_OVERWRITE) ? BN_AW_OVERWRITE : 0,
                              preserve ? &st2 : NULL, bn_fill_fd, &s, c->j, NULL);
    }
    close(fd);
    return r;
}

/* Copy the top frame's entry <arena name>: a directory pushes its frame (returns 1). */
static int bn_cp_name(bn_walk *w, size_t name, struct bn_cpctx *c)
{
    bn_frame *f = &w->f[w->n - 1];
    int sfd = f->fd[0], dfd = f->fd[1];
    const char *n = w->arena + name;
    struct stat st;
    if (fstatat(sfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    BN_HOOK(2);
    if (!S_ISDIR(st.st_mode))
        return bn_cp_leaf(sfd, dfd, n, &st, c);
    if (st.st_dev == c->top_dev && st.st_ino == c->top_ino)
        return 0;   /* the copy itself, inside its source: cp's "into itself" */
    int fds[2];
    fds[0] = bn_open_child_dir(sfd, n);
    if (fds[0] < 0)
        return fds[0] == -ENOENT ? 0 : fds[0];
    if (fstat(fds[0], &st) < 0 || mkdirat(dfd, n, 0700) < 0) {
        int e = errno;
        if (e != EEXIST) {
            close(fds[0]);
            return -e;
        }
    }
    fds[1] = bn_open_child_dir(dfd, n);
    if (fds[1] < 0) {
        close(fds[0]);
        return fds[1] == -ELOOP ? -EEXIST : fds[1];
    }
    bn_meta m;
    bn_meta_of(&st, &m);
    int r = bn_push(w, fds, name, &m, &st);
    return r < 0 ? r : 1;
}

/* Copy the contents of sd into dd (the top directories, not taken). */
static int bn_cp_tree(const bn_root *rt, int sd, int dd, struct bn_cpctx *c)
{
    bn_walk w;
    /* the walk holds these for its whole length: close-on-exec, like every fd here */
    int fds[2] = {fcntl(sd, F_DUPFD_CLOEXEC, 0), fcntl(dd, F_DUPFD_CLOEXEC, 0)}, r;
    if (fds[0] < 0 || fds[1] < 0) {
        r = -errno;
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        return r;
    }
    r = bn_walk_init(&w, 2, "", rt);
    if (r == 0)
        r = bn_push(&w, fds, 0, NULL, NULL);
    else {
        close(fds[0]);
        close(fds[1]);
    }
    if (r < 0) {
        if (w.arena)
            bn_walk_free(&w);
        return r;
    }
    int cancelled = 0;
    for (;;) {
        if (bn_cancelled(c->job)) {
            cancelled = 1;   /* what is copied so far stays, as after an interrupted cp -r */
            break;
        }
        bn_frame *f = &w.f[w.n - 1];
        if (f->pos < f->end) {
            size_t name = f->pos;
            f->pos += strlen(w.arena + name) + 1;
            int e = bn_ensure(&w, w.n - 1);
            if (e < 0)
                f->pos = f->end;   /* cannot go on in this directory */
            else
                e = bn_cp_name(&w, name, c);
            if (e >= 0)
                bn_did(c->job, 1, 0);
            f = &w.f[w.n - (e == 1 ? 2 : 1)];
            if (e < 0 && f->err == 0)
                f->err = e;   /* like cp: go on, report the first failure */
            continue;
        }
        if (w.n == 1)
            break;
        int e = f->err;
        if (e == 0) {
            e = bn_ensure(&w, w.n - 1);
            f = &w.f[w.n - 1];
            if (e == 0)
                e = bn_cp_dir_done(f->fd[0], f->fd[1], &f->meta, c->flags);
        }
        bn_pop(&w);
        if (e < 0 && w.f[w.n - 1].err == 0)
            w.f[w.n - 1].err = e;
    }
    r = cancelled ? -ECANCELED : w.f[0].err;
    bn_walk_free(&w);
    return r;
}

int bn_cp(const bn_root *rt, const char *src, const char *dst, int flags, bn_job *job)
{
    struct stat st;
    bn_path p;
    char real[PATH_MAX];   /* a final in-tree link at dst is followed */
    int r = bn_follow_final(rt, dst, real);
    if (r < 0)
        return r;
    dst = real;
    if (src[0] == '/')
        return -BN_EESCAPE;
    /* the top-level source is followed (in-tree only) */
    int sfd = bn_openat2(rt->fd, src[0] ? src : "", O_PATH, 0, rt->rx);
    if (sfd < 0)
        return src[0] ? sfd : -ENOENT;
    r = bn_neg(fstat(sfd, &st));
    close(sfd);
    if (r < 0)
        return r;
    if (!S_ISDIR(st.st_mode)) {
        if (!S_ISREG(st.st_mode))
            return -BN_ENOTREG;
        return bn_copy_file_to(rt, job, src, dst, flags & BN_CP_OVERWRITE, BN_REFLINK_AUTO,
                               flags & BN_CP_PRESERVE, NULL);
    }
    if (!(flags & BN_CP_RECURSIVE))
        return -EISDIR;
    int sd = bn_openat2(rt->fd, src, O_RDONLY | O_DIRECTORY, 0, rt->rx);
    if (sd < 0)
        return sd;
    if (fstat(sd, &st) < 0) {
        r = -errno;
        close(sd);
        return r;
    }
    r = bn_split(rt, dst, 0, &p);
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
    } else
        bn_did(job, 1, 0);   /* the copy's top directory is an entry too (as rm -r counts it) */
    int dd = bn_open_child_dir(p.pfd, p.leaf);
    if (dd < 0) {
        r = dd == -ELOOP ? -EEXIST : dd;
        goto out;
    }
    struct stat dst_st;
    struct bn_cpctx c = {flags, rt->journal, 0, 0, job};
    if (fstat(dd, &dst_st) < 0)
        r = -errno;
    else if (dst_st.st_dev == st.st_dev && dst_st.st_ino == st.st_ino)
        r = -EINVAL;   /* cp -r a a */
    else {
        c.top_dev = dst_st.st_dev;
        c.top_ino = dst_st.st_ino;
        r = bn_cp_tree(rt, sd, dd, &c);
    }
    if (r == 0) {
        bn_meta m;
        bn_meta_of(&st, &m);
        r = bn_cp_dir_done(sd, dd, &m, flags);
    }
    close(dd);
out:
    bn_release(&p);
    close(sd);
    return r;
}

/* ---- one directory's names, for walk and scandir ---- */

/* Call each(arg, fd, name, d_type) for every name of the directory fd from its start, in
   getdents order, "." and ".." left out; stop at the first negative return (returned). */
static int bn_each_name(int fd, int (*each)(void *, int, const char *, unsigned char), void *arg)
{
    int r = 0;
    char *dents = malloc(BN_DENTS);
    if (!dents)
        return -ENOMEM;
    if (lseek(fd, 0, SEEK_SET) < 0) {
        r = -errno;
        goto done;
    }
    for (;;) {
        long n = syscall(SYS_getdents64, fd, dents, BN_DENTS);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto done;
        }
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            unsigned short reclen;
            memcpy(&reclen, dents + off + 16, sizeof reclen);
            unsigned char type = (unsigned char)dents[off + 18];
            const char *name = dents + off + 19;
            off += reclen;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
                continue;
            if ((r = each(arg, fd, name, type)) < 0)
                goto done;
        }
    }
done:
    free(dents);
    return r;
}

struct bn_split_names {
    char *dirs, *rest;
    size_t dlen, dcap, rlen, rcap;
};

static int bn_put_split(void *arg, int fd, const char *name, unsigned char type)
{
    struct bn_split_names *s = arg;
    if (type == DT_UNKNOWN) {
        struct stat st;
        type = (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) ? DT_DIR : DT_REG;
    }
    size_t len = strlen(name) + 1;
    return type == DT_DIR ? bn_buf_put(&s->dirs, &s->dlen, &s->dcap, name, len)
                          : bn_buf_put(&s->rest, &s->rlen, &s->rcap, name, len);
}

int bn_list_names(int fd, bn_names *out)
{
    struct bn_split_names s = {0};
    out->buf = NULL;
    out->dirs = out->len = 0;
    int r = bn_each_name(fd, bn_put_split, &s);
    /* one buffer: the directories, then the rest */
    if (r == 0 && s.rlen)
        r = bn_buf_put(&s.dirs, &s.dlen, &s.dcap, s.rest, s.rlen);
    if (r == 0) {
        out->buf = s.dirs;
        out->dirs = s.dlen - s.rlen;
        out->len = s.dlen;
        s.dirs = NULL;
    }
    free(s.dirs);
    free(s.rest);
    return r;
}

void bn_names_free(bn_names *n)
{
    free(n->buf);
    n->buf = NULL;
}

/* ---- bn_scan_dir: scandir's whole listing, lstat and link texts included ---- */

struct bn_scanning {
    const bn_root *rt;
    bn_scan *out;
    /* the records, as bytes while they grow (bn_buf_put): bn_scan_dir hands them over */
    char *stats, *targets;
    size_t slen, tlen, ncap, scap, lcap, tcap, plen;
    char path[PATH_MAX];   /* prefix, then each link's name after it */
};

static int bn_put_entry(void *arg, int fd, const char *name, unsigned char type)
{
    struct bn_scanning *s = arg;
    bn_scan *out = s->out;
    struct stat st;
    int64_t rec[13] = {0};
    char link[PATH_MAX + 1];
    int r;
    (void)type;
    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;  /* removed since getdents: as os.scandir + lstat would skip it */
    size_t len = strlen(name) + 1;
    bn_stat_out(&st, rec);
    if ((r = bn_buf_put(&s->stats, &s->slen, &s->scap, (const char *)rec, sizeof rec)) < 0 ||
        (r = bn_buf_put(&out->names, &out->names_len, &s->ncap, name, len)) < 0)
        return r;
    if (!S_ISLNK(st.st_mode))
        return 0;
    ssize_t k = readlinkat(fd, name, link, PATH_MAX);
    k = k < 0 || k == PATH_MAX ? 0 : k;  /* replaced meanwhile (or longer than any link may be): no text */
    link[k] = 0;
    memset(rec, 0, sizeof rec);  /* the target's, left 0 when dangling or pointing out (bn_stat
                                    writes only on success) */
    if (s->plen + len <= PATH_MAX) {
        memcpy(s->path + s->plen, name, len);
        bn_stat(s->rt, s->path, rec);
    }
    if ((r = bn_buf_put(&out->links, &out->links_len, &s->lcap, link, (size_t)k + 1)) < 0)
        return r;
    return bn_buf_put(&s->targets, &s->tlen, &s->tcap, (const char *)rec, sizeof rec);
}

long bn_scan_dir(const bn_root *rt, int fd, const char *prefix, bn_scan *out)
{
    struct bn_scanning s = {.rt = rt, .out = out, .plen = strlen(prefix)};
    memset(out, 0, sizeof *out);
    if (s.plen < PATH_MAX)
        memcpy(s.path, prefix, s.plen);  /* (longer: no link's target can be named, none is looked up) */
    int r = bn_each_name(fd, bn_put_entry, &s);
    /* (realloc'd memory suits any type; on failure too, for bn_scan_free) */
    out->stats = (int64_t *)(void *)s.stats;
    out->count = s.slen / (13 * sizeof *out->stats);
    out->targets = (int64_t *)(void *)s.targets;
    out->nlinks = s.tlen / (13 * sizeof *out->targets);
    return r < 0 ? r : (long)out->count;
}

void bn_scan_free(bn_scan *s)
{
    free(s->names);
    free(s->stats);
    free(s->links);
    free(s->targets);
    memset(s, 0, sizeof *s);
}

/* ---- watch: inotify on directories opened beneath the root ---------------------------- */

int bn_inotify_init(void)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int bn_inotify_rm(int ifd, int wd)
{
    return inotify_rm_watch(ifd, wd) < 0 ? -errno : 0;
}

/* The kernel watches the inode the fd holds: "/proc/self/fd/N" is followed to it by the
   kernel itself (a magic link of our own), never by a path a project user could change. */
static int bn_watch_fd(int ifd, int fd, uint32_t mask)
{
    char p[48];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(ifd, p, mask | IN_ONLYDIR);
    return wd < 0 ? -errno : wd;
}

static int bn_wlist_put(bn_wlist *l, int wd, long parent, const char *name, int is_dir, const struct stat *st)
{
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 64;
        bn_wentry *e = realloc(l->e, c * sizeof *e);
        if (!e)
            return -ENOMEM;
        l->e = e;
        l->cap = c;
    }
    bn_wentry *e = &l->e[l->n];
    e->wd = wd;
    e->parent = (int32_t)parent;
    e->is_dir = is_dir;
    e->name = (uint32_t)l->len;
    e->dev = st ? (uint64_t)st->st_dev : 0;
    e->ino = st ? (uint64_t)st->st_ino : 0;
    int r = bn_buf_put(&l->names, &l->len, &l->ncap, name, strlen(name) + 1);
    if (r == 0)
        l->n++;
    return r;
}

void bn_wlist_free(bn_wlist *l)
{
    free(l->e);
    free(l->names);
    l->e = NULL;
    l->names = NULL;
    l->n = l->cap = l->len = l->ncap = 0;
}

int bn_watch_tree(const bn_root *rt, int ifd, const char *dir, uint64_t dev, uint64_t ino, const char *name,
                  uint32_t mask, int flags, size_t max_dirs, bn_job *job, bn_wlist *out)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    /* dir is a path of real directories (no link in it: RESOLVE_NO_SYMLINKS), beneath the root */
    int dfd = bn_open_child_dir(rt->fd, *dir ? dir : ".");
    if (dfd < 0)
        return dfd;
    if (fstat(dfd, &st) < 0) {
        int e = -errno;
        close(dfd);
        return e;
    }
    if (ino && ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino)) {
        close(dfd);
        return -BN_ECHANGED;   /* not the directory the caller watches there any more */
    }
    int top = dfd;
    if (name) {
        top = bn_open_child_dir(dfd, name);
        close(dfd);
        if (top < 0)
            return top;
        if (fstat(top, &st) < 0) {
            int e = -errno;
            close(top);
            return e;
        }
    }
    int report = flags & BN_WT_REPORT;
    if (max_dirs == 0) {
        close(top);
        return -ENOSPC;
    }
    int wd = bn_watch_fd(ifd, top, mask);
    int r = wd < 0 ? wd : bn_wlist_put(out, wd, -1, "", 1, &st);
    if (r < 0) {
        close(top);
        return r;
    }
    size_t dirs = 1;
    bn_walk w;
    r = bn_walk_init(&w, 1, "", rt);
    if (r < 0) {
        close(top);
        return r;
    }
    w.job = job;
    int fds[1] = {top};
    r = bn_push(&w, fds, 0, NULL, &st);   /* lists it: after its watch landed */
    if (r == 0)
        w.f[0].rec = 0;
    while (r >= 0 && w.n > 0) {
        if (bn_cancelled(job)) {
            r = -ECANCELED;
            break;
        }
        bn_frame *f = &w.f[w.n - 1];
        if (f->pos >= f->end) {
            bn_pop(&w);
            continue;
        }
        size_t nm = f->pos;
        long parent = f->rec;
        f->pos += strlen(w.arena + nm) + 1;
        if (!(flags & BN_WT_RECURSIVE) && !report)
            continue;
        r = bn_ensure(&w, w.n - 1);
        if (r < 0)
            break;
        int pfd = w.f[w.n - 1].fd[0];
        const char *n = w.arena + nm;
        if (fstatat(pfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;   /* gone meanwhile: its delete event follows */
            r = -errno;
            break;
        }
        int is_dir = S_ISDIR(st.st_mode);
        if (!is_dir || !(flags & BN_WT_RECURSIVE)) {
            if (report)
                r = bn_wlist_put(out, -1, parent, n, is_dir, &st);
            continue;
        }
        fds[0] = bn_open_child_dir(pfd, n);
        if (fds[0] == -ENOENT || fds[0] == -ENOTDIR || fds[0] == -ELOOP)
            continue;   /* removed or swapped for something else meanwhile: its events follow */
        if (fds[0] < 0) {
            r = fds[0];
            break;
        }
        if (fstat(fds[0], &st) < 0 || dirs >= max_dirs) {
            r = dirs >= max_dirs ? -ENOSPC : -errno;
            close(fds[0]);
            break;
        }
        wd = bn_watch_fd(ifd, fds[0], mask);
        if (wd < 0) {
            r = wd;
            close(fds[0]);
            break;
        }
        dirs++;
        long rec = (long)out->n;
        r = bn_wlist_put(out, wd, parent, n, 1, &st);
        if (r < 0) {
            close(fds[0]);
            break;
        }
        r = bn_push(&w, fds, nm, NULL, &st);
        if (r == 0)
            w.f[w.n - 1].rec = rec;
        else if (r == -ENOENT || r == -ENOTDIR)
            r = 0;   /* went away between its watch and its listing */
    }
    bn_walk_free(&w);
    return r < 0 ? r : (int)out->n;
}

/*
 * replace.c: contents that appear whole or not at all (write_file, copy_file, and every
 * file cp copies), and the crash journal that keeps a kill -9 from leaving a temporary
 * name behind.  The destination directory and leaf come from the resolver; nothing here
 * resolves a caller's path.
 */
#include "internal.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/xattr.h>
#include <time.h>

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

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

static int bn_pwrite_all(int fd, const char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/* copy_file_range moves at most this much per call, so that a cancel is seen within one
   chunk (8 MiB: a few ms on a disk, and 128 calls for a GiB) */
#define BN_CHUNK (8 << 20)

/* The copy loop's state: copy_file_range until the file systems refuse it, then a buffer. */
struct bn_copier { int in, out, cfr; char *buf; bn_job *job; };

/* Copy in's bytes [off, off + len) (len < 0: to its end) to the same offsets of out;
   *got is how many: fewer than len when the source ended first. */
static int bn_copy_range(struct bn_copier *c, off_t off, off_t len, off_t *got)
{
    off_t done = 0;
    *got = 0;
    while (len < 0 || done < len) {
        ssize_t n;
        size_t want = (len < 0 || len - done > BN_CHUNK) ? BN_CHUNK : (size_t)(len - done);
        if (bn_cancelled(c->job))
            return -ECANCELED;
        if (c->cfr) {
            loff_t i = off + done, o = off + done;
            n = copy_file_range(c->in, &i, c->out, &o, want, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                          errno == EOPNOTSUPP || errno == EBADF)) {
                c->cfr = 0;
                continue;
            }
        } else {
            if (!c->buf && !(c->buf = malloc(1 << 20)))
                return -ENOMEM;
            n = pread(c->in, c->buf, want > (1 << 20) ? (1 << 20) : want, off + done);
            if (n > 0) {
                int r = bn_pwrite_all(c->out, c->buf, (size_t)n, off + done);
                if (r < 0)
                    return r;
            }
        }
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += n;
        *got = done;
        bn_did(c->job, 0, (uint64_t)n);
    }
    return 0;
}

/*
 * Copy the contents of `in` to the empty `out`: FICLONE (holes and all), else the data
 * extents only, as `cp --sparse=auto` does: a file with fewer blocks than its size needs
 * is walked with SEEK_DATA / SEEK_HOLE and only its data is copied, at the same offsets,
 * so holes stay holes (copy_file_range itself fills them with zeros on ext4 and tmpfs: a
 * 1 TB sparse file would take an hour and 1 TB of disk). The copy is the source's first
 * st_size bytes as fstat saw them at the start: what is appended meanwhile is not copied
 * (as cp); a source that shrinks meanwhile gives a copy of its size at the end. A file
 * whose st_size is 0 is read to its end (an empty file, or one whose size says nothing).
 */
static int bn_copy_fd(int in, int out, int reflink, bn_job *job)
{
    struct stat st;
    if (fstat(in, &st) < 0)
        return -errno;
    if (reflink != BN_REFLINK_NEVER) {
        if (ioctl(out, FICLONE, in) == 0) {
            bn_did(job, 0, (uint64_t)st.st_size);
            return 0;
        }
        if (reflink == BN_REFLINK_ALWAYS)
            return -errno;
    }
    struct bn_copier c = {in, out, 1, NULL, job};
    off_t got, size = st.st_size, end = size, pos = 0, written = 0;
    int r = 0, holes = (off_t)st.st_blocks * 512 < size;
    if (size == 0) {
        r = bn_copy_range(&c, 0, -1, &got);
        free(c.buf);
        return r;
    }
    while (r == 0 && pos < size) {
        off_t data = pos, hole = size;
        if (holes) {
            data = lseek(in, pos, SEEK_DATA);
            if (data < 0 && errno == ENXIO)
                break;   /* a hole from pos to the end */
            if (data < 0) {
                holes = 0;   /* no SEEK_DATA: copy the rest whole */
                data = pos;
            } else if ((hole = lseek(in, data, SEEK_HOLE)) < 0 || hole > size)
                hole = size;
            if (data >= size)
                break;
        }
        r = bn_copy_range(&c, data, hole - data, &got);
        written = data + got;
        if (r == 0 && got < hole - data) {
            end = written;   /* the source ended early: it shrank */
            break;
        }
        pos = hole;
    }
    free(c.buf);
    if (r < 0)
        return r;
    if (holes && fstat(in, &st) == 0 && st.st_size < end)
        end = st.st_size;   /* it shrank where the walk saw a hole */
    /* a hole at the end is a size, not data (a file without holes has its size already) */
    return written == end ? 0 : bn_neg(ftruncate(out, end));
}

void bn_tmpname(char *out, size_t n, const char *leaf)
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

int bn_jadd(bn_journal *j, int dfd, const char *tmp)
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

void bn_jdel(bn_journal *j, int s)
{
    if (j && s >= 0) {
        __atomic_store_n(j->map + (size_t)s * BN_JSLOT, (char)0, __ATOMIC_RELEASE);
        __atomic_fetch_and(&j->used[s / 64], ~(1ULL << (s % 64)), __ATOMIC_RELEASE);
    }
}

/*
 * Atomically make dfd/leaf hold new content, in three steps that an atomic writer
 * (open(..., atomic=True)) spreads over its life: bn_tmp_begin opens an O_TMPFILE (or,
 * where the file system has none, a hidden temporary name) in dfd; the caller fills it;
 * bn_tmp_finish links it in (noreplace) or renames it over the old name, or bn_tmp_drop
 * throws it away. The destination is whole or absent; the temporary name, if any, is
 * removed on every failure and journaled in `j` (see bn_jadd) while it exists.
 */
static int bn_tmp_begin(int dfd, const char *leaf, int mode, int flags, int oflags, bn_journal *j, bn_writer *w)
{
    struct stat old;
    memset(w, 0, sizeof *w);
    w->dfd = dfd;
    w->fd = -1;
    w->rec = -1;
    w->flags = flags;
    w->mode = mode;
    w->j = j;
    if (strlen(leaf) >= sizeof w->leaf)
        return -ENAMETOOLONG;
    strcpy(w->leaf, leaf);
    w->old_mode = -1;
    w->old_fd = -1;
    if (fstatat(dfd, leaf, &old, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(old.st_mode))
            return -EISDIR;
        if (!(flags & BN_AW_OVERWRITE))
            return -EEXIST;
        w->old_mode = (int)old.st_mode;
        w->old_size = (int64_t)old.st_size;
    }
    w->fd = openat(dfd, ".", O_TMPFILE | oflags | O_CLOEXEC, (mode_t)(mode & 07777));
    if (w->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        for (int i = 0; i < 16 && w->fd < 0; i++) {
            bn_tmpname(w->tmp, sizeof w->tmp, leaf);
            w->rec = bn_jadd(j, dfd, w->tmp);
            w->fd = openat(dfd, w->tmp, O_CREAT | O_EXCL | oflags | O_NOFOLLOW | O_CLOEXEC,
                           (mode_t)(mode & 07777));
            if (w->fd < 0) {
                int e = errno;
                bn_jdel(j, w->rec);
                w->rec = -1;
                errno = e;
                if (e != EEXIST)
                    break;
            }
        }
        w->named = w->fd >= 0;
    }
    return w->fd < 0 ? -errno : 0;
}

/* Throw the new contents away (and close what the writer holds). */
static void bn_tmp_drop(bn_writer *w)
{
    if (w->named)
        unlinkat(w->dfd, w->tmp, 0);
    if (w->named || w->rec >= 0)
        bn_jdel(w->j, w->rec);
    w->named = 0;
    w->rec = -1;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->own_dfd && w->dfd >= 0)
        close(w->dfd);
    w->dfd = -1;
}

/* Publish the new contents at leaf: permission bits (an existing file's are kept with
   BN_AW_KEEP_MODE, as they are when publishing), then link or rename. */
static int bn_tmp_finish(bn_writer *w, const struct stat *meta, int restat)
{
    char pb[64];
    struct stat old;
    int r = 0, flags = w->flags, dfd = w->dfd, fd = w->fd;
    /* a writer that lived a while looks again (the name may have appeared or changed);
       an immediate replace uses what begin saw */
    if (restat) {
        w->old_mode = fstatat(dfd, w->leaf, &old, AT_SYMLINK_NOFOLLOW) == 0 ? (int)old.st_mode : -1;
        w->old_size = w->old_mode == -1 ? 0 : (int64_t)old.st_size;
    }
    int have_old = w->old_mode != -1;
    if (have_old && S_ISDIR((mode_t)w->old_mode))
        r = -EISDIR;
    else if ((flags & BN_AW_KEEP_MODE) && have_old && S_ISREG((mode_t)w->old_mode))
        r = bn_neg(fchmod(fd, (mode_t)w->old_mode & 07777));
    else if (flags & BN_AW_EXACT_MODE)
        r = bn_neg(fchmod(fd, w->mode & 07777));
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
    if (r == 0 && !w->named) {
        /* the unprivileged way to link an O_TMPFILE: through its /proc/self/fd magic link */
        bn_procfd(pb, sizeof pb, fd);
        if (have_old)
            errno = EEXIST;   /* known to exist: the noreplace link would fail anyway */
        else if (linkat(AT_FDCWD, pb, dfd, w->leaf, AT_SYMLINK_FOLLOW) == 0)
            goto done;
        if (errno != EEXIST || !(flags & BN_AW_OVERWRITE)) {
            r = -errno;
            goto done;
        }
        for (int i = 0; i < 16; i++) {
            bn_tmpname(w->tmp, sizeof w->tmp, w->leaf);
            w->rec = bn_jadd(w->j, dfd, w->tmp);
            if (linkat(AT_FDCWD, pb, dfd, w->tmp, AT_SYMLINK_FOLLOW) == 0) {
                w->named = 1;
                break;
            }
            int e = errno;
            bn_jdel(w->j, w->rec);
            w->rec = -1;
            if (e != EEXIST) {
                r = -e;
                goto done;
            }
        }
        if (!w->named)
            r = -EEXIST;
    }
    if (r == 0 && w->named) {
        if (flags & BN_AW_OVERWRITE) {
            /* the one component in the real directory, no link followed, no data access:
               only a reference, so that the rename does not free the old file's storage */
            if ((flags & BN_AW_HOLD_OLD) && have_old && S_ISREG((mode_t)w->old_mode) && w->old_size >= BN_HOLD_BYTES)
                w->old_fd = openat(dfd, w->leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            r = bn_neg(renameat(dfd, w->tmp, dfd, w->leaf));
            if (r < 0 && w->old_fd >= 0) {
                close(w->old_fd);   /* nothing was replaced */
                w->old_fd = -1;
            }
        } else
            r = bn_neg((int)syscall(SYS_renameat2, dfd, w->tmp, dfd, w->leaf, RENAME_NOREPLACE));
        if (r == 0)
            w->named = 0;   /* the temporary name is the real one now */
    }
done:
    bn_tmp_drop(w);
    return r;
}

int bn_atomic_replace(int dfd, const char *leaf, int mode, int flags,
                      const struct stat *meta, bn_fill_fn fill, void *arg, bn_journal *j, int *held)
{
    bn_writer w;
    if (held)
        *held = -1;
    else
        flags &= ~BN_AW_HOLD_OLD;
    int r = bn_tmp_begin(dfd, leaf, mode, flags, O_WRONLY, j, &w);
    if (r == 0)
        r = fill(w.fd, arg);
    if (r == 0) {
        r = bn_tmp_finish(&w, meta, 0);
        if (held)
            *held = w.old_fd;
        return r;
    }
    bn_tmp_drop(&w);
    return r;
}

int bn_writer_open(const bn_root *rt, const char *path, int mode, int flags, int rdwr, bn_writer *w)
{
    bn_path p;
    char real[PATH_MAX];   /* a final in-tree link is followed: its target is replaced */
    w->fd = w->dfd = w->old_fd = -1;
    w->named = w->own_dfd = 0;
    w->rec = -1;
    int r = bn_follow_final(rt, path, real);
    if (r == 0)
        r = bn_split(rt, real, 0, &p);
    if (r < 0)
        return r;
    if (p.dots || p.slash) {
        bn_release(&p);
        return -EISDIR;
    }
    int dfd = fcntl(p.pfd, F_DUPFD_CLOEXEC, 0);   /* held until publish or discard */
    r = dfd < 0 ? -errno : bn_tmp_begin(dfd, p.leaf, mode, flags, rdwr ? O_RDWR : O_WRONLY, rt->journal, w);
    w->own_dfd = 1;
    w->dfd = dfd;
    bn_release(&p);
    if (r < 0) {
        bn_tmp_drop(w);
        return r;
    }
    return w->fd;
}

int bn_writer_publish(bn_writer *w)
{
    if (w->fd < 0)
        return -EBADF;
    return bn_tmp_finish(w, NULL, 1);
}

void bn_writer_discard(bn_writer *w)
{
    bn_tmp_drop(w);
}

struct bn_buf { const char *buf; size_t len; bn_job *job; };
static int bn_fill_buf(int fd, void *arg)
{
    struct bn_buf *b = arg;
    if (!b->job)
        return bn_write_all(fd, b->buf, b->len);
    for (size_t off = 0; off < b->len; off += BN_CHUNK) {   /* counted, and stoppable, by chunks */
        if (bn_cancelled(b->job))
            return -ECANCELED;
        size_t n = b->len - off < BN_CHUNK ? b->len - off : BN_CHUNK;
        int r = bn_write_all(fd, b->buf + off, n);
        if (r < 0)
            return r;
        bn_did(b->job, 0, n);
    }
    return 0;
}

/*
 * Extended attributes (user.*, ACLs, ...), as `cp -a` and shutil.copystat copy them: every
 * name the source lists that the destination accepts. Like shutil, a refusal for lack of
 * privilege or support (EPERM, ENOTSUP, EINVAL, ENODATA) skips that name.
 */
static int bn_xattr_skip(int e) { return e == EPERM || e == ENOTSUP || e == EINVAL || e == ENODATA; }

int bn_copy_xattrs(int in, int out)
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

int bn_fill_fd(int fd, void *arg)
{
    struct bn_src *s = arg;
    int r = bn_copy_fd(s->fd, fd, s->reflink, s->job);
    return (r == 0 && s->xattrs) ? bn_copy_xattrs(s->fd, fd) : r;
}

int bn_write_file(const bn_root *rt, const char *path, const char *buf, size_t len, int mode, int flags,
                  bn_job *job, int *held)
{
    if (held)
        *held = -1;
    bn_path p;
    char real[PATH_MAX];   /* a final in-tree link is followed: its target is replaced */
    int r = bn_follow_final(rt, path, real);
    if (r == 0)
        r = bn_split(rt, real, 0, &p);
    if (r < 0)
        return r;
    if (p.dots)
        r = -EISDIR;
    else if (p.slash)
        r = -EISDIR;
    else {
        struct bn_buf b = {buf, len, job};
        r = bn_atomic_replace(p.pfd, p.leaf, mode, flags, NULL, bn_fill_buf, &b, rt->journal, held);
        if (r == 0)
            bn_did(job, 1, 0);
    }
    bn_release(&p);
    return r;
}

int bn_copy_file(const bn_root *rt, const char *src, const char *dst, int overwrite, int reflink, int preserve,
                 bn_job *job, int *held)
{
    char real[PATH_MAX];   /* a final in-tree link at dst is followed */
    if (held)
        *held = -1;
    int r = bn_follow_final(rt, dst, real);
    return r < 0 ? r : bn_copy_file_to(rt, job, src, real, overwrite, reflink, preserve, held);
}

int bn_copy_file_to(const bn_root *rt, bn_job *job, const char *src, const char *dst, int overwrite, int reflink,
                    int preserve, int *held)
{
    struct stat st;
    bn_path p;
    int sfd = bn_open_regular(rt, src, O_RDONLY, 0);
    if (sfd < 0)
        return sfd;
    int r = bn_neg(fstat(sfd, &st));
    if (r == 0)
        r = bn_split(rt, dst, 0, &p);
    if (r < 0) {
        close(sfd);
        return r;
    }
    if (p.dots || p.slash)
        r = -EISDIR;
    else {
        struct bn_src s = {sfd, reflink, preserve, job};
        r = bn_atomic_replace(p.pfd, p.leaf, st.st_mode & 07777,
                              (overwrite ? BN_AW_OVERWRITE : 0) | BN_AW_EXACT_MODE | BN_AW_HOLD_OLD,
                              preserve ? &st : NULL, bn_fill_fd, &s, rt->journal, held);
        if (r == 0)
            bn_did(job, 1, 0);
    }
    bn_release(&p);
    close(sfd);
    return r;
}

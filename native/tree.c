/*
 * tree.c: rm -r and cp -r, descending by dirfd only (O_NOFOLLOW|O_DIRECTORY), never
 * through a link.
 */
#include "internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BN_MAX_DEPTH 4000

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

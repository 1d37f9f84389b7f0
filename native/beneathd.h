/*
 * beneathd's native helpers: the one public header.
 *
 * Every function that takes a caller's path resolves it beneath rt->fd with openat2(2)
 * (native/resolve.c) and then acts on the final component with one *at syscall.  Return
 * values are >= 0 on success and -errno on failure; two codes sit outside the errno range:
 * -BN_EESCAPE ("openat2 said the path escapes the root", its EXDEV, kept apart from the
 * EXDEV a rename or link reports for a mount boundary), -BN_EMOUNT (the walk would cross
 * a mount and the root is served with RESOLVE_NO_XDEV), -BN_ENOTREG (a FIFO, device or
 * socket where a regular file is required), -BN_ECHANGED and -BN_ETOODEEP (tree walks).
 *
 * The lines between the cdef markers are read by cffi_build.py as the cffi cdef: keep them
 * to plain integer #defines, typedefs and prototypes.
 */
#ifndef BENEATHD_H
#define BENEATHD_H

#include <stddef.h>
#include <stdint.h>

/* cdef: begin */
#define BN_EESCAPE 4096
#define BN_ENOTREG 4097
#define BN_ECHANGED 4098
#define BN_ETOODEEP 4099
#define BN_EMOUNT 4100
#define BN_RESOLVE_NO_XDEV 1
/* rx: resolve with the emulated resolver (native/resolve.c), not openat2 */
#define BN_RESOLVE_EMULATED 2

#define BN_CP_RECURSIVE 1
#define BN_CP_OVERWRITE 2
#define BN_CP_PRESERVE 4
#define BN_REFLINK_NEVER 0
#define BN_REFLINK_AUTO 1
#define BN_REFLINK_ALWAYS 2
#define BN_AW_OVERWRITE 1
#define BN_AW_KEEP_MODE 2
#define BN_AW_EXACT_MODE 4
/* A replaced regular file of BN_HOLD_BYTES or more is kept open (O_PATH) past the rename
   and handed to the caller (bn_writer.old_fd, or *held): freeing a big file's pages and
   blocks happens in its last close, which the caller can do after answering instead of
   waiting for it inside the rename (about a second per GiB here). */
#define BN_AW_HOLD_OLD 8
#define BN_HOLD_BYTES 1048576
#define BN_JSLOT 4096
#define BN_JSLOTS 256

/* The one retry policy (internal.h, bn_retry_again): a step the tree keeps changing under is
   tried at most this often and this long, then gives EAGAIN */
#define BN_RETRY_TRIES 128
#define BN_RETRY_MS 250

/* Tree walks (native/tree.c): the deepest tree a walk descends (deeper: -BN_ETOODEEP). */
#define BN_TREE_MAX_DEPTH 1048576

/* The crash journal (native/replace.c): a shared mapping of a BN_JSLOTS x BN_JSLOT file. */
typedef struct bn_journal bn_journal;
bn_journal *bn_journal_map(int fd);
void bn_journal_unmap(bn_journal *j);

/* What every operation needs of the root, one per Root: its O_PATH directory fd, the
   resolve flags (BN_RESOLVE_NO_XDEV, BN_RESOLVE_EMULATED or 0), the crash journal for temporary names (or
   NULL) and the walk limit. */
typedef struct bn_root {
    int fd;
    int rx;
    bn_journal *journal;
    int max_depth;   /* tree walks: the deepest level descended (0: BN_TREE_MAX_DEPTH) */
} bn_root;

/* One long call (cp, rm, copy_file): another thread may set cancel (the call stops within
   one entry or one chunk, returning -ECANCELED) and read what it has done so far. NULL
   where a call has no job. */
typedef struct bn_job {
    int cancel;
    uint64_t entries;   /* entries copied or removed */
    uint64_t bytes;     /* bytes of file data copied */
} bn_job;

/* resolve.c: the door every caller's path goes through (bn_openat2 is the raw door, from
   any directory fd: Root's probe and the native code use it; with rx & BN_RESOLVE_EMULATED
   it resolves one component at a time without openat2, to the same answers) */
int bn_openat2(int dirfd, const char *path, int flags, int mode, int rx);
/* A directory below dfd by names from getdents ("a" or "a/b/c"), each opened from the one
   before with O_NOFOLLOW (a link gives ENOTDIR, or ELOOP before the last name; "", "." and
   ".." are refused with EINVAL): how walks descend, the same under either resolver. */
int bn_open_child_dir(int dfd, const char *name);
int bn_open_regular(const bn_root *rt, const char *path, int flags, int mode);
/* Can the emulated resolver work here: procfs at /proc, fd's name readable through it?
   0 or -errno (-ENOSYS: no procfs).  Reads fs.protected_symlinks once, for later. */
int bn_emulated_ready(int fd);
/* path with a final in-tree symlink chain followed (textually, 40 links at most), into
   out[PATH_MAX]: what write_file, copy_file and cp replace */
int bn_follow_final(const bn_root *rt, const char *path, char *out);
/* the canonical path relative to the root ("." for the root); returns its length */
int bn_realpath(const bn_root *rt, const char *path, char *buf, size_t size);
/* mkdir with missing ancestors (pathlib's parents=True) */
int bn_mkdir_p(const bn_root *rt, const char *path, int mode);

/* ops.c: one resolution plus one *at syscall each */
int bn_lstat(const bn_root *rt, const char *path, int64_t *out);
int bn_stat(const bn_root *rt, const char *path, int64_t *out);
int bn_readlink(const bn_root *rt, const char *path, char *buf, size_t size);
int bn_mkdir(const bn_root *rt, const char *path, int mode);
int bn_unlink(const bn_root *rt, const char *path);
int bn_rmdir(const bn_root *rt, const char *path);
int bn_rename(const bn_root *rt, const char *src, const char *dst, unsigned int flags);
int bn_link(const bn_root *rt, const char *src, const char *dst);
int bn_symlink(const bn_root *rt, const char *target, const char *path);
int bn_mkfifo(const bn_root *rt, const char *path, int mode);
int bn_chmod(const bn_root *rt, const char *path, int mode);
int bn_chown(const bn_root *rt, const char *path, int uid, int gid);
int bn_utime(const bn_root *rt, const char *path, int64_t atime_ns, int64_t mtime_ns, int now);
int bn_truncate(const bn_root *rt, const char *path, int64_t length);

/* replace.c: contents, whole or not at all */
int bn_write_file(const bn_root *rt, const char *path, const char *buf, size_t len, int mode, int flags,
                  bn_job *job, int *held);
int bn_copy_file(const bn_root *rt, const char *src, const char *dst, int overwrite, int reflink, int preserve,
                 bn_job *job, int *held);

/* An atomic writer (open(..., atomic=True)): the new contents live in an anonymous file
   (O_TMPFILE, or a journaled hidden name where the file system has none) in the target's
   real directory until bn_writer_publish links them in whole (BN_AW_OVERWRITE: replacing
   what is there; without it, -EEXIST if the name exists by then) or bn_writer_discard
   drops them. bn_writer_open returns the contents' fd (the writer keeps it). */
typedef struct bn_writer {
    int dfd;        /* the target's directory */
    int own_dfd;
    int fd;         /* the new contents */
    int named;      /* they have the temporary name tmp */
    int rec;        /* its crash-journal record, or -1 */
    int flags;      /* BN_AW_* */
    int mode;
    int old_mode;   /* st_mode of what the name held, or -1 for nothing */
    int old_fd;     /* BN_AW_HOLD_OLD: the replaced file, after publish (the caller closes it), or -1 */
    int64_t old_size;
    bn_journal *j;
    char leaf[258];
    char tmp[320];
} bn_writer;
int bn_writer_open(const bn_root *rt, const char *path, int mode, int flags, int rdwr, bn_writer *w);
int bn_writer_publish(bn_writer *w);
void bn_writer_discard(bn_writer *w);

/* tree.c: rm -r and cp -r by descending dirfds, at any depth */
int bn_cp(const bn_root *rt, const char *src, const char *dst, int flags, bn_job *job);
int bn_rm(const bn_root *rt, const char *path, int recursive, int force, bn_job *job);
int bn_du(const bn_root *rt, const char *path, uint64_t *out, bn_job *job);
/* A directory fd's names as walk sorts them ("." and ".." left out, getdents order): the
   directories' names in buf[0, dirs), every other name in buf[dirs, len), each ending in
   a NUL; d_type decides, fstatat (no follow) where it is DT_UNKNOWN (a name gone by then
   is not a directory). Two strings Python splits, instead of an object per entry. buf is
   malloc'd: bn_names_free it. */
typedef struct bn_names {
    char *buf;
    size_t dirs;
    size_t len;
} bn_names;
int bn_list_names(int fd, bn_names *out);
void bn_names_free(bn_names *n);

/* A listing for scandir in one call, no object per entry: a directory fd's names in
   getdents order ("." and ".." left out; a name gone before its fstatat is left out too),
   each ending in a NUL in names; each one's lstat, 13 int64 in the wire's order, in stats;
   for each symlink among them, in order, its text ending in a NUL in links (just the NUL
   when it could not be read: replaced meanwhile) and in targets the stat of what it points
   to, resolved beneath the root as prefix + name (mode 0: dangling, pointing out, or the
   path too long). prefix is the listed directory's path as the caller spelled it, ending
   in '/' (or empty for the root). Returns count, or -errno; bn_scan_free either way. */
typedef struct bn_scan {
    char *names;
    size_t names_len;
    int64_t *stats;
    size_t count;
    char *links;
    size_t links_len;
    int64_t *targets;
    size_t nlinks;
} bn_scan;
long bn_scan_dir(const bn_root *rt, int fd, const char *prefix, bn_scan *out);
void bn_scan_free(bn_scan *s);

/* Watch (tree.c): inotify on directories opened beneath the root, through their own fds.
   bn_watch_tree opens `dir` beneath the root without following any link ("" for the root;
   with dev and ino nonzero it must still be that directory, else -BN_ECHANGED), then its
   child directory `name` if not NULL, and watches it (its fd's /proc/self/fd/N: the kernel
   follows our own fd, never a path); with BN_WT_RECURSIVE every directory below it too,
   each watched before it is listed, none through a link. Each watched directory is an
   entry of out (wd >= 0, parent: the index of its parent's entry, -1 for the first); with
   BN_WT_REPORT every other name found is one too (wd -1), for the events a new directory's
   contents would have had. At most max_dirs watches (then -ENOSPC, out holding those
   placed). Returns out->n, or -errno; bn_wlist_free(out) in either case. */
#define BN_WT_RECURSIVE 1
#define BN_WT_REPORT 2
typedef struct bn_wentry {
    int32_t wd;
    int32_t parent;
    uint32_t name;      /* offset of its NUL-terminated name in names */
    uint32_t is_dir;
    uint64_t dev;
    uint64_t ino;
} bn_wentry;
typedef struct bn_wlist {
    bn_wentry *e;
    size_t n, cap;
    char *names;
    size_t len, ncap;
} bn_wlist;
int bn_inotify_init(void);
int bn_inotify_rm(int ifd, int wd);
int bn_watch_tree(const bn_root *rt, int ifd, const char *dir, uint64_t dev, uint64_t ino, const char *name,
                  uint32_t mask, int flags, size_t max_dirs, bn_job *job, bn_wlist *out);
void bn_wlist_free(bn_wlist *l);

/* Test hook: with bn_set_hook(1), the native code calls bn_py_hook(stage) between its steps
   (stage 1: parent resolved, before acting on the leaf; 2: in a tree walk, after fstatat and
   before opening the entry; 3: atomic replace, before the link/rename; 4: the emulated
   resolver, after each directory it steps into). Off by default.
   bn_py_hook itself is declared by cffi_build.py (extern "Python+C"). */
void bn_set_hook(int on);

/* landlock.c: the raw syscalls; policy is in daemon/landlock.py */
int bn_landlock_abi(void);
int bn_landlock_create(uint64_t handled_fs);
int bn_landlock_allow(int ruleset, int fd, uint64_t access);
int bn_landlock_restrict(int ruleset);
/* cdef: end */

#endif

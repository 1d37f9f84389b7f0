/*
 * beneathd's native helpers: the one public header.
 *
 * Every function that takes a caller's path resolves it beneath `root` with openat2(2)
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

/* Tree walks (native/tree.c): the deepest tree a walk descends (deeper: -BN_ETOODEEP). */
#define BN_TREE_MAX_DEPTH 1048576

/* The crash journal (native/replace.c): a shared mapping of a BN_JSLOTS x BN_JSLOT file. */
typedef struct bn_journal bn_journal;
bn_journal *bn_journal_map(int fd);
void bn_journal_unmap(bn_journal *j);

/* resolve.c: the door every caller's path goes through */
int bn_openat2(int dirfd, const char *path, int flags, int mode, int rx);
int bn_open_regular(int root, const char *path, int flags, int mode, int rx);
/* path with a final in-tree symlink chain followed (textually, 40 links at most), into
   out[PATH_MAX]: what write_file, copy_file and cp replace */
int bn_follow_final(int root, const char *path, char *out, int rx);
/* the canonical path relative to the root ("." for the root); returns its length */
int bn_realpath(int root, const char *path, char *buf, size_t size, int rx);
/* mkdir with missing ancestors (pathlib's parents=True) */
int bn_mkdir_p(int root, const char *path, int mode, int rx);

/* ops.c: one resolution plus one *at syscall each */
int bn_lstat(int root, const char *path, int64_t *out, int rx);
int bn_stat(int root, const char *path, int64_t *out, int rx);
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

/* replace.c: contents, whole or not at all */
int bn_write_file(int root, const char *path, const char *buf, size_t len, int mode, int flags, bn_journal *j, int rx);
int bn_copy_file(int root, const char *src, const char *dst, int overwrite, int reflink, int preserve, bn_journal *j, int rx);

/* tree.c: rm -r and cp -r by descending dirfds, at any depth */
int bn_cp(int root, const char *src, const char *dst, int flags, bn_journal *j, int rx);
int bn_rm(int root, const char *path, int recursive, int force, int rx);

/* Test hook: with bn_set_hook(1), the native code calls bn_py_hook(stage) between its steps
   (stage 1: parent resolved, before acting on the leaf; 2: in a tree walk, after fstatat and
   before opening the entry; 3: atomic replace, before the link/rename). Off by default.
   bn_py_hook itself is declared by cffi_build.py (extern "Python+C"). */
void bn_set_hook(int on);

/* landlock.c: the raw syscalls; policy is in daemon/landlock.py */
int bn_landlock_abi(void);
int bn_landlock_create(uint64_t handled_fs);
int bn_landlock_allow(int ruleset, int fd, uint64_t access);
int bn_landlock_restrict(int ruleset);
/* cdef: end */

#endif

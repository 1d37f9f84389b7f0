/*
 * A native driver for the tree walkers, built with -fsanitize=address,undefined by
 * tests/test_native_asan.py: cp -r and rm -r of a deep chain with wide levels, run on a
 * thread with a small stack, then again under a low RLIMIT_NOFILE (the walk must fail
 * cleanly, not crash or leak).  Exits 0 when every check holds; the sanitizers make any
 * memory error, leak or undefined behaviour a non-zero exit with a report.
 *
 * usage: walk_asan DIR DEPTH
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneathd.h"

void bn_py_hook(int stage) { (void)stage; }   /* cffi provides it in the extension */

static int root;
static bn_root rt;
static long depth;

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(2); } } while (0)

static void build(const char *name)
{
    int fd = openat(root, ".", O_PATH | O_DIRECTORY);
    for (long i = 0; i < depth; i++) {
        const char *n = i == 0 ? name : "d";
        CHECK(mkdirat(fd, n, 0755) == 0, "mkdir %ld: %s", i, strerror(errno));
        int nfd = openat(fd, n, O_PATH | O_DIRECTORY);
        CHECK(nfd >= 0, "open %ld: %s", i, strerror(errno));
        close(fd);
        fd = nfd;
        if (i % 1000 == 0 || i > depth - 20) {   /* some wide levels, links in and out */
            for (int k = 0; k < 40; k++) {
                char f[32];
                snprintf(f, sizeof f, "file-%d", k);
                int w = openat(fd, f, O_WRONLY | O_CREAT, 0640);
                CHECK(w >= 0 && write(w, f, strlen(f)) > 0, "file: %s", strerror(errno));
                close(w);
            }
            CHECK(symlinkat("/etc", fd, "out") == 0, "symlink");
            CHECK(symlinkat("file-0", fd, "in") == 0, "symlink");
        }
    }
    close(fd);
}

static long measure(const char *name)
{
    int fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    long n = 0;
    while (fd >= 0) {
        n++;
        int c = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        close(fd);
        fd = c;
    }
    return n;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void *walks(void *arg)
{
    (void)arg;
    int before = count_fds();
    int r = bn_cp(&rt, "src", "copy", BN_CP_RECURSIVE | BN_CP_OVERWRITE | BN_CP_PRESERVE, NULL);
    CHECK(r == 0, "cp -r: %d", r);
    CHECK(measure("copy") == depth, "copy is %ld deep, not %ld", measure("copy"), depth);
    r = bn_cp(&rt, "src", "copy", BN_CP_RECURSIVE | BN_CP_OVERWRITE, NULL);   /* over itself */
    CHECK(r == 0, "cp -r again: %d", r);
    r = bn_cp(&rt, "src", "src/d/inside", BN_CP_RECURSIVE | BN_CP_OVERWRITE, NULL);
    CHECK(r == 0, "cp -r into itself: %d", r);
    r = bn_rm(&rt, "src/d/inside", 1, 0, NULL);
    CHECK(r == 0, "rm -r of the copy inside: %d", r);
    r = bn_rm(&rt, "copy", 1, 0, NULL);
    CHECK(r == 0, "rm -r: %d", r);
    CHECK(measure("copy") == 0, "copy left");
    CHECK(count_fds() == before, "fds: %d before, %d after", before, count_fds());

    /* too few fds for the walk: it must fail cleanly and leave no fd behind */
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    low = old;
    low.rlim_cur = (rlim_t)before + 12;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0, "setrlimit");
    r = bn_cp(&rt, "src", "copy2", BN_CP_RECURSIVE | BN_CP_OVERWRITE, NULL);
    CHECK(r == -EMFILE || r == 0, "cp -r with few fds: %d", r);
    r = bn_rm(&rt, "copy2", 1, 1, NULL);
    CHECK(r == -EMFILE || r == 0, "rm -r with few fds: %d", r);
    setrlimit(RLIMIT_NOFILE, &old);
    CHECK(count_fds() == before, "fds after EMFILE: %d before, %d after", before, count_fds());
    r = bn_rm(&rt, "copy2", 1, 1, NULL);
    CHECK(r == 0, "rm -r copy2: %d", r);

    /* cancelled walks stop at once, free everything and count what they did */
    bn_job job = {1, 0, 0};
    r = bn_cp(&rt, "src", "copy3", BN_CP_RECURSIVE, &job);
    CHECK(r == -ECANCELED, "cancelled cp -r: %d", r);
    r = bn_rm(&rt, "src", 1, 0, &job);
    CHECK(r == -ECANCELED, "cancelled rm -r: %d", r);
    CHECK(count_fds() == before, "fds after cancels: %d before, %d after", before, count_fds());
    job.cancel = 0;
    r = bn_rm(&rt, "copy3", 1, 0, &job);
    CHECK(r == 0 && job.entries >= 1, "rm -r copy3: %d (%llu entries)", r, (unsigned long long)job.entries);
    r = bn_rm(&rt, "src", 1, 0, NULL);
    CHECK(r == 0, "rm -r src: %d", r);
    CHECK(bn_rm(&rt, "src", 1, 1, NULL) == 0, "rm -rf of nothing");

    /* bn_list_names: more names than one getdents buffer, split into dirs and the rest */
    CHECK(mkdirat(root, "names", 0700) == 0, "mkdir names");
    int nd = openat(root, "names", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(nd >= 0, "open names");
    char nm[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(nm, sizeof nm, "a-rather-long-file-name-to-fill-buffers-%05d", i);
        int f = openat(nd, nm, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        CHECK(f >= 0, "create %s", nm);
        close(f);
    }
    CHECK(mkdirat(nd, "sub", 0700) == 0 && symlinkat("sub", nd, "link") == 0, "sub and link");
    bn_names names;
    r = bn_list_names(nd, &names);
    CHECK(r == 0, "bn_list_names: %d", r);
    CHECK(names.dirs == 4 && memcmp(names.buf, "sub", 4) == 0, "dirs: %zu bytes", names.dirs);
    size_t count = 0;
    for (size_t i = names.dirs; i < names.len; i++)
        count += names.buf[i] == 0;
    CHECK(count == 3001 && names.buf[names.len - 1] == 0, "%zu other names", count);
    bn_names_free(&names);

    /* bn_scan_dir: the same names with their lstat, the link's text and its target */
    CHECK(symlinkat("/etc", nd, "out") == 0, "out link");
    bn_scan scan;
    long n = bn_scan_dir(&rt, nd, "names/", &scan);
    CHECK(n == 3003 && scan.count == 3003 && scan.nlinks == 2, "bn_scan_dir: %ld (%zu links)", n, scan.nlinks);
    size_t nuls = 0, links = 0;
    for (size_t i = 0; i < scan.names_len; i++)
        nuls += scan.names[i] == 0;
    for (size_t i = 0; i < scan.count; i++)
        links += S_ISLNK(scan.stats[13 * i]);
    CHECK(nuls == 3003 && links == 2, "%zu names, %zu links", nuls, links);
    int in = memcmp(scan.links, "sub", 4) == 0 ? 0 : 1;  /* getdents order: either link first */
    CHECK(memcmp(scan.links + (in ? 5 : 4), in ? "sub" : "/etc", in ? 4 : 5) == 0, "link texts");
    CHECK(S_ISDIR(scan.targets[13 * in]) && scan.targets[13 * (1 - in)] == 0, "targets: in, out");
    bn_scan_free(&scan);
    close(nd);
    CHECK(bn_rm(&rt, "names", 1, 0, NULL) == 0, "rm -r names");
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: walk_asan DIR DEPTH");
    root = open(argv[1], O_PATH | O_DIRECTORY);
    CHECK(root >= 0, "open %s: %s", argv[1], strerror(errno));
    rt.fd = root;   /* rx 0, no journal */
    depth = atol(argv[2]);
    build("src");
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);   /* a walker's stack must not grow with depth */
    CHECK(pthread_create(&t, &a, walks, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
    close(root);
    puts("walk_asan: ok");
    return 0;
}

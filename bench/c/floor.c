/* The kernel floor of a beneath-the-root stat: openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS,
   O_PATH) + fstat + close against one fstatat of the same relative path, in C (no Python in
   the loop). bench/bench_depth.py compiles and runs it: floor ROOT N PATH... prints one line
   per path: "PATH fstatat_ns openat2_fstat_ns openat2_nofollow_fstat_ns". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct how { uint64_t flags, mode, resolve; };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int o2(int dfd, const char *p, int flags)
{
    struct how h = {(uint64_t)(flags | O_CLOEXEC), 0, 0x08 | 0x02};
    return (int)syscall(437, dfd, p, &h, sizeof h);
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    int root = open(argv[1], O_PATH | O_DIRECTORY);
    long n = atol(argv[2]);
    struct stat st;
    for (int a = 3; a < argc; a++) {
        const char *p = argv[a];
        double best[3] = {1e18, 1e18, 1e18};
        for (int rep = 0; rep < 5; rep++) {
            double t = now();
            for (long i = 0; i < n; i++)
                fstatat(root, p, &st, 0);
            double d0 = (now() - t) / n;
            t = now();
            for (long i = 0; i < n; i++) {
                int fd = o2(root, p, O_PATH);
                fstat(fd, &st);
                close(fd);
            }
            double d1 = (now() - t) / n;
            t = now();
            for (long i = 0; i < n; i++) {
                int fd = o2(root, p, O_PATH | O_NOFOLLOW);
                fstat(fd, &st);
                close(fd);
            }
            double d2 = (now() - t) / n;
            if (d0 < best[0]) best[0] = d0;
            if (d1 < best[1]) best[1] = d1;
            if (d2 < best[2]) best[2] = d2;
        }
        printf("%s %.0f %.0f %.0f\n", p, best[0], best[1], best[2]);
    }
    return 0;
}

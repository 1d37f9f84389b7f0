/*
 * landlock.c: the raw Landlock syscalls.  What to allow, and what to do when the kernel has
 * no Landlock, is decided in daemon/landlock.py.
 */
#include "internal.h"

#include <sys/prctl.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

struct bn_ll_ruleset_attr { uint64_t handled_access_fs; };
struct bn_ll_path_beneath { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));
#define BN_LL_CREATE_RULESET_VERSION (1U << 0)
#define BN_LL_RULE_PATH_BENEATH 1

int bn_landlock_abi(void)
{
    long r = syscall(SYS_landlock_create_ruleset, NULL, 0, BN_LL_CREATE_RULESET_VERSION);
    return r < 0 ? -errno : (int)r;
}

int bn_landlock_create(uint64_t handled_fs)
{
    struct bn_ll_ruleset_attr a = {handled_fs};
    long r = syscall(SYS_landlock_create_ruleset, &a, sizeof a, 0);
    return r < 0 ? -errno : (int)r;
}

int bn_landlock_allow(int ruleset, int fd, uint64_t access)
{
    struct bn_ll_path_beneath pb = {access, fd};
    return bn_neg((int)syscall(SYS_landlock_add_rule, ruleset, BN_LL_RULE_PATH_BENEATH, &pb, 0));
}

int bn_landlock_restrict(int ruleset)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return bn_neg((int)syscall(SYS_landlock_restrict_self, ruleset, 0));
}

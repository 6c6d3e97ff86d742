/* LD_PRELOAD shim for the kill harness: counts the file and database mutations of one process and
 * raises SIGKILL just before the k-th.
 *
 * Counted: rename, renameat, renameat2, unlink, unlinkat, mkdir, mkdirat, fsync, fdatasync (SQLite's WAL
 * commits call fdatasync/fsync, so database commits are kill points too).
 *
 * Environment:
 *   CERTMGR_KILL_AT=k        raise SIGKILL instead of performing the k-th mutation (unset or 0: never)
 *   CERTMGR_KILL_LOG=FILE    append one line per mutation: "<n> <op> <path>" (the log of an unkilled run
 *                            gives N and names each kill point)
 * Only the process that loaded the shim first counts: children (keygen pools, hooks) inherit LD_PRELOAD
 * but not the role, so the numbering of the certmgr process stays deterministic.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static long kill_at = 0;
static long count = 0;
static pid_t owner = 0;
static int log_fd = -1;

__attribute__((constructor)) static void shim_init(void) {
    const char *role = getenv("CERTMGR_KILL_OWNER");
    if (role != NULL && *role) {
        return; /* an exec'd child of the counted process: stay passive */
    }
    owner = getpid();
    char buffer[32];
    snprintf(buffer, sizeof buffer, "%ld", (long)owner);
    setenv("CERTMGR_KILL_OWNER", buffer, 1);
    const char *at = getenv("CERTMGR_KILL_AT");
    kill_at = at ? strtol(at, NULL, 10) : 0;
    const char *log = getenv("CERTMGR_KILL_LOG");
    if (log != NULL && *log) {
        log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
}

static void describe_fd(int fd, char *out, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* Called before each mutation; never returns on the k-th. */
static void mutation(const char *op, const char *path) {
    if (owner == 0 || getpid() != owner) {
        return; /* a forked child */
    }
    long n = __atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST);
    if (log_fd >= 0) {
        char line[PATH_MAX + 64];
        int len = snprintf(line, sizeof line, "%ld %s %s\n", n, op, path ? path : "?");
        if (len > 0) {
            ssize_t ignored = write(log_fd, line, (size_t)(len < (int)sizeof line ? len : (int)sizeof line - 1));
            (void)ignored;
        }
    }
    if (kill_at > 0 && n == kill_at) {
        raise(SIGKILL);
    }
}

#define REAL(name) static __typeof__(name) *real_##name = NULL; \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int rename(const char *old, const char *new) {
    REAL(rename);
    mutation("rename", new);
    return real_rename(old, new);
}

int renameat(int olddirfd, const char *old, int newdirfd, const char *new) {
    REAL(renameat);
    mutation("renameat", new);
    return real_renameat(olddirfd, old, newdirfd, new);
}

int renameat2(int olddirfd, const char *old, int newdirfd, const char *new, unsigned int flags) {
    REAL(renameat2);
    mutation("renameat2", new);
    return real_renameat2(olddirfd, old, newdirfd, new, flags);
}

int unlink(const char *path) {
    REAL(unlink);
    mutation("unlink", path);
    return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat);
    mutation((flags & AT_REMOVEDIR) ? "rmdir" : "unlinkat", path);
    return real_unlinkat(dirfd, path, flags);
}

int rmdir(const char *path) {
    REAL(rmdir);
    mutation("rmdir", path);
    return real_rmdir(path);
}

int mkdir(const char *path, mode_t mode) {
    REAL(mkdir);
    mutation("mkdir", path);
    return real_mkdir(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
    REAL(mkdirat);
    mutation("mkdirat", path);
    return real_mkdirat(dirfd, path, mode);
}

/* fsync and fdatasync name the file they flush (SQLite's WAL, a store's temp file or folder) */
static void fd_mutation(const char *op, int fd) {
    char path[PATH_MAX];
    describe_fd(fd, path, sizeof path);
    mutation(op, path);
}

int fsync(int fd) {
    REAL(fsync);
    fd_mutation("fsync", fd);
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    fd_mutation("fdatasync", fd);
    return real_fdatasync(fd);
}

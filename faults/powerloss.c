/*
 * Power-loss journal for the fault runner (faults/powerloss.ts compiles this at run time
 * with gcc; no binary is committed). Loaded with LD_PRELOAD into a member process, it
 * wraps the libc calls that make data durable and appends one line per event to the file
 * named by PLEXUS_POWERLOSS_JOURNAL (absolute paths):
 *
 *   O <size> <path>   first open of an existing file: its size then (durable unless written since)
 *   C <path>          a file created by open(O_CREAT)
 *   S <size> <path>   fsync/fdatasync returned: the size the file had when the call started is durable
 *   W <end> <path>    a write through an O_SYNC/O_DSYNC descriptor returned: durable up to its end
 *   T <size> <path>   (f)truncate to size
 *   R <old> <new>     rename
 *   U <path>          unlink
 *
 * Nothing is changed in what the calls do. On a simulated power loss the runner kills the
 * process with SIGKILL and cuts every file back to what the journal says was durable
 * (powerloss.ts). Journal lines are single write(2) calls on an O_APPEND descriptor, so a
 * SIGKILL never leaves half a line; a sync is journalled only after it returned.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

static int journal_fd = -2;
static unsigned char sync_fd[MAX_FDS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *real(const char *name) { return dlsym(RTLD_NEXT, name); }

static int journal(void) {
  if (journal_fd == -2) {
    pthread_mutex_lock(&lock);
    if (journal_fd == -2) {
      const char *p = getenv("PLEXUS_POWERLOSS_JOURNAL");
      int (*ropen)(const char *, int, ...) = real("open");
      journal_fd = p && *p ? ropen(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    }
    pthread_mutex_unlock(&lock);
  }
  return journal_fd;
}

static void emit(const char *fmt, ...) {
  int fd = journal();
  if (fd < 0) return;
  char line[3 * PATH_MAX + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n <= 0 || n >= (int)sizeof line) return;
  int saved = errno;
  ssize_t (*rwrite)(int, const void *, size_t) = real("write");
  rwrite(fd, line, (size_t)n);
  errno = saved;
}

/* Absolute path of a name relative to dirfd (AT_FDCWD or a directory descriptor). */
static int abs_path(int dirfd, const char *name, char *out) {
  if (name[0] == '/') return snprintf(out, PATH_MAX, "%s", name) < PATH_MAX ? 0 : -1;
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (!getcwd(base, sizeof base)) return -1;
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof base - 1);
    if (n < 0) return -1;
    base[n] = 0;
  }
  return snprintf(out, PATH_MAX, "%s/%s", base, name) < PATH_MAX ? 0 : -1;
}

static int fd_path(int fd, char *out) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, PATH_MAX - 1);
  if (n < 0) return -1;
  out[n] = 0;
  return strstr(out, " (deleted)") ? -1 : 0;
}

static int is_regular(int fd, off_t *size) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  *size = st.st_size;
  return 1;
}

static int before_open(int dirfd, const char *path, int flags, char *abs) {
  if (!path || journal() < 0 || abs_path(dirfd, path, abs) != 0) return -1;
  struct stat st;
  return stat(abs, &st) == 0 ? 1 : 0; /* existed before */
}

static void after_open(int fd, int flags, int existed, const char *abs) {
  if (fd < 0 || existed < 0) return;
  off_t size;
  if (!is_regular(fd, &size)) return;
  if (fd < MAX_FDS) sync_fd[fd] = (flags & (O_SYNC | O_DSYNC)) ? 1 : 0;
  if (!existed && (flags & O_CREAT)) emit("C %s\n", abs);
  else emit("O %lld %s\n", (long long)size, abs);
  if (flags & O_TRUNC) emit("T 0 %s\n", abs);
}

static int mode_of(int flags, va_list ap) { return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, int) : 0; }

#define OPEN_WRAPPER(NAME)                                            \
  int NAME(const char *path, int flags, ...) {                        \
    va_list ap;                                                       \
    va_start(ap, flags);                                              \
    int mode = mode_of(flags, ap);                                    \
    va_end(ap);                                                       \
    char abs[PATH_MAX];                                               \
    int existed = before_open(AT_FDCWD, path, flags, abs);            \
    int (*f)(const char *, int, ...) = real(#NAME);                   \
    int fd = f(path, flags, mode);                                    \
    after_open(fd, flags, existed, abs);                              \
    return fd;                                                        \
  }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(NAME)                                          \
  int NAME(int dirfd, const char *path, int flags, ...) {             \
    va_list ap;                                                       \
    va_start(ap, flags);                                              \
    int mode = mode_of(flags, ap);                                    \
    va_end(ap);                                                       \
    char abs[PATH_MAX];                                               \
    int existed = before_open(dirfd, path, flags, abs);               \
    int (*f)(int, const char *, int, ...) = real(#NAME);              \
    int fd = f(dirfd, path, flags, mode);                             \
    after_open(fd, flags, existed, abs);                              \
    return fd;                                                        \
  }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

int creat(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

int close(int fd) {
  if (fd >= 0 && fd < MAX_FDS) sync_fd[fd] = 0;
  int (*f)(int) = real("close");
  return f(fd);
}

/* After a write through an O_SYNC/O_DSYNC descriptor: its end is durable. */
static void synced_write(int fd, ssize_t n, off_t end) {
  if (n <= 0 || fd < 0 || fd >= MAX_FDS || !sync_fd[fd] || journal() < 0) return;
  char p[PATH_MAX];
  if (fd_path(fd, p) == 0) emit("W %lld %s\n", (long long)end, p);
}

ssize_t write(int fd, const void *buf, size_t len) {
  ssize_t (*f)(int, const void *, size_t) = real("write");
  ssize_t n = f(fd, buf, len);
  if (n > 0 && fd < MAX_FDS && sync_fd[fd]) synced_write(fd, n, lseek(fd, 0, SEEK_CUR));
  return n;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  ssize_t (*f)(int, const struct iovec *, int) = real("writev");
  ssize_t n = f(fd, iov, cnt);
  if (n > 0 && fd < MAX_FDS && sync_fd[fd]) synced_write(fd, n, lseek(fd, 0, SEEK_CUR));
  return n;
}

#define PWRITE_WRAPPER(NAME)                                          \
  ssize_t NAME(int fd, const void *buf, size_t len, off_t off) {      \
    ssize_t (*f)(int, const void *, size_t, off_t) = real(#NAME);     \
    ssize_t n = f(fd, buf, len, off);                                 \
    synced_write(fd, n, off + n);                                     \
    return n;                                                         \
  }
PWRITE_WRAPPER(pwrite)
PWRITE_WRAPPER(pwrite64)

#define PWRITEV_WRAPPER(NAME)                                                 \
  ssize_t NAME(int fd, const struct iovec *iov, int cnt, off_t off) {         \
    ssize_t (*f)(int, const struct iovec *, int, off_t) = real(#NAME);        \
    ssize_t n = f(fd, iov, cnt, off);                                         \
    synced_write(fd, n, off + n);                                             \
    return n;                                                                 \
  }
PWRITEV_WRAPPER(pwritev)
PWRITEV_WRAPPER(pwritev64)

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
  ssize_t (*f)(int, const struct iovec *, int, off_t, int) = real("pwritev2");
  ssize_t n = f(fd, iov, cnt, off, flags);
  if (off >= 0) synced_write(fd, n, off + n);
  else if (n > 0 && fd < MAX_FDS && sync_fd[fd]) synced_write(fd, n, lseek(fd, 0, SEEK_CUR));
  return n;
}

static int synced(int fd, int (*f)(int)) {
  off_t size = -1;
  char p[PATH_MAX];
  int track = journal() >= 0 && is_regular(fd, &size) && fd_path(fd, p) == 0;
  int r = f(fd);
  if (r == 0 && track) emit("S %lld %s\n", (long long)size, p);
  return r;
}

int fsync(int fd) { return synced(fd, real("fsync")); }
int fdatasync(int fd) { return synced(fd, real("fdatasync")); }

static void truncated(const char *p, off_t len) { emit("T %lld %s\n", (long long)len, p); }

int ftruncate(int fd, off_t len) {
  int (*f)(int, off_t) = real("ftruncate");
  int r = f(fd, len);
  char p[PATH_MAX];
  if (r == 0 && journal() >= 0 && fd_path(fd, p) == 0) truncated(p, len);
  return r;
}
int ftruncate64(int fd, off_t len) { return ftruncate(fd, len); }

int truncate(const char *path, off_t len) {
  int (*f)(const char *, off_t) = real("truncate");
  int r = f(path, len);
  char p[PATH_MAX];
  if (r == 0 && journal() >= 0 && abs_path(AT_FDCWD, path, p) == 0) truncated(p, len);
  return r;
}

static void renamed(int olddir, const char *o, int newdir, const char *n) {
  char a[PATH_MAX], b[PATH_MAX];
  if (journal() >= 0 && abs_path(olddir, o, a) == 0 && abs_path(newdir, n, b) == 0) emit("R %s %s\n", a, b);
}

int rename(const char *o, const char *n) {
  int (*f)(const char *, const char *) = real("rename");
  int r = f(o, n);
  if (r == 0) renamed(AT_FDCWD, o, AT_FDCWD, n);
  return r;
}

int renameat(int od, const char *o, int nd, const char *n) {
  int (*f)(int, const char *, int, const char *) = real("renameat");
  int r = f(od, o, nd, n);
  if (r == 0) renamed(od, o, nd, n);
  return r;
}

int renameat2(int od, const char *o, int nd, const char *n, unsigned flags) {
  int (*f)(int, const char *, int, const char *, unsigned) = real("renameat2");
  int r = f(od, o, nd, n, flags);
  if (r == 0) renamed(od, o, nd, n);
  return r;
}

static void unlinked(int dirfd, const char *path) {
  char p[PATH_MAX];
  if (journal() >= 0 && abs_path(dirfd, path, p) == 0) emit("U %s\n", p);
}

int unlink(const char *path) {
  char p[PATH_MAX];
  int have = journal() >= 0 && abs_path(AT_FDCWD, path, p) == 0;
  int (*f)(const char *) = real("unlink");
  int r = f(path);
  if (r == 0 && have) emit("U %s\n", p);
  return r;
}

int unlinkat(int dirfd, const char *path, int flags) {
  int (*f)(int, const char *, int) = real("unlinkat");
  int r = f(dirfd, path, flags);
  if (r == 0 && !(flags & AT_REMOVEDIR)) unlinked(dirfd, path);
  return r;
}

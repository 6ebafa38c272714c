/*
 * sigsafe.c - formatting and output helpers for code that runs in the fault handler.
 *
 * Part of the async-signal-safe island (layer 4). Everything here may run in a signal
 * handler on an alternate signal stack: no malloc, no stdio, no locks, only system
 * calls that POSIX or Linux document as async-signal-safe. Lines are formatted into a
 * fixed buffer on the caller's stack and written with one write(2) each, so a line is
 * never split between two writers and a reader sees whole lines.
 */
#include "island.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

/* async-signal-safe */
void vms__line_reset(struct vms__line *l)
{
    l->len = 0;
    l->cut = false;
}

/* async-signal-safe: appends one byte, or marks the line cut when it is full. */
void vms__line_char(struct vms__line *l, char c)
{
    if (l->len < VMS__LINE_MAX) l->buf[l->len++] = c;
    else l->cut = true;
}

/* async-signal-safe */
void vms__line_strn(struct vms__line *l, const char *s, size_t n)
{
    for (size_t i = 0; i < n && s[i]; i++) vms__line_char(l, s[i]);
}

/* async-signal-safe: NULL appends "(null)" so that a missing name never crashes. */
void vms__line_str(struct vms__line *l, const char *s)
{
    if (!s) s = "(null)";
    while (*s) vms__line_char(l, *s++);
}

/* async-signal-safe: a task or thread name, quoted by the caller. Control characters
 * and quotes become '?' (as in debug.c's one-line reports), so that a name can neither
 * end a report line early nor forge one. */
void vms__line_name(struct vms__line *l, const char *s)
{
    if (!s) s = "";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        vms__line_char(l, (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c);
    }
}

/* async-signal-safe */
void vms__line_hex(struct vms__line *l, uintptr_t v, unsigned width)
{
    char tmp[2 * sizeof v];
    unsigned n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    if (width > sizeof tmp) width = sizeof tmp;
    vms__line_char(l, '0');
    vms__line_char(l, 'x');
    for (unsigned i = n; i < width; i++) vms__line_char(l, '0');
    while (n) vms__line_char(l, tmp[--n]);
}

/* async-signal-safe */
void vms__line_udec(struct vms__line *l, unsigned long long v)
{
    char tmp[20];
    unsigned n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) vms__line_char(l, tmp[--n]);
}

/* async-signal-safe: handles LLONG_MIN, whose negation does not fit a long long. */
void vms__line_dec(struct vms__line *l, long long v)
{
    if (v < 0) {
        vms__line_char(l, '-');
        vms__line_udec(l, (unsigned long long)-(v + 1) + 1);
    } else {
        vms__line_udec(l, (unsigned long long)v);
    }
}

/* async-signal-safe: buf has 8 spare bytes beyond VMS__LINE_MAX for the ending. */
size_t vms__line_finish(struct vms__line *l)
{
    if (l->cut) {
        l->buf[l->len++] = '.';
        l->buf[l->len++] = '.';
        l->buf[l->len++] = '.';
    }
    l->buf[l->len++] = '\n';
    l->buf[l->len] = '\0';
    return l->len;
}

/* async-signal-safe: waits until fd accepts more, at most timeout_ms. 0 when it does, or
 * a negative errno. ppoll(2) as a raw system call: the libc wrapper is a cancellation
 * point (see vms__sigsafe_write_mode). */
static int wait_writable(int fd, int timeout_ms)
{
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT, .revents = 0 };
        struct timespec ts = { (time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000L };
        long r = syscall(SYS_ppoll, &pfd, 1UL, &ts, NULL, 0UL);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) return -ETIMEDOUT;
        if (pfd.revents & POLLNVAL) return -EBADF;
        return 0;
    }
}

/* async-signal-safe: fstat(2) and fcntl(2) are on POSIX's list. Memory character
 * devices (Linux major 1: /dev/null, /dev/zero, /dev/full) never wait either. */
int vms__sigsafe_fd_mode(int fd)
{
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) return -EBADF;
    if (S_ISREG(sb.st_mode) || S_ISBLK(sb.st_mode) ||
        (S_ISCHR(sb.st_mode) && major(sb.st_rdev) == 1))
        return VMS__FD_DIRECT;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -EBADF;
    return (fl & O_NONBLOCK) ? VMS__FD_NONBLOCK : VMS__FD_POLL;
}

/* async-signal-safe: ppoll(2) and write(2) as raw system calls: the libc wrappers are
 * cancellation points, and a thread with a pending cancellation request must not exit
 * from inside the fault handler while it holds the report lock. A pipe whose reader
 * went away gives EPIPE here (SIGPIPE is blocked by the caller); a full pipe whose
 * reader sleeps gives -ETIMEDOUT after timeout_ms instead of blocking forever. Only a
 * blocking fd that can wait (VMS__FD_POLL) is polled before every write; the others
 * are polled only after a write that would have blocked. */
int vms__sigsafe_write_mode(int fd, int mode, const char *p, size_t n, int timeout_ms)
{
    if (fd < 0 || mode < 0) return -EBADF;   /* poll would ignore it and time out */
    bool poll_first = mode == VMS__FD_POLL;
    while (n) {
        if (poll_first) {
            int e = wait_writable(fd, timeout_ms);
            if (e) return e;
        }
        long w = syscall(SYS_write, fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                /* Full: wait for room, bounded, before the next try. */
                int e = wait_writable(fd, timeout_ms);
                if (e) return e;
                continue;
            }
            return -errno;
        }
        if (w == 0) return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* async-signal-safe */
int vms__sigsafe_write(int fd, const char *p, size_t n, int timeout_ms)
{
    return vms__sigsafe_write_mode(fd, VMS__FD_POLL, p, n, timeout_ms);
}

/* async-signal-safe: pthread_sigmask and sigpending are plain system calls on Linux. */
void vms__sigsafe_block_sigpipe(struct vms__sigpipe_state *s)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &s->old);
    s->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

/* async-signal-safe: a SIGPIPE our writes raised is thread-directed and pending now;
 * taking it with a zero-timeout sigtimedwait keeps it from killing the process when the
 * mask is restored. One that was pending before us belongs to the program: left alone.
 * sigtimedwait is not on POSIX's list: glibc's is the rt_sigtimedwait system call, and
 * a cancellation point, which the fault handler has disabled. */
void vms__sigsafe_unblock_sigpipe(struct vms__sigpipe_state *s)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (!s->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}

/* async-signal-safe */
size_t vms__sigsafe_strlen(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* async-signal-safe */
bool vms__sigsafe_streq(const char *a, const char *b)
{
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* async-signal-safe */
bool vms__sigsafe_prefix(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++) return false;
    return true;
}

/* async-signal-safe: the raw system call, so that it works on every glibc version. */
long vms__sigsafe_gettid(void)
{
    return (long)syscall(SYS_gettid);
}

/* async-signal-safe: the raw system call, not a cancellation point (see above). */
void vms__sigsafe_sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (syscall(SYS_nanosleep, &ts, &ts) < 0 && errno == EINTR) {}
}

/* ---- /proc/self/maps ------------------------------------------------------------- */

/* async-signal-safe: parses a hex number at *p, advancing it. */
static uintptr_t parse_hex(const char **p, const char *end)
{
    uintptr_t v = 0;
    for (; *p < end; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) break;
        v = v * 16 + (uintptr_t)d;
    }
    return v;
}

/* async-signal-safe: skips one field and the blanks after it. */
static void skip_field(const char **p, const char *end)
{
    while (*p < end && **p != ' ') (*p)++;
    while (*p < end && **p == ' ') (*p)++;
}

/* async-signal-safe: one line "lo-hi perms offset dev inode [path]" into *m. */
static void parse_map(const char *p, const char *end, struct vms__map *m)
{
    m->lo = parse_hex(&p, end);
    if (p < end && *p == '-') p++;
    m->hi = parse_hex(&p, end);
    while (p < end && *p == ' ') p++;
    for (int i = 0; i < 4; i++) m->perms[i] = p + i < end ? p[i] : '-';
    m->perms[4] = '\0';
    skip_field(&p, end);                            /* to the offset */
    m->offset = parse_hex(&p, end);
    skip_field(&p, end);                            /* to the device */
    skip_field(&p, end);                            /* to the inode */
    m->inode = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) m->inode = m->inode * 10 + (unsigned)(*p - '0');
    skip_field(&p, end);                            /* to the path, if any */
    m->path = p;
    m->path_len = (size_t)(end - p);
}

/* async-signal-safe: open, read and close only, as raw system calls (the C library's are
 * cancellation points; this also runs outside the fault handler, at initialization and
 * thread start); lines longer than the buffer (a path of more than about 2,000 bytes)
 * are skipped. */
bool vms__sigsafe_maps_each(bool (*fn)(const struct vms__map *m, void *ctx), void *ctx)
{
    int fd = vms__os_open_nocancel("/proc/self/maps", O_RDONLY);
    if (fd < 0) return false;
    char buf[2048];
    size_t have = 0;
    bool skipping = false, stopped = false;
    while (!stopped) {
        ssize_t r = vms__os_read_nocancel(fd, buf + have, sizeof buf - have);
        if (r == -EINTR) continue;
        if (r <= 0) break;
        have += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < have && !stopped; i++) {
            if (buf[i] != '\n') continue;
            if (!skipping) {
                struct vms__map m;
                parse_map(buf + start, buf + i, &m);
                stopped = !fn(&m, ctx);
            }
            skipping = false;
            start = i + 1;
        }
        if (start == 0 && have == sizeof buf) {
            skipping = true;                        /* a line too long: drop its start */
            start = have;
        }
        have -= start;
        memmove(buf, buf + start, have);
    }
    vms__os_close_nocancel(fd);
    return true;
}

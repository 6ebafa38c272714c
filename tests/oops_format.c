/*
 * oops_format.c - units of the signal-safe formatting and output helpers (sigsafe.c):
 * hex, decimal, padding, truncation, and bounded writes to a full, closed or invalid fd.
 */
#include "island.h"
#include "test.h"

#include <limits.h>

static const char *fmt_hex(struct vms__line *l, uintptr_t v, unsigned width)
{
    vms__line_reset(l);
    vms__line_hex(l, v, width);
    vms__line_finish(l);
    return l->buf;
}

TEST(hex)
{
    struct vms__line l;
    ASSERT_STR_CONTAINS(fmt_hex(&l, 0, 1), "0x0\n");
    ASSERT_EQ(strcmp(fmt_hex(&l, 0, 1), "0x0\n"), 0);
    ASSERT_EQ(strcmp(fmt_hex(&l, 0xdeadbeef, 1), "0xdeadbeef\n"), 0);
    ASSERT_EQ(strcmp(fmt_hex(&l, 0x1234, 8), "0x00001234\n"), 0);
    ASSERT_EQ(strcmp(fmt_hex(&l, 0, 16), "0x0000000000000000\n"), 0);
    ASSERT_EQ(strcmp(fmt_hex(&l, UINTPTR_MAX, 1), "0xffffffffffffffff\n"), 0);
    /* A width beyond the digits of the type is clamped, never overflows. */
    ASSERT_EQ(strcmp(fmt_hex(&l, 0xab, 100), "0x00000000000000ab\n"), 0);
}

TEST(decimal)
{
    struct vms__line l;
    vms__line_reset(&l);
    vms__line_udec(&l, 0);
    vms__line_char(&l, ' ');
    vms__line_udec(&l, 262144);
    vms__line_char(&l, ' ');
    vms__line_udec(&l, ULLONG_MAX);
    vms__line_char(&l, ' ');
    vms__line_dec(&l, -42);
    vms__line_char(&l, ' ');
    vms__line_dec(&l, LLONG_MIN);
    vms__line_char(&l, ' ');
    vms__line_dec(&l, LLONG_MAX);
    vms__line_finish(&l);
    ASSERT_EQ(strcmp(l.buf, "0 262144 18446744073709551615 -42 -9223372036854775808 "
                            "9223372036854775807\n"), 0);
}

TEST(strings)
{
    struct vms__line l;
    vms__line_reset(&l);
    vms__line_str(&l, "vmstack: ");
    vms__line_strn(&l, "abcdef", 3);
    vms__line_str(&l, NULL);
    size_t n = vms__line_finish(&l);
    ASSERT_EQ(strcmp(l.buf, "vmstack: abc(null)\n"), 0);
    ASSERT_EQ(n, strlen(l.buf));
    ASSERT(vms__sigsafe_streq("malloc", "malloc"));
    ASSERT(!vms__sigsafe_streq("malloc", "malloc2"));
    ASSERT(!vms__sigsafe_streq("mallo", "malloc"));
    ASSERT(vms__sigsafe_prefix("_IO_file_xsputn", "_IO_"));
    ASSERT(!vms__sigsafe_prefix("_I", "_IO_"));
    ASSERT_EQ(vms__sigsafe_strlen("12345"), 5);
}

TEST(truncation)
{
    struct vms__line l;
    vms__line_reset(&l);
    for (int i = 0; i < 1000; i++) vms__line_char(&l, 'x');
    vms__line_hex(&l, 0x1234, 1);
    size_t n = vms__line_finish(&l);
    ASSERT(l.cut);
    ASSERT_EQ(n, (size_t)VMS__LINE_MAX + 4);
    ASSERT_EQ(strlen(l.buf), n);
    ASSERT_EQ(strcmp(l.buf + VMS__LINE_MAX, "...\n"), 0);
    ASSERT_EQ(l.buf[VMS__LINE_MAX - 1], 'x');
    /* Exactly full is not cut. */
    vms__line_reset(&l);
    for (int i = 0; i < VMS__LINE_MAX; i++) vms__line_char(&l, 'y');
    n = vms__line_finish(&l);
    ASSERT(!l.cut);
    ASSERT_EQ(n, (size_t)VMS__LINE_MAX + 1);
}

TEST(write_pipe)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_EQ(vms__sigsafe_write(p[1], "hello\n", 6, 100), 0);
    char buf[16] = { 0 };
    ASSERT_EQ(read(p[0], buf, sizeof buf), 6);
    ASSERT_EQ(strcmp(buf, "hello\n"), 0);
    close(p[0]);
    close(p[1]);
}

TEST(write_full_pipe_times_out)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    int fl = fcntl(p[1], F_GETFL);
    fcntl(p[1], F_SETFL, fl | O_NONBLOCK);
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    while (write(p[1], junk, sizeof junk) > 0) {}
    ASSERT_EQ(errno, EAGAIN);
    /* Blocking again, as a report fd normally is: the poll timeout must end the wait. */
    fcntl(p[1], F_SETFL, fl);
    ASSERT_EQ(vms__sigsafe_write(p[1], "line\n", 5, 50), -ETIMEDOUT);
    close(p[0]);
    close(p[1]);
}

TEST(write_closed_reader_no_sigpipe)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    close(p[0]);
    struct vms__sigpipe_state ps;
    vms__sigsafe_block_sigpipe(&ps);
    ASSERT_EQ(vms__sigsafe_write(p[1], "line\n", 5, 50), -EPIPE);
    vms__sigsafe_unblock_sigpipe(&ps);
    /* Still alive (SIGPIPE's default would have killed us), and nothing is pending. */
    sigset_t pending;
    ASSERT_EQ(sigpending(&pending), 0);
    ASSERT(!sigismember(&pending, SIGPIPE));
    close(p[1]);
}

TEST(write_bad_fd)
{
    int fd = open("/dev/null", O_WRONLY);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_EQ(vms__sigsafe_write(fd, "line\n", 5, 50), -EBADF);
    ASSERT_EQ(vms__sigsafe_write(-1, "line\n", 5, 50), -EBADF);
}

/* How a report writes: without poll to files and /dev/null, poll after EAGAIN on a
 * non-blocking fd, poll first on a blocking pipe. */
TEST(fd_modes)
{
    int null = open("/dev/null", O_WRONLY);
    ASSERT_GE(null, 0);
    ASSERT_EQ(vms__sigsafe_fd_mode(null), VMS__FD_DIRECT);
    FILE *tmp = tmpfile();
    ASSERT_NOT_NULL(tmp);
    ASSERT_EQ(vms__sigsafe_fd_mode(fileno(tmp)), VMS__FD_DIRECT);
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_EQ(vms__sigsafe_fd_mode(p[1]), VMS__FD_POLL);
    fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
    ASSERT_EQ(vms__sigsafe_fd_mode(p[1]), VMS__FD_NONBLOCK);
    close(null);
    ASSERT_EQ(vms__sigsafe_fd_mode(null), -EBADF);
    ASSERT_EQ(vms__sigsafe_fd_mode(-1), -EBADF);
    ASSERT_EQ(vms__sigsafe_write_mode(null, VMS__FD_DIRECT, "x\n", 2, 50), -EBADF);
    ASSERT_EQ(vms__sigsafe_write_mode(p[1], -EBADF, "x\n", 2, 50), -EBADF);
    ASSERT_EQ(vms__sigsafe_write_mode(fileno(tmp), VMS__FD_DIRECT, "line\n", 5, 50), 0);
    char buf[16] = { 0 };
    ASSERT_EQ(pread(fileno(tmp), buf, sizeof buf, 0), 5);
    ASSERT_EQ(strcmp(buf, "line\n"), 0);
    fclose(tmp);
    close(p[0]);
    close(p[1]);
}

TEST(write_nonblocking_full_pipe_waits_then_times_out)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
    ASSERT_EQ(vms__sigsafe_write_mode(p[1], VMS__FD_NONBLOCK, "first\n", 6, 50), 0);
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    while (write(p[1], junk, sizeof junk) > 0) {}
    ASSERT_EQ(errno, EAGAIN);
    /* Full: the write's EAGAIN leads to a bounded poll, not a busy loop or a hang. */
    ASSERT_EQ(vms__sigsafe_write_mode(p[1], VMS__FD_NONBLOCK, "line\n", 5, 50), -ETIMEDOUT);
    char buf[8] = { 0 };
    ASSERT_EQ(read(p[0], buf, 6), 6);
    ASSERT_EQ(strcmp(buf, "first\n"), 0);
    close(p[0]);
    close(p[1]);
}

TEST(sleep_and_tid)
{
    vms__sigsafe_sleep_ms(1);
    ASSERT_EQ(vms__sigsafe_gettid(), (long)getpid());
}

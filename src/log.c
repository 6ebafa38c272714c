/*
 * log.c - messages for people: "vmstack: error: ..." and "vmstack: warning: ...".
 *
 * Each message is formatted into a stack buffer and written with one write(2) to stderr,
 * so lines from several threads never interleave. Not async-signal-safe (vsnprintf):
 * the fault handler has its own writer in sigsafe.c.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void vlog(const char *kind, const char *fmt, va_list ap)
{
    int saved = errno;
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "vmstack: %s: ", kind);
    if (n < 0) n = 0;
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len >= sizeof buf - 1) len = sizeof buf - 2;
    buf[len++] = '\n';
    for (size_t off = 0; off < len;) {
        /* Not the C library's write, a cancellation point: warnings are said with
         * vmstack's locks held. */
        ssize_t w = vms__os_write_nocancel(2, buf + off, len - off);
        if (w == -EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    errno = saved;
}

void vms__log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("error", fmt, ap);
    va_end(ap);
}

void vms__log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("warning", fmt, ap);
    va_end(ap);
}

void vms__log_warn_once(atomic_int *once, const char *fmt, ...)
{
    if (atomic_exchange(once, 1)) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("warning", fmt, ap);
    va_end(ap);
}

void vms__clean_name(const char *name, char out[VMS__CLEAN_NAME])
{
    size_t i = 0;
    for (; name && name[i] && i < VMS__CLEAN_NAME - 1; i++) {
        unsigned char c = (unsigned char)name[i];
        out[i] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
    }
    out[i] = '\0';
}

void vms__fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("error", fmt, ap);
    va_end(ap);
    abort();
}

/*
 * cache_nomem.c - the cache when a thread cannot have its per-thread cache (calloc fails):
 * a stack it frees is scrubbed alone, and the next owner still never sees old data, also
 * when discarding fails (fault injection). A program of its own: it replaces calloc.
 */
#include "internal.h"
#include "test.h"

#include <pthread.h>
#include <stdbool.h>
#include <vmstack.h>

/* calloc fails on a thread that asks it to (vmstack's per-thread cache is calloc'ed). */
static __thread bool calloc_fails;
extern void *__libc_calloc(size_t n, size_t size);

void *calloc(size_t n, size_t size)
{
    if (calloc_fails) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(n, size);
}

/* ASan and TSan own the allocator: a calloc of ours that calls glibc's hands their free()
 * a block they never allocated (TSan: "CHECK failed ... IsAligned"). */
#if defined(TST_ASAN) || defined(TST_TSAN)
#define SKIP_IF_SANITIZED() SKIP("replaces calloc, which the sanitizer's allocator owns")
#else
#define SKIP_IF_SANITIZED() do {} while (0)
#endif

static const char SECRET[] = "vmstack-secret-0123456789";

static void *free_without_cache(void *arg)
{
    calloc_fails = true;
    vms_stack_free(arg);
    calloc_fails = false;
    return NULL;
}

static void no_cache_child(void *arg)
{
    bool discard_fails = arg != NULL;
    enum { N = 4 };
    vms_stack *s[N];
    for (int i = 0; i < N; i++) {
        s[i] = vms_stack_alloc(64 * 1024);
        if (!s[i]) exit(10);
        char *base = vms_stack_base(s[i]);
        for (size_t off = 0; off < vms_stack_size(s[i]); off += 1024)
            memcpy(base + off, SECRET, sizeof SECRET);
    }
#ifdef VMSTACK_FAULT_INJECTION
    if (discard_fails) vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
#endif
    for (int i = 0; i < N; i++) {
        pthread_t t;
        pthread_create(&t, NULL, free_without_cache, s[i]);
        pthread_join(t, NULL);
    }
    vms__os_inject_clear();
    /* They wait in the shared list; this thread's LIFO is empty. */
    for (int i = 0; i < 2 * N; i++) {
        vms_stack *x = vms_stack_alloc(64 * 1024);
        if (!x) exit(11);
        if (memmem(vms_stack_base(x), vms_stack_size(x), SECRET, sizeof SECRET - 1)) {
            printf("stack %d shows the previous owner's data\n", i);
            exit(12);
        }
    }
    vms_stats st;
    vms_get_stats(&st);
    if (st.stacks_live != 2 * N) {
        printf("stacks_live %zu, want %d\n", st.stacks_live, 2 * N);
        exit(13);
    }
    exit(0);
}

TEST(scrub_without_thread_cache)
{
    SKIP_IF_SANITIZED();
    char out[4096];
    int st = tst_fork(no_cache_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

TEST(scrub_without_thread_cache_when_discard_fails)
{
    SKIP_IF_SANITIZED();
#ifndef VMSTACK_FAULT_INJECTION
    SKIP("built without VMSTACK_FAULT_INJECTION");
#endif
    char out[4096];
    int st = tst_fork(no_cache_child, (void *)1, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

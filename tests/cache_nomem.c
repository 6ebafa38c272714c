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
    if (discard_fails) vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
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
    NEED_FAULT_INJECTION();
    char out[4096];
    int st = tst_fork(no_cache_child, (void *)1, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

/* A thread without its per-thread cache (calloc fails) asks for a stack of a class no
 * one used while no slot can be opened (every mmap fails): NULL with ENOMEM, and the
 * same thread gets one once mmap works again. */
static void *alloc_without_cache(void *arg)
{
    (void)arg;
    calloc_fails = true;
    vms__os_inject(VMS__OP_MMAP, 1, ENOMEM, true);
    errno = 0;
    vms_stack *s = vms_stack_alloc(8 * 1024 * 1024);
    intptr_t r = s ? -1 : errno;
    vms__os_inject_clear();
    vms_stack *t = vms_stack_alloc(8 * 1024 * 1024);
    calloc_fails = false;
    if (!t) r = -2;
    else vms_stack_free(t);
    return (void *)r;
}

static void no_cache_no_slot_child(void *arg)
{
    (void)arg;
    vms_stack *warm = vms_stack_alloc(0);   /* initialized */
    if (!warm) exit(10);
    pthread_t t;
    void *r = NULL;
    pthread_create(&t, NULL, alloc_without_cache, NULL);
    pthread_join(t, &r);
    printf("without a thread cache: %ld\n", (long)(intptr_t)r);
}

TEST(alloc_without_thread_cache_when_no_slot_opens)
{
    SKIP_IF_SANITIZED();
#ifndef VMSTACK_VMAP
    SKIP("the direct backend takes its slots from malloc, which mmap injection does not fail");
#endif
    NEED_FAULT_INJECTION();
    char out[4096];
    tst_run_ok(no_cache_no_slot_child, NULL, out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "without a thread cache: %d\n", ENOMEM);
    ASSERT_STR_CONTAINS(out, want);
}

/*
 * thread_tls.c - vms threads in a program with a large static TLS. glibc carves a
 * thread's static TLS out of its own stack, which for a vms thread is small (the body
 * runs on the vmstack stack): vms_thread_create must find a size that fits, also
 * where its first guess is far too small.
 */
#include "internal.h"
#include "test.h"
#include "vmstack.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define BIG_TLS (512 * 1024)
static __thread char big_tls[BIG_TLS];

static void *use_tls(void *arg)
{
    memset(big_tls, (int)(uintptr_t)arg, sizeof big_tls);
    size_t sum = 0;
    for (size_t i = 0; i < sizeof big_tls; i += 4096) sum += (unsigned char)big_tls[i];
    return (void *)sum;
}

TEST(large_static_tls)
{
    for (uintptr_t i = 1; i <= 3; i++) {   /* the size found first, then remembered */
        pthread_t t;
        ASSERT_EQ(vms_thread_create(&t, NULL, use_tls, (void *)i), 0);
        void *r = NULL;
        ASSERT_EQ(pthread_join(t, &r), 0);
        ASSERT_UEQ((uintptr_t)r, i * (BIG_TLS / 4096));
    }
}

/* The search on EINVAL, from a C-library stack far too small for this TLS (as where the C
 * library does not say its TLS size): probe threads with default attributes find a size
 * that fits, the thread starts at it on the second try, and later threads start at it
 * at the first. In a child: its size is set there. */
static atomic_int creates, probes;
static _Atomic size_t last_size;

static void count_creates(size_t size, bool probe)
{
    atomic_fetch_add(probe ? &probes : &creates, 1);
    if (!probe) atomic_store(&last_size, size);
}

/* The C-library stack size the search starts from: 64 KiB, or the C library's least
 * (aarch64 glibc: 128 KiB, where 64 KiB is refused by pthread_attr_setstacksize). */
static size_t small_start(void)
{
    size_t s = 64 * 1024;
    return s < (size_t)PTHREAD_STACK_MIN ? (size_t)PTHREAD_STACK_MIN : s;
}

static void small_size_child(void *arg)
{
    (void)arg;
    /* Where the C library starts such a thread at that size after all, there is
     * nothing to search for (exit 40: skipped). */
    pthread_attr_t pa;
    pthread_t pt;
    if (pthread_attr_init(&pa) != 0 || pthread_attr_setstacksize(&pa, small_start()) != 0)
        exit(41);
    int e = pthread_create(&pt, &pa, use_tls, (void *)1);
    if (e == 0) {
        pthread_join(pt, NULL);
        printf("a thread starts at %zu bytes with this TLS\n", small_start());
        exit(40);
    }
    if (e != EINVAL) exit(42);
    pthread_attr_destroy(&pa);
    vms__thread_own_reset(small_start());
    vms__thread_create_hook = count_creates;
    size_t found = 0;
    for (uintptr_t i = 1; i <= 2; i++) {
        atomic_store(&creates, 0);
        atomic_store(&probes, 0);
        pthread_t t;
        void *r = NULL;
        if (vms_thread_create(&t, NULL, use_tls, (void *)i) != 0) exit(10);
        if (pthread_join(t, &r) != 0 || (uintptr_t)r != i * (BIG_TLS / 4096)) exit(11);
        printf("thread %d: %d pthread_create, %d probes, size %zu\n", (int)i,
               atomic_load(&creates), atomic_load(&probes), atomic_load(&last_size));
        if (i == 1 && (atomic_load(&creates) != 2 || atomic_load(&probes) < 2)) exit(12);
        if (i == 2 && (atomic_load(&creates) != 1 || atomic_load(&probes) != 0 ||
                       atomic_load(&last_size) != found))
            exit(13);
        found = atomic_load(&last_size);
    }
    if (found <= BIG_TLS) exit(14);
}

TEST(a_size_too_small_for_the_tls_is_found_again)
{
    /* TSan's pthread_create raises a stack size below the static TLS size plus 128 KiB
     * (sanitizer_common's AdjustStackSize): the first try at 64 KiB starts, nothing to
     * search for (seen: 1 pthread_create, 0 probes). */
    NO_TSAN("its pthread_create enlarges a stack too small for the TLS");
    char out[4096];
    int st = tst_fork(small_size_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 40) SKIP("%s", out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

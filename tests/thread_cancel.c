/*
 * thread_cancel.c - no vmstack function is a cancellation point: a thread with a pending
 * deferred cancellation request that calls vmstack (its first use in the process, a
 * thread start after an object was loaded, vms_thread_create, vms_get_stats, a new
 * arena) gets its answer, and the request acts at its next cancellation point, outside
 * vmstack. vmstack used to call the C library's open, read, write and close, which are
 * cancellation points, with its locks (and, reading symbols, the C library's loader
 * lock) held: the thread ended there and every later user of those locks waited for
 * ever. Each case runs in a child process and checks that vmstack returned before
 * anything else touches a lock the cancelled thread may have kept.
 */
#include "test.h"
#include "internal.h"
#include "island.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

static void *echo(void *arg) { return arg; }

/* What a thread did before its pending cancellation acted. */
struct call {
    int (*fn)(struct call *c);
    int result;
    int returned;            /* fn came back: set only after it did */
};

static void *cancelled_caller(void *arg)
{
    struct call *c = arg;
    pthread_cancel(pthread_self());   /* deferred: waits for a cancellation point */
    c->result = c->fn(c);
    c->returned = 1;
    pthread_testcancel();
    return NULL;
}

/* Runs c->fn on a new plain thread whose cancellation is pending; exits the child with
 * `code` unless fn returned and the thread then ended cancelled. */
static void call_cancelled(struct call *c, int code)
{
    pthread_t t;
    if (pthread_create(&t, NULL, cancelled_caller, c) != 0) _exit(code);
    void *r = NULL;
    if (pthread_join(t, &r) != 0) _exit(code + 1);
    if (!c->returned) {
        printf("cancelled inside vmstack\n");
        fflush(stdout);
        _exit(code + 2);   /* nothing more: vmstack's locks may be held for good */
    }
    if (r != PTHREAD_CANCELED) _exit(code + 3);
}

static int create_and_detach(struct call *c)
{
    (void)c;
    pthread_t t;
    int e = vms_thread_create(&t, NULL, echo, NULL);
    if (e == 0) pthread_detach(t);
    return e;
}

/* Everything still works afterwards: the locks were given back. */
static void still_works(int code)
{
    pthread_t t;
    void *r = NULL;
    if (vms_thread_create(&t, NULL, echo, (void *)7) != 0) _exit(code);
    if (pthread_join(t, &r) != 0 || r != (void *)7) _exit(code + 1);
    vms_stack *s = vms_stack_alloc(0);
    if (!s) _exit(code + 2);
    vms_stack_free(s);
}

/* vmstack's first use in the process (its initialization: the guard probe, reading the
 * loaded objects' symbols) from vms_thread_create on a thread being cancelled. It used
 * to end there holding the initialization lock: the next first use waited for ever. */
static void first_use_child(void *arg)
{
    (void)arg;
    struct call c = { create_and_detach, -1, 0 };
    call_cancelled(&c, 10);
    if (c.result != 0) _exit(14);
    still_works(20);
}

TEST(first_use_from_a_thread_being_cancelled)
{
    char out[4096];
    tst_run_ok(first_use_child, NULL, out, sizeof out);
}

/* A plain thread's first call after an object was loaded reads that object's symbols
 * (inside dl_iterate_phdr). The thread used to end there, holding vmstack's symbol lock
 * and the C library's loader lock: later thread starts, dlopen and C++ throws hung. */
static int alloc_and_free(struct call *c)
{
    (void)c;
    vms_stack *s = vms_stack_alloc(0);
    if (!s) return -errno;
    vms_stack_free(s);
    return 0;
}

static void after_dlopen_child(void *arg)
{
    (void)arg;
    if (alloc_and_free(NULL) != 0) _exit(9);   /* initialized, objects read */
    if (!dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL)) _exit(8);
    struct call c = { alloc_and_free, -1, 0 };
    call_cancelled(&c, 10);
    if (c.result != 0) _exit(14);
    still_works(20);
    if (!dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL)) _exit(30);   /* the loader's lock */
}

TEST(symbols_read_by_a_thread_being_cancelled)
{
    char out[4096];
    tst_run_ok(after_dlopen_child, NULL, out, sizeof out);
}

/* A vms thread cancelled before its start routine has run vmstack's part (here held up
 * at the symbol table until the request is sent, an object having been loaded since):
 * its body runs and the request acts at the body's first cancellation point, so the
 * body's stack comes back. It used to end in vmstack's thread start: the body never
 * ran, its stack was never freed, and the symbol and loader locks stayed held. */
static volatile int body_ran;

static void *body_runs(void *arg)
{
    body_ran = 1;
    pthread_testcancel();
    return arg;
}

static void thread_start_child(void *arg)
{
    (void)arg;
    if (alloc_and_free(NULL) != 0) _exit(9);
    if (!dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL)) _exit(8);
    vms_stats s0, s1;
    if (vms_get_stats(&s0) != 0) _exit(10);
    pthread_t t;
    vms__trace_fork_lock();               /* the new thread waits at the symbol table */
    int e = vms_thread_create(&t, NULL, body_runs, (void *)5);
    if (e == 0) pthread_cancel(t);
    vms__trace_fork_unlock(false);
    if (e != 0) _exit(11);
    void *r = NULL;
    if (pthread_join(t, &r) != 0) _exit(12);
    if (!body_ran) {
        printf("the thread ended in vmstack's thread start\n");
        fflush(stdout);
        _exit(13);
    }
    if (r != PTHREAD_CANCELED) _exit(14);
    if (vms_get_stats(&s1) != 0) _exit(15);
    if (s1.stacks_live != s0.stacks_live) {
        printf("stacks live %zu, before %zu\n", s1.stacks_live, s0.stacks_live);
        fflush(stdout);
        _exit(16);
    }
    still_works(20);
}

TEST(thread_cancelled_before_its_body_gives_its_stack_back)
{
    char out[4096];
    tst_run_ok(thread_start_child, NULL, out, sizeof out);
}

/* vms_get_stats reads /proc (the resident pages, the mappings): it used to be ended
 * there (and a request that came while a file was open leaked it). */
static int stats(struct call *c)
{
    (void)c;
    vms_stats s;
    return vms_get_stats(&s);
}

static void stats_child(void *arg)
{
    (void)arg;
    if (alloc_and_free(NULL) != 0) _exit(9);
    struct call c = { stats, -1, 0 };
    call_cancelled(&c, 10);
    if (c.result != 0) _exit(14);
    still_works(20);
}

TEST(stats_on_a_thread_being_cancelled)
{
    char out[4096];
    tst_run_ok(stats_child, NULL, out, sizeof out);
}

/* A new arena under RLIMIT_AS reads /proc/self/statm with the size class's lock held
 * (and with mprotect guards the mapping count, /proc/self/maps): that class's stacks
 * could no longer be had by anyone once a thread was cancelled there. */
static int alloc_new_class(struct call *c)
{
    (void)c;
    vms_stack *s = vms_stack_alloc(2 * VMS_MIB);   /* a class nothing used before */
    if (!s) return -errno;
    vms_stack_free(s);
    return 0;
}

static void new_arena_child(void *arg)
{
    (void)arg;
    if (alloc_and_free(NULL) != 0) _exit(9);
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0) _exit(8);
    r.rlim_cur = (rlim_t)1 << 46;             /* far above any need: only set */
    if (r.rlim_max != RLIM_INFINITY && r.rlim_cur > r.rlim_max) r.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_AS, &r) != 0) _exit(7);
    struct call c = { alloc_new_class, -1, 0 };
    call_cancelled(&c, 10);
    if (c.result != 0) _exit(14);
    if (alloc_new_class(NULL) != 0) _exit(15);
    still_works(20);
}

TEST(new_arena_on_a_thread_being_cancelled)
{
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("a sanitizer's shadow memory does not fit under RLIMIT_AS");
#endif
    char out[4096];
    tst_run_ok(new_arena_child, NULL, out, sizeof out);
}

/*
 * track.c - ASan's view of tasks (src/track.h) on the unusual paths: a fiber killed, a
 * fiber destroyed while suspended, a killed fiber's cleanup regions, fibers unwound by
 * pthread_exit. The program runs with detect_stack_use_after_return=1 (fake stacks, the
 * default of newer clang runtimes), which these cases need; in other builds they skip.
 * (TSan's and Valgrind's registrations on the same paths were checked by hand at stop
 * 28 and found complete; no case here could fail without them.)
 */
#include "test.h"
#include "task_work.h"

#include <vmstack.h>

#include <stdatomic.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define TRACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRACK_ASAN 1
#endif
#endif
#ifdef TRACK_ASAN
#include <sanitizer/asan_interface.h>

const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_stack_use_after_return=1";
}
#define NEED_ASAN() do {} while (0)
#else
#define NEED_ASAN() SKIP("needs an ASan build (-DVMSTACK_SANITIZE=address)")
#endif

/* A frame with a local that ASan puts on the fake stack (under
 * detect_stack_use_after_return); returns the thread's current fake stack, NULL without
 * one (or without ASan). */
static NOIPA void *fake_stack_now(void)
{
    volatile char buf[64];
    buf[0] = 1;
    (void)buf[0];
#ifdef TRACK_ASAN
    return __asan_get_current_fake_stack();
#else
    return NULL;
#endif
}

/* Whether the page at p is mapped: msync fails with ENOMEM on an unmapped range. */
static int mapped(const void *p)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    int r = msync((void *)((uintptr_t)p & ~(page - 1)), page, MS_ASYNC);
    if (r != 0 && errno != ENOMEM) TST_FAIL("msync: %s", strerror(errno));
    return r == 0;
}

static void yield_with_fake_stack(void *arg)
{
    *(void **)arg = fake_stack_now();
    vms_fiber_yield();
}

/* ASan frees a fiber's fake stack only when the fiber leaves for good; one destroyed
 * while suspended had its fake stack (about 3 MiB of address space) leak, at every
 * such destroy. */
TEST(asan_suspended_fiber_destroyed_frees_its_fake_stack)
{
    NEED_ASAN();
    for (int i = 0; i < 3; i++) {
        void *fake = NULL;
        vms_fiber *f = vms_fiber_create(yield_with_fake_stack, &fake, NULL);
        ASSERT(f);
        ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
        if (!fake) SKIP("no fake stacks (detect_stack_use_after_return=0 in ASAN_OPTIONS?)");
        ASSERT(fake != fake_stack_now());   /* the fiber's own, not the thread's */
        ASSERT(mapped(fake));
        vms_fiber_destroy(f);
        ASSERT(!mapped(fake));
        ASSERT(fake_stack_now() != fake);   /* the thread runs on its own fake stack */
    }
}

static void overflow(void *arg)
{
    *(void **)arg = fake_stack_now();
    sink += recurse(0, 0);
}

static void kill_child(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        void *fake = NULL;
        vms_fiber *f = vms_fiber_create(overflow, &fake, NULL);
        if (!f) _exit(2);
        if (vms_fiber_resume(f) != VMS_KILLED) _exit(3);
        if (!fake) SKIP("no fake stacks (detect_stack_use_after_return=0 in ASAN_OPTIONS?)");
        vms_fiber_destroy(f);
        if (mapped(fake)) _exit(4);   /* the killed fiber's fake stack went with it */
    }
    printf("three kills survived\n");
}

/* The kill freed the fiber's fake stack (where the fault handler's frames keep their
 * locals under ASan) before it was done with those locals: the handler died of a SEGV
 * in sigfillset, and the process with it, at every overflow. */
TEST(asan_kill_with_fake_stacks_kills_the_fiber_only)
{
    NEED_ASAN();
    need_guards();
    char out[65536];
    tst_run_ok(kill_child, NULL, out, sizeof out);
    ASSERT_EQ(tst_count(out, "killed fiber"), 3);
    ASSERT(strstr(out, "three kills survived"));
    ASSERT(!strstr(out, "AddressSanitizer"));
}

#ifdef __GLIBC__
void _pthread_cleanup_push(struct _pthread_cleanup_buffer *buf, void (*fn)(void *), void *arg);
void _pthread_cleanup_pop(struct _pthread_cleanup_buffer *buf, int execute);
#endif

static atomic_int handlers_run[3];   /* the killed fiber's two, the thread's own */

static void count_handler(void *arg)
{
    atomic_fetch_add(&handlers_run[(uintptr_t)arg], 1);
}

/* Under ASan the cleanup buffers, locals, are on the fiber's fake stack. */
static void overflows_in_cleanup_regions(void *arg)
{
    (void)arg;
#ifdef __GLIBC__
    struct _pthread_cleanup_buffer old;
    _pthread_cleanup_push(&old, count_handler, (void *)1);
#endif
    pthread_cleanup_push(count_handler, (void *)0);
    sink += recurse(0, 0);
    pthread_cleanup_pop(0);
#ifdef __GLIBC__
    _pthread_cleanup_pop(&old, 0);
#endif
}

static void *exits_after_kill(void *arg)
{
    pthread_cleanup_push(count_handler, (void *)2);
    vms_fiber *f = vms_fiber_create(overflows_in_cleanup_regions, NULL, NULL);
    if (!f || vms_fiber_resume(f) != VMS_KILLED) return NULL;
    pthread_exit(arg);
    pthread_cleanup_pop(0);
    return NULL;
}

static void cleanup_child(void *arg)
{
    (void)arg;
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, exits_after_kill, (void *)42) != 0) _exit(2);
    if (pthread_join(t, &r) != 0 || r != (void *)42) _exit(3);
    printf("handlers run: %d %d %d\n", atomic_load(&handlers_run[0]),
           atomic_load(&handlers_run[1]), atomic_load(&handlers_run[2]));
}

/* A fiber killed inside pthread_cleanup_push regions leaves glibc's chains pointing at
 * its frames; the kill cuts them back to the resumer's. Under ASan with fake stacks the
 * buffers are on the fiber's fake stack, which the kill freed at once and the cut did
 * not know: the thread's pthread_exit followed the chain into freed memory and died. */
TEST(asan_kill_in_cleanup_regions_on_the_fake_stack_leaves_the_thread_exitable)
{
    NEED_ASAN();
    need_guards();
    char out[65536];
    tst_run_ok(cleanup_child, NULL, out, sizeof out);
    ASSERT(strstr(out, "handlers run: 0 0 1\n"));
    ASSERT(!strstr(out, "AddressSanitizer"));
}

struct exit_probe {
    void *thread_fake;   /* the thread's own fake stack */
    void *fiber_fake[2]; /* the two fibers' */
    vms_fiber *f[2];
};

static void exits(void *arg)
{
    struct exit_probe *p = arg;
    p->fiber_fake[1] = fake_stack_now();
    pthread_exit(NULL);
}

static void resumes_exits(void *arg)
{
    struct exit_probe *p = arg;
    p->fiber_fake[0] = fake_stack_now();
    p->f[1] = vms_fiber_create(exits, p, NULL);
    if (p->f[1]) vms_fiber_resume(p->f[1]);
}

static void *exit_thread(void *arg)
{
    struct exit_probe *p = arg;
    p->thread_fake = fake_stack_now();
    p->f[0] = vms_fiber_create(resumes_exits, p, NULL);
    if (p->f[0]) vms_fiber_resume(p->f[0]);
    return NULL;
}

/* pthread_exit in a fiber (two deep) unwinds the thread; ASan frees the fake stack it
 * takes for the thread's at the thread's end: the innermost fiber's, and the thread's
 * own and the outer fiber's leaked. */
TEST(asan_pthread_exit_in_fibers_frees_every_fake_stack)
{
    NEED_ASAN();
    struct exit_probe p = { 0 };
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, exit_thread, &p), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT(p.f[0] && p.f[1]);
    if (!p.thread_fake || !p.fiber_fake[0] || !p.fiber_fake[1])
        SKIP("no fake stacks (detect_stack_use_after_return=0 in ASAN_OPTIONS?)");
    ASSERT(!mapped(p.fiber_fake[1]));
    ASSERT(!mapped(p.fiber_fake[0]));
    ASSERT(!mapped(p.thread_fake));
    ASSERT_EQ(vms_fiber_state(p.f[1]), VMS_DONE);
    ASSERT_EQ(vms_fiber_state(p.f[0]), VMS_DONE);
    vms_fiber_destroy(p.f[1]);
    vms_fiber_destroy(p.f[0]);
    /* The main thread's fibers still work. */
    void *fake = NULL;
    vms_fiber *f = vms_fiber_create(yield_with_fake_stack, &fake, NULL);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    vms_fiber_destroy(f);
}

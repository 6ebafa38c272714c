/*
 * fork.c - what the child of fork inherits: the stacks the parent's other threads held
 * (their vms threads' bodies, their alternate signal stacks) and had cached are the
 * child's to reuse, what the forking thread holds stays its own, the shared lists' warm
 * budget is the child's whole; the forking thread's own stack overflowed in the child is
 * reported as in the parent; fork from inside a fiber or a vms thread's body, with the
 * child going on there (yield, return, overflow); guards in the child; vfork and
 * posix_spawn from a fiber. Each case forks its own child; both guard methods
 * (tests/task.cmake).
 */
#include "test.h"
#include "internal.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

extern char **environ;

static char out[1 << 16];

/* The slot record of the vmstack stack that address a is in, or NULL. */
static struct vms_stack *slot_of(const void *a)
{
    struct vms__where w;
    return vms__arena_where(a, &w) == VMS__WHERE_STACK ? w.st : NULL;
}

static int slot_state(const struct vms_stack *st)
{
    return (int)VMS__SLOT_STATE(st);
}

/* The calling thread's alternate signal stack's slot when it is vmstack's (not under
 * ASan, whose runtime gives each thread one that vmstack keeps), else NULL. */
static struct vms_stack *own_alt(void)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0 || (cur.ss_flags & SS_DISABLE)) return NULL;
    return slot_of(cur.ss_sp);
}

/* ---- the stacks of threads the child does not have ------------------------------- */

#define RUNNERS 3
static sem_t ready, may_end;

struct held {
    struct vms_stack *body, *alt;
};
static struct held held[RUNNERS + 1];

static void *runs_until_told(void *arg)
{
    struct held *h = arg;
    volatile char touch[8 * 1024];
    touch[0] = 1;
    h->body = slot_of((const void *)touch);
    h->alt = own_alt();
    sem_post(&ready);
    while (sem_wait(&may_end) != 0) {}
    return (void *)(uintptr_t)touch[0];
}

/* A thread vmstack did not create, with an alternate stack from vmstack (its first
 * stack allocation gives it one). */
static void *plain_runs_until_told(void *arg)
{
    struct held *h = arg;
    vms_stack_free(vms_stack_alloc(0));
    h->body = NULL;
    h->alt = own_alt();
    sem_post(&ready);
    while (sem_wait(&may_end) != 0) {}
    return NULL;
}

static void start_runners(pthread_t *t)
{
    ASSERT_EQ(sem_init(&ready, 0, 0), 0);
    ASSERT_EQ(sem_init(&may_end, 0, 0), 0);
    for (int i = 0; i < RUNNERS; i++)
        ASSERT_EQ(vms_thread_create(&t[i], NULL, runs_until_told, &held[i]), 0);
    ASSERT_EQ(pthread_create(&t[RUNNERS], NULL, plain_runs_until_told, &held[RUNNERS]), 0);
    for (int i = 0; i <= RUNNERS; i++) while (sem_wait(&ready) != 0) {}
    for (int i = 0; i < RUNNERS; i++) ASSERT_NOT_NULL(held[i].body);
}

static void end_runners(pthread_t *t)
{
    for (int i = 0; i <= RUNNERS; i++) sem_post(&may_end);
    for (int i = 0; i <= RUNNERS; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
}

/* Whether every stack the runners held is FREE here (want_free) or LIVE. */
static int runners_stacks(bool want_free)
{
    int bad = 0;
    for (int i = 0; i <= RUNNERS; i++) {
        struct vms_stack *v[2] = { held[i].body, held[i].alt };
        for (int k = 0; k < 2; k++) {
            if (!v[k]) continue;
            int s = slot_state(v[k]);
            if (s != (want_free ? VMS__SLOT_FREE : VMS__SLOT_LIVE)) {
                fprintf(stderr, "runner %d's %s stack [%p-...): state %d\n", i,
                        k ? "alternate" : "body", (void *)v[k]->base, s);
                bad++;
            }
        }
    }
    return bad;
}

static void frees_them_child(void *arg)
{
    size_t live_at_fork = *(size_t *)arg;
    /* Before the child's first reap or allocation, nothing was touched. */
    if (runners_stacks(false)) _exit(2);
    /* The first allocation frees them (the forking thread's slow path once more). */
    vms_stack *st = vms_stack_alloc(0);
    if (!st) _exit(3);
    vms_stack_free(st);
    if (runners_stacks(true)) _exit(4);
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(5);
    if (s.stacks_live != live_at_fork - RUNNERS) {
        fprintf(stderr, "child: %zu stacks live, %zu at the fork, %d of them the "
                "runners' bodies\n", s.stacks_live, live_at_fork, RUNNERS);
        _exit(6);
    }
    printf("child done\n");
}

/* The bodies and alternate stacks of the parent's other threads (vms threads and a
 * plain thread) are freed in the child, whose only thread is the forking one: before,
 * they stayed live there for good. */
TEST(child_frees_the_stacks_of_threads_it_does_not_have)
{
    pthread_t t[RUNNERS + 1];
    start_runners(t);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live = s.stacks_live;
    ASSERT_EQ(runners_stacks(false), 0);
    tst_run_ok(frees_them_child, &live, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "child done");
    ASSERT_EQ(runners_stacks(false), 0);   /* the parent's are its own */
    end_runners(t);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live - RUNNERS);
}

/* The same, where the child's first call is vms_get_stats and the child then runs
 * threads of its own: none of them is handed a stack the forking thread holds. */
static struct vms_stack *forker_body, *forker_alt;
static pthread_barrier_t child_bar;

struct seen {
    struct vms_stack *body, *alt;
};

static void *note_stacks(void *arg)
{
    struct seen *s = arg;
    volatile char here = 0;
    s->body = slot_of((const void *)&here);
    s->alt = own_alt();
    pthread_barrier_wait(&child_bar);   /* all alive at once: distinct stacks */
    return arg;
}

#define CHILD_THREADS 8

static void keeps_forkers_child(void *arg)
{
    (void)arg;
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(2);
    if (slot_state(forker_body) != VMS__SLOT_LIVE) _exit(3);
    if (forker_alt && slot_state(forker_alt) != VMS__SLOT_LIVE) _exit(4);
    if (own_alt() != forker_alt) _exit(5);
    pthread_barrier_init(&child_bar, NULL, CHILD_THREADS + 1);
    pthread_t t[CHILD_THREADS];
    struct seen seen[CHILD_THREADS];
    for (int i = 0; i < CHILD_THREADS; i++)
        if (vms_thread_create(&t[i], NULL, note_stacks, &seen[i]) != 0) _exit(6);
    pthread_barrier_wait(&child_bar);
    for (int i = 0; i < CHILD_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < CHILD_THREADS; i++)
        if (seen[i].body == forker_body || (forker_alt && seen[i].alt == forker_alt)) _exit(7);
    vms_stack *st[64];
    for (int i = 0; i < 64; i++) {
        if (!(st[i] = vms_stack_alloc(0))) _exit(8);
        if (slot_of(vms_stack_base(st[i])) == forker_body) _exit(9);
    }
    for (int i = 0; i < 64; i++) vms_stack_free(st[i]);
    if (slot_state(forker_body) != VMS__SLOT_LIVE) _exit(10);
    printf("child done\n");
}

static void *body_forks(void *arg)
{
    volatile char here = 0;
    forker_body = slot_of((const void *)&here);
    forker_alt = own_alt();
    return (void *)(intptr_t)tst_fork(keeps_forkers_child, arg, out, sizeof out);
}

TEST(child_keeps_what_the_forking_thread_holds)
{
    NO_TSAN("TSan refuses to start threads in the child of a multi-threaded fork");
    pthread_t t[RUNNERS + 1];
    start_runners(t);                        /* something for the child to free */
    pthread_t f;
    ASSERT_EQ(vms_thread_create(&f, NULL, body_forks, NULL), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(f, &r), 0);
    if (!strstr(out, "child done")) fprintf(stderr, "child's output:\n%s", out);
    ASSERT_EXITED((int)(intptr_t)r, 0);
    ASSERT_NOT_NULL(forker_body);
    end_runners(t);
}

/* ---- the warm budget ---------------------------------------------------------------- */

/* A thread holds budget of the shared lists' warm pages between deciding which of its
 * stacks stay warm and pushing them (vms__cache_flush_hook runs in between); a child
 * forked then, without that thread, gets the whole budget. */
static VMS_TLS bool hold_in_hook;
static atomic_int hook_state;

static void hold_after_claim(void)
{
    if (!hold_in_hook) return;
    atomic_store(&hook_state, 1);
    while (atomic_load(&hook_state) != 2) sched_yield();
}

static void *claims_and_waits(void *arg)
{
    (void)arg;
    vms_stack *st[8];
    for (int i = 0; i < 8; i++)
        if (!(st[i] = vms_stack_alloc(0))) return (void *)-1;
    for (int i = 0; i < 8; i++) vms_stack_free(st[i]);
    hold_in_hook = true;
    vms__cache_flush_thread();   /* scrubs the 8, claims budget for them, holds */
    hold_in_hook = false;
    return NULL;
}

static void budget_child(void *arg)
{
    (void)arg;
    size_t counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    if (counted != listed) {
        fprintf(stderr, "child: %zu warm stacks counted, %zu in the lists\n", counted, listed);
        _exit(2);
    }
}

TEST(child_gets_the_warm_budget_back)
{
    vms_stack_free(vms_stack_alloc(0));      /* initialized */
    /* Also with VMS_NO_SCRUB: the 8 stacks freed into the LIFO as their owners left
     * them are warm, and claimed for at the flush as well. */
    atomic_store(&hook_state, 0);
    vms__cache_flush_hook = hold_after_claim;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, claims_and_waits, NULL), 0);
    while (atomic_load(&hook_state) != 1) sched_yield();
    /* Its claim, for the warm stacks of its LIFO (the scrubbed ones of the 8). */
    ASSERT_GT(vms__cache_shared_warm(), vms__cache_shared_warm_listed());
    tst_run_ok(budget_child, NULL, out, sizeof out);
    atomic_store(&hook_state, 2);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    vms__cache_flush_hook = NULL;
}

/* ---- the caches of threads the child does not have ------------------------------- */

#define CACHED 40   /* freed in a row: 32 scrubbed (8 kept, 24 shared), 8 dirty */
static void *cached[CACHED];
static struct vms_stack *cached_rec[CACHED];

/* Allocates CACHED stacks, writes into their top and bottom pages, frees them all into
 * its own cache, and waits. */
static void *caches_and_waits(void *arg)
{
    (void)arg;
    vms_stack *st[CACHED];
    size_t page = vms__os_page_size();
    for (int i = 0; i < CACHED; i++) {
        st[i] = vms_stack_alloc(0);
        if (!st[i]) return (void *)-1;
        char *base = vms_stack_base(st[i]);
        memset(base, 0x5a, page);
        memset((char *)vms_stack_top(st[i]) - page, 0x5a, page);
        cached[i] = base;
        cached_rec[i] = slot_of(base);
    }
    for (int i = 0; i < CACHED; i++) vms_stack_free(st[i]);
    sem_post(&ready);
    while (sem_wait(&may_end) != 0) {}
    return NULL;
}

static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

#define CHILD_ALLOCS 400

static void takes_caches_back_child(void *arg)
{
    (void)arg;
    size_t page = vms__os_page_size();
    static vms_stack *st[CHILD_ALLOCS];
    int found = 0;
    for (int i = 0; i < CHILD_ALLOCS && found < CACHED; i++) {
        if (!(st[i] = vms_stack_alloc(0))) _exit(2);
        char *base = vms_stack_base(st[i]);
        for (int k = 0; k < CACHED; k++) {
            if (base != cached[k]) continue;
            found++;
            /* Scrubbed, also the ones that waited dirty in the other thread's cache
             * (painting and the end magic write into a stack handed out). */
            if (!(vms__opt.flags & (VMS_PAINT | VMS_END_CHECK)) &&
                (!all_zero(base, page) || !all_zero((char *)vms_stack_top(st[i]) - page, page))) {
                fprintf(stderr, "child: stack %p was handed out with old data\n", base);
                _exit(3);
            }
        }
    }
    if (found != CACHED) {
        int lost = 0;
        for (int k = 0; k < CACHED; k++) lost += slot_state(cached_rec[k]) == VMS__SLOT_FREE;
        fprintf(stderr, "child: %d of the %d stacks the other thread had freed came back "
                "(%d still free)\n", found, CACHED, lost);
        _exit(4);
    }
    printf("child done\n");
}

/* A stack another thread of the parent had cached (its LIFO, its dirty batch) is handed
 * out again in the child, scrubbed; before, it stayed FREE and unused there for good. */
TEST(child_takes_back_stacks_other_threads_cached)
{
    ASSERT_EQ(sem_init(&ready, 0, 0), 0);
    ASSERT_EQ(sem_init(&may_end, 0, 0), 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, caches_and_waits, NULL), 0);
    while (sem_wait(&ready) != 0) {}
    ASSERT_EQ(tst_distinct(cached, CACHED), CACHED);
    tst_run_ok(takes_caches_back_child, NULL, out, sizeof out);
    sem_post(&may_end);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

/* The child takes those stacks back scrubbed whole (one system call per 32). When the
 * kernel refuses to drop one of them (an mlock'd range: EINVAL), only that one may stay
 * resident, zeroed by hand: the batch kept every one of them resident, whole, and counted
 * warm. The child locks the first stack the other thread had in its LIFO (mlock is not
 * inherited) and checks the other seven of the LIFO after the takeover. Exits 77 where
 * mlock is not allowed or mincore sees no resident page (qemu-user). */
static size_t resident_pages(const void *p, size_t len)
{
    long r = tst_resident_pages(p, len);
    if (r < 0) _exit(20);
    return (size_t)r;
}

static void refused_takeover_child(void *arg)
{
    (void)arg;
    size_t size = cached_rec[0]->size, page = vms__os_page_size();
    if (tst_mlock(cached[0], size) != 0) {
        printf("mlock: %s\n", strerror(errno));
        _exit(77);
    }
    vms__stack_reap();   /* the takeover */
    size_t locked = resident_pages(cached[0], size), kept = 0;
    for (int i = 1; i < 8; i++) kept += resident_pages(cached[i], size) != 0;
    size_t counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    printf("locked stack: %zu pages resident; 7 others: %zu resident; warm %zu counted, "
           "%zu in the lists\n", locked, kept, counted, listed);
    if (locked == 0) _exit(77);   /* mincore sees no resident page (qemu-user) */
    if (locked != size / page) _exit(21);
    if (kept) _exit(22);
    if (counted != listed) _exit(23);
    printf("child done\n");
}

TEST(child_takeover_refused_for_one_stack_keeps_only_it)
{
    ASSERT_EQ(sem_init(&ready, 0, 0), 0);
    ASSERT_EQ(sem_init(&may_end, 0, 0), 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, caches_and_waits, NULL), 0);
    while (sem_wait(&ready) != 0) {}
    int st = tst_fork(refused_takeover_child, NULL, out, sizeof out);
    sem_post(&may_end);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "child done");
}

/* A fork while another thread files its scrubbed batch: the stacks it has pushed to a
 * shared list must not also be taken back from its batch by the child, which filed
 * them a second time and handed each out twice (helper 68: 5 to 16 of 100 forks beside
 * two threads that allocate and free). Here the thread stops right after its first
 * push (vms__cache_push_hook) and the fork comes then. */
static VMS_TLS bool stop_in_push;
static atomic_int push_state;

static void hold_after_push(void)
{
    if (!stop_in_push) return;
    stop_in_push = false;
    atomic_store(&push_state, 1);
    while (atomic_load(&push_state) != 2) sched_yield();
}

static void *files_a_batch(void *arg)
{
    (void)arg;
    enum { N = 40 };
    vms_stack *st[N];
    for (int i = 0; i < N; i++)
        if (!(st[i] = vms_stack_alloc(0))) return (void *)-1;
    /* The 32nd free scrubs the batch: its LIFO takes 8, the rest go to the shared list. */
    stop_in_push = true;
    for (int i = 0; i < N; i++) vms_stack_free(st[i]);
    stop_in_push = false;
    return NULL;
}

#define FILED_ALLOCS 200

static void distinct_child(void *arg)
{
    (void)arg;
    static void *bases[FILED_ALLOCS];
    for (int i = 0; i < FILED_ALLOCS; i++) {
        vms_stack *st = vms_stack_alloc(0);
        if (!st) _exit(2);
        bases[i] = vms_stack_base(st);
    }
    int d = tst_distinct(bases, FILED_ALLOCS);
    if (d != FILED_ALLOCS) {
        fprintf(stderr, "child: %d distinct stacks in %d allocations\n", d, FILED_ALLOCS);
        _exit(3);
    }
    printf("child done\n");
}

TEST(child_never_hands_out_a_stack_twice_filed_during_the_fork)
{
    vms_stack_free(vms_stack_alloc(0));      /* initialized */
    if (vms__opt.flags & VMS_NO_SCRUB) SKIP("VMS_NO_SCRUB: frees file no batch");
    if (vms__opt.cache_per_thread >= 32) SKIP("a LIFO of 32 or more takes the whole batch");
    atomic_store(&push_state, 0);
    vms__cache_push_hook = hold_after_push;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, files_a_batch, NULL), 0);
    while (atomic_load(&push_state) != 1) sched_yield();
    tst_run_ok(distinct_child, NULL, out, sizeof out);
    atomic_store(&push_state, 2);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    vms__cache_push_hook = NULL;
}

/* A fork that catches another thread between the two stores of a push to its LIFO (the
 * count first, then the entry: gcc's order) gives the child a count that includes an
 * entry not yet written. That entry named the stack last popped or flushed from there:
 * after a vms_trim, a stack free in a shared list, which the child took back from the
 * cache as well and handed out twice (seen beside two threads that allocate and free
 * with VMS_NO_SCRUB: 2 forks in 300). Here the thread trims (its LIFO goes to the shared
 * list), makes its LIFO as such a push leaves it (vms__cache_lifo_tear), and the fork
 * comes then. */
static atomic_int tear_state;

static void *trims_and_tears(void *arg)
{
    (void)arg;
    intptr_t why = 0;
    /* Twice: the thread's first allocation also gives it its alternate signal stack, and
     * its LIFO the other stacks of that class; after the second, its first entry names
     * a stack of the default size, now in the shared list. */
    for (int round = 0; round < 2 && !why; round++) {
        vms_stack *st = vms_stack_alloc(0);
        if (!st) why = 1;
        vms_stack_free(st);
        if (!why && vms_trim() != 0) why = 2;
    }
    if (!why && !vms__cache_lifo_tear(true)) why = 3;
    if (why) {
        atomic_store(&tear_state, -1);
        return (void *)why;
    }
    atomic_store(&tear_state, 1);
    while (atomic_load(&tear_state) != 2) sched_yield();
    return vms__cache_lifo_tear(false) ? NULL : (void *)4;
}

TEST(child_never_hands_out_a_stack_twice_torn_push)
{
    vms_stack_free(vms_stack_alloc(0));      /* initialized */
    if (vms__opt.cache_per_thread == 0) SKIP("no per-thread LIFO");
    atomic_store(&tear_state, 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, trims_and_tears, NULL), 0);
    while (atomic_load(&tear_state) == 0) sched_yield();
    if (atomic_load(&tear_state) == 1) tst_run_ok(distinct_child, NULL, out, sizeof out);
    atomic_store(&tear_state, 2);
    void *r = (void *)1;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, 0);
}

/* ---- the program's own fork handlers ---------------------------------------------- */

/* A fiber that another thread runs at the fork: RUNNING in the child, where it runs
 * nowhere and may be destroyed (docs/api.md), also by the program's own child handler.
 * vmstack's child work must be done before that handler runs: it was not when the
 * handler was registered before vmstack's first fiber (the fiber layer registered its
 * child handler then), nor when it was registered in a constructor of the program's
 * (a static link runs the program's constructors before vmstack's, which registered
 * the rest): the destroy was refused (EBUSY, "is running"). */
static vms_fiber *_Atomic victim;      /* the child handler named by victim_by */
static atomic_bool victim_by_late;     /* destroys it when set: the late one, or not */
static atomic_int victim_state;        /* 1: it runs; 2: it may return */
static int victim_errno = -1;          /* the child's destroy: 0 when done */

static void destroy_victim(bool late)
{
    vms_fiber *f = atomic_load(&victim);
    if (!f || atomic_load(&victim_by_late) != late) return;
    errno = 0;
    vms_fiber_destroy(f);
    victim_errno = errno;
}

static void destroy_victim_early(void)
{
    destroy_victim(false);
}

static void destroy_victim_late(void)
{
    destroy_victim(true);
}

__attribute__((constructor)) static void register_handler_early(void)
{
    (void)pthread_atfork(NULL, NULL, destroy_victim_early);
}

static void victim_runs(void *arg)
{
    (void)arg;
    atomic_store(&victim_state, 1);
    while (atomic_load(&victim_state) != 2) sched_yield();
}

static void *runs_the_victim(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)vms_fiber_resume(atomic_load(&victim));
}

static void victim_destroyed_child(void *arg)
{
    (void)arg;
    if (victim_errno != 0) {
        fprintf(stderr, "child: the fork handler's vms_fiber_destroy: %s\n",
                victim_errno < 0 ? "not called" : strerror(victim_errno));
        _exit(3);
    }
    vms_stack_free(vms_stack_alloc(0));   /* and vmstack works on */
    printf("child done\n");
}

/* A fiber of another thread, RUNNING at the fork, destroyed in a child handler of the
 * program's; register_late: one registered here, before vmstack's first fiber, else the
 * one the constructor above registered. */
static void destroy_in_handler(bool register_late)
{
    vms_fiber *f = vms_fiber_create(victim_runs, NULL, NULL);
    ASSERT_NE(f, NULL);
    if (register_late) ASSERT_EQ(pthread_atfork(NULL, NULL, destroy_victim_late), 0);
    atomic_store(&victim_by_late, register_late);
    atomic_store(&victim_state, 0);
    atomic_store(&victim, f);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, runs_the_victim, NULL), 0);
    while (atomic_load(&victim_state) != 1) sched_yield();
    tst_run_ok(victim_destroyed_child, NULL, out, sizeof out);
    atomic_store(&victim, NULL);
    atomic_store(&victim_state, 2);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, VMS_DONE);
    vms_fiber_destroy(f);
}

TEST(program_handler_registered_before_first_fiber_destroys_a_left_fiber)
{
    destroy_in_handler(true);
}

TEST(program_handler_registered_in_a_constructor_destroys_a_left_fiber)
{
    destroy_in_handler(false);
}

/* ---- a thread's own stack in the child ------------------------------------------- */

static volatile int never;

/* Recursion until the guard: a volatile frame per level. */
static NOIPA unsigned long recurse(unsigned long n)
{
    volatile char buf[128];
    buf[n % sizeof buf] = (char)n;
    if (never) return 0;
    return recurse(n + 1) + buf[(n * 7) % sizeof buf];
}

/* A thread vmstack did not create, but knows (it allocated a stack), forks, and the
 * child's thread overflows the stack it runs on, that thread's own: reported as in the
 * parent. The child's thread is its main thread (its tid is the pid), but not on the main
 * stack: it used to be judged by the main stack's range alone, and died unreported. */
static void *plain_forks_and_overflows(void *arg)
{
    (void)arg;
    vms_stack_free(vms_stack_alloc(0));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        (void)recurse(0);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return (void *)(intptr_t)st;
}

static void plain_fork_run(void *arg)
{
    (void)arg;
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, plain_forks_and_overflows, NULL) != 0) _exit(2);
    if (pthread_join(t, &r) != 0) _exit(3);
    int st = (int)(intptr_t)r;
    printf("the thread's child: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

TEST(fork_in_a_plain_thread_child_overflows_its_stack)
{
    NEED_GUARD_FAULTS();
    tst_run_ok(plain_fork_run, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "the thread's child: signal 11");
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread");
    ASSERT_STR_CONTAINS(out, "not a vmstack thread");
}

/* The same on a vms thread's C library stack: a thread-specific-data destructor of a vms
 * thread forks and the child overflows that stack. */
static pthread_key_t end_key;

static void destructor_forks(void *p)
{
    (void)p;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        (void)recurse(0);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    printf("the destructor's child: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void *sets_end_key(void *arg)
{
    pthread_setspecific(end_key, arg);
    return NULL;
}

static void destructor_fork_run(void *arg)
{
    (void)arg;
    if (pthread_key_create(&end_key, destructor_forks) != 0) _exit(2);
    pthread_t t;
    if (vms_thread_create(&t, NULL, sets_end_key, (void *)1) != 0) _exit(3);
    if (pthread_join(t, NULL) != 0) _exit(4);
}

TEST(fork_at_a_thread_end_child_overflows_its_c_library_stack)
{
    NEED_GUARD_FAULTS();
    tst_run_ok(destructor_fork_run, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "the destructor's child: signal 11");
    ASSERT_STR_CONTAINS(out, "on its C library stack, outside its body");
}

/* ---- fork from inside a task, and the child goes on there ------------------------ */

static vms_fiber *forking;
static pid_t forked_pid;

/* Forks; the child yields twice and returns, or overflows. */
static void fiber_forks(void *arg)
{
    bool overflow = arg != NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) {
        forked_pid = pid;
        return;
    }
    forked_pid = 0;
    printf("child: in the fiber, %zu bytes left\n", vms_stack_remaining());
    vms_fiber_yield();
    printf("child: resumed once\n");
    if (overflow) (void)recurse(0);
    vms_fiber_yield();
}

static void child_after_fiber_fork(bool overflow)
{
    int s = vms_fiber_resume(forking);
    if (forked_pid != 0) return;             /* the parent: the fiber returned */
    /* The child: back here from the fiber's first yield. */
    if (s != VMS_SUSPENDED) _exit(20);
    s = vms_fiber_resume(forking);
    if (s != (overflow ? VMS_KILLED : VMS_SUSPENDED)) _exit(21);
    if (!overflow && vms_fiber_resume(forking) != VMS_DONE) _exit(22);
    if (overflow && vms_fiber_oops(forking) == NULL) _exit(23);
    vms_fiber_destroy(forking);
    /* The child goes on with fibers of its own. */
    for (int i = 0; i < 50; i++) {
        vms_fiber *f = vms_fiber_create(fiber_forks, NULL, NULL);
        if (!f) _exit(24);
        vms_fiber_destroy(f);
    }
    printf("child done\n");
    fflush(NULL);
    _exit(0);
}

/* ThreadSanitizer gives every task a fiber of its own (src/track.h). In the child of a
 * fork made on a task's fiber it keeps that fiber's state as the thread's and takes the
 * locks the fork handlers released for held again when the thread's own state comes
 * back: it reports double locks and races on everything the two touched. */
#define NO_TSAN_FORK_ON_A_TASK() \
    NO_TSAN("its runtime does not follow a fork made on a task's fiber back to the thread")

static int fork_in_fiber(bool overflow)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fflush(NULL);
    forking = vms_fiber_create(fiber_forks, overflow ? (void *)1 : NULL, NULL);
    ASSERT_NOT_NULL(forking);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(p[1], 1);
    dup2(p[1], 2);
    child_after_fiber_fork(overflow);        /* the child never comes back */
    fflush(NULL);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(p[1]);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(p[0], out + n, sizeof out - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    out[n] = '\0';
    close(p[0]);
    int st = 0;
    while (waitpid(forked_pid, &st, 0) < 0 && errno == EINTR) {}
    ASSERT_EQ(vms_fiber_state(forking), VMS_DONE);   /* the parent's went on alone */
    vms_fiber_destroy(forking);
    return st;
}

TEST(fork_in_a_fiber_child_yields_and_returns)
{
    NO_TSAN_FORK_ON_A_TASK();
    int st = fork_in_fiber(false);
    if (!strstr(out, "child done")) fprintf(stderr, "child's output:\n%s", out);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "child: resumed once");
}

TEST(fork_in_a_fiber_child_overflows)
{
    NEED_GUARD_FAULTS();
    NO_TSAN_FORK_ON_A_TASK();
    int st = fork_in_fiber(true);
    if (!strstr(out, "child done")) fprintf(stderr, "child's output:\n%s", out);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber");
}

/* A vms thread's body forks and the child's thread (that body) overflows: it is
 * reported, on the alternate stack it had in the parent, and, being the child's main
 * thread, not killed alone: the child dies by SIGSEGV rather than end with status 0 as a
 * process whose last thread returned. */
static void *body_forks_and_overflows(void *arg)
{
    (void)arg;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        printf("child: body with %zu bytes left\n", vms_stack_remaining());
        fflush(NULL);
        (void)recurse(0);
        printf("child: not reached\n");
        return NULL;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return (void *)(intptr_t)st;
}

static void body_fork_run(void *arg)
{
    (void)arg;
    pthread_t t;
    if (vms_thread_create(&t, NULL, body_forks_and_overflows, NULL) != 0) _exit(2);
    void *r = NULL;
    if (pthread_join(t, &r) != 0) _exit(3);
    printf("the body's child: %s %d\n", WIFEXITED((int)(intptr_t)r) ? "exit" : "signal",
           WIFEXITED((int)(intptr_t)r) ? WEXITSTATUS((int)(intptr_t)r)
                                       : WTERMSIG((int)(intptr_t)r));
}

TEST(fork_in_a_body_child_overflows)
{
    NEED_GUARD_FAULTS();
    NO_TSAN_FORK_ON_A_TASK();
    tst_run_ok(body_fork_run, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread");
    ASSERT_STR_CONTAINS(out, "vmstack: this thread is the process's main thread (the child "
                             "of a fork made by the thread's body)");
    ASSERT_STR_CONTAINS(out, "vmstack: aborting\n");
    ASSERT_STR_CONTAINS(out, "the body's child: signal 11\n");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: killed thread");
    ASSERT_STR_NOT_CONTAINS(out, "not reached");
}

/* ---- guards in the child ----------------------------------------------------------- */

static vms_stack *untouched;

static void guards_child(void *arg)
{
    (void)arg;
    char *base = vms_stack_base(untouched);
    size_t page = vms__os_page_size();
    if (vms__os_probe_noaccess(base - page) != 1) _exit(2);          /* its guard */
    if (vms__os_probe_noaccess(base) != 0) _exit(3);                 /* its stack */
    if (vms__os_probe_noaccess(vms_stack_top(untouched)) != 1) _exit(4);  /* the one above */
    printf("child done\n");
}

/* The guards of an arena the parent never touched (a size class of its own, one stack
 * handed out, not written) fault in the child: fork copies madvise guard markers even
 * where no page was ever faulted in. */
TEST(guards_survive_fork)
{
    need_guards();
    untouched = vms_stack_alloc(256u << 20);   /* the only one of its arena */
    ASSERT_NOT_NULL(untouched);
    size_t page = vms__os_page_size();
    ASSERT_EQ(vms__os_probe_noaccess((char *)vms_stack_base(untouched) - page), 1);
    tst_run_ok(guards_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "child done");
    vms_stack_free(untouched);
}

/* ---- vfork and posix_spawn from a fiber --------------------------------------------- */

/* vfork's child runs on the fiber's stack until it calls exec; posix_spawn's on a stack
 * of the C library's own. The fiber yields between them and goes on afterwards. */
static void spawns(void *arg)
{
    int *codes = arg;
    char *sh_argv[] = { "sh", "-c", "exit 3", NULL };
    pid_t pid = vfork();
    if (pid == 0) {
        execve("/bin/sh", sh_argv, environ);
        _exit(127);
    }
    int st = -1;
    if (pid > 0) while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    codes[0] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    vms_fiber_yield();
    st = -1;
    if (posix_spawn(&pid, "/bin/sh", NULL, NULL, sh_argv, environ) == 0)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    codes[1] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    vms_fiber_yield();
    codes[2] = 1;
}

TEST(vfork_and_posix_spawn_from_a_fiber)
{
    if (access("/bin/sh", X_OK) != 0) SKIP("no /bin/sh");
    int codes[3] = { 0, 0, 0 };
    vms_fiber *f = vms_fiber_create(spawns, codes, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    ASSERT_EQ(codes[0], 3);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    ASSERT_EQ(codes[1], 3);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_EQ(codes[2], 1);
    vms_fiber_destroy(f);
}

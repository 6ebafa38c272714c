/*
 * bench_harness.c - the benchmark machinery of bench/bench.h, which `vmstack bench` and
 * the bench/ programs share: medians and ratios, targets, and what its counters count.
 * No time is asserted; the counts are exact where the work is (a case that makes k
 * system calls per operation must report k). The cases that need the perf counter skip
 * when it is unavailable (tracefs not mounted, or perf_event_open refused).
 */
#include "test.h"

#include "bench.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/mman.h>

/* Whether this process has a perf event open: the syscall counter. */
static int perf_fd_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) TST_FAIL("opendir /proc/self/fd: %s", strerror(errno));
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char path[300], link[128];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0) continue;
        link[n] = '\0';
        found = strstr(link, "perf_event") != NULL;
    }
    closedir(d);
    return found;
}

static int counter_available(void)
{
    int ok = 0;
    bench_syscalls_probe(&ok);
    return ok;
}

/* k system calls per operation, nothing else. */
static void getppid_ops(void *ctx, long n)
{
    long k = (long)(intptr_t)ctx;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < k; j++) syscall(SYS_getppid);
}

/* Notes, for each call, whether the syscall counter was open while it ran. */
struct probe { long open_calls, closed_calls, open_ops; };

static void probe_ops(void *ctx, long n)
{
    struct probe *p = (struct probe *)ctx;
    if (perf_fd_open()) {
        p->open_calls++;
        p->open_ops += n;
    } else {
        p->closed_calls++;
    }
}

TEST(median_of_odd_and_even_counts)
{
    double odd[] = { 30, 10, 20 };
    double even[] = { 4, 1, 3, 2 };
    double one[] = { 7 };
    ASSERT(bench_median(odd, 3) == 20);
    ASSERT(bench_median(even, 4) == 2.5);
    ASSERT(bench_median(one, 1) == 7);
    ASSERT(isnan(bench_median(odd, 0)));
    ASSERT(odd[0] == 30 && odd[1] == 10);          /* sorted a copy, not the rounds */
}

/* A row's ratio is the vmstack median over the baseline median; its target is met,
 * missed, or n/a when a number it needs was not measured, never met then. */
TEST(row_ratio_and_targets)
{
    struct bench_case v, b;
    bench_case_init(&v, "v", getppid_ops, NULL, 10);
    bench_case_init(&b, "b", getppid_ops, NULL, 10);
    double vt[] = { 10, 30, 20 }, bt[] = { 40, 41, 39 };
    memcpy(v.ns_per_op, vt, sizeof vt);
    memcpy(b.ns_per_op, bt, sizeof bt);
    v.rounds = b.rounds = 3;
    v.ops = b.ops = 30;
    v.sc = -1;                    /* not counted */
    b.sc = 30;
    b.sc_ops = 10;
    v.flt = 3;
    struct bench_row r;
    struct bench_target t = bench_no_target();
    t.max_ratio = 0.5;
    bench_row_time(&r, "x", "x", &v, "b", &b, t);
    ASSERT(r.ratio == 0.5);
    ASSERT(r.v.ns_min == 10 && r.v.ns_max == 30);
    ASSERT(isnan(r.v.sc));
    ASSERT(r.b.sc == 3);
    ASSERT(r.v.flt == 0.1);
    ASSERT_EQ(r.met, BENCH_MET);
    ASSERT_STR_CONTAINS(r.target_text, "ratio<=0.5x");
    t.max_ratio = 0.49;
    bench_row_time(&r, "x", "x", &v, "b", &b, t);
    ASSERT_EQ(r.met, BENCH_MISSED);
    t.max_ratio = 1;
    t.max_sc = 0;                 /* needs the syscalls that were not counted */
    bench_row_time(&r, "x", "x", &v, "b", &b, t);
    ASSERT_EQ(r.met, BENCH_UNKNOWN);
    bench_row_time(&r, "x", "x", &v, "b", &b, bench_no_target());
    ASSERT_EQ(r.met, BENCH_NO_TARGET);
}

/* The timed rounds run with the syscall counter closed: while a raw_syscalls event is
 * open every system call of the process takes the kernel's tracing path, and every new
 * thread gets a copy of the event, which doubled thread create + join here. System calls
 * are counted in one more round per case, and counted exactly. */
TEST(timed_rounds_run_without_the_syscall_counter)
{
    int counted = counter_available();
    struct probe p;
    memset(&p, 0, sizeof p);
    struct bench_case c[3];
    bench_case_init(&c[0], "probe", probe_ops, &p, 4);
    bench_case_init(&c[1], "three", getppid_ops, (void *)(intptr_t)3, 1000);
    bench_case_init(&c[2], "none", getppid_ops, (void *)(intptr_t)0, 1000);
    bench_interleave(c, 3, 5);
    ASSERT_EQ(p.closed_calls, 1 + 5);                 /* the warm-up and the 5 rounds */
    ASSERT_EQ(p.open_calls, counted ? 1 : 0);         /* the counting round */
    ASSERT_EQ(p.open_ops, counted ? 4 : 0);
    ASSERT_EQ(c[1].rounds, 5);
    ASSERT_EQ(c[1].ops, 5 * 1000);
    if (!counted) {
        ASSERT(isnan(bench_case_sc(&c[1])));
        SKIP("syscall counter unavailable: %s", bench_sc_why);
    }
    ASSERT_EQ(c[1].sc_ops, 1000);
    ASSERT(bench_case_sc(&c[1]) == 3.0);
    ASSERT(bench_case_sc(&c[2]) == 0.0);
    ASSERT(!perf_fd_open());                          /* and closed again afterwards */
}

/* Threads created while the counter is open count too (inherit): a thread that makes 100
 * system calls more than another costs 100 more per operation. */
static void *thread_calls(void *arg)
{
    getppid_ops(arg, 1);
    return NULL;
}

static void thread_ops(void *ctx, long n)
{
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int rc = pthread_create(&t, NULL, thread_calls, ctx);
        if (rc != 0) TST_FAIL("pthread_create: %s", strerror(rc));
        pthread_join(t, NULL);
    }
}

TEST(threads_system_calls_count)
{
    if (!counter_available()) SKIP("syscall counter unavailable: %s", bench_sc_why);
    struct bench_case c[2];
    bench_case_init(&c[0], "busy", thread_ops, (void *)(intptr_t)100, 40);
    bench_case_init(&c[1], "idle", thread_ops, (void *)(intptr_t)0, 40);
    bench_interleave(c, 2, 1);
    double more = bench_case_sc(&c[0]) - bench_case_sc(&c[1]);
    if (!(more > 99.5 && more < 100.5))
        TST_FAIL("a thread's 100 system calls counted as %.2f per operation", more);
}

/* Page faults: one fresh page touched per operation is one fault per operation. */
static void fault_ops(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        char *p = (char *)mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) TST_FAIL("mmap: %s", strerror(errno));
        ((volatile char *)p)[0] = 1;
        munmap(p, 4096);
    }
}

TEST(faults_per_operation)
{
#ifdef TST_TSAN
    NO_TSAN("its shadow of each fresh mapping is faulted in too: 3 faults per page");
#endif
    struct bench_case c;
    bench_case_init(&c, "fault", fault_ops, NULL, 500);
    bench_interleave(&c, 1, 3);
    double f = bench_case_flt(&c);
    if (!(f > 0.99 && f < 1.02)) TST_FAIL("one touched page per operation: %.3f faults", f);
}

/* A case's pre and post hooks run outside its measured windows, before and after each
 * round (the warm-up, every timed round, the counting round): the vms_trim rows set up
 * each round there (another thread frees 1,024 touched stacks), and neither the faults
 * nor the system calls of that set-up may count as the operation's. Here pre maps and
 * touches a fresh page and makes 50 system calls more, post unmaps it; the operation is
 * one getppid. */
struct setup { long pre_calls, post_calls; char *page; };

static void setup_pre(void *ctx)
{
    struct setup *s = (struct setup *)ctx;
    s->pre_calls++;
    s->page = (char *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->page == MAP_FAILED) TST_FAIL("mmap: %s", strerror(errno));
    ((volatile char *)s->page)[0] = 1;
    getppid_ops((void *)(intptr_t)50, 1);
}

static void setup_post(void *ctx)
{
    struct setup *s = (struct setup *)ctx;
    s->post_calls++;
    munmap(s->page, 4096);
}

static void setup_op(void *ctx, long n)
{
    (void)ctx;
    getppid_ops((void *)(intptr_t)1, n);
}

TEST(set_up_in_pre_and_post_is_neither_timed_nor_counted)
{
#ifdef TST_TSAN
    NO_TSAN("its shadow of each fresh mapping is faulted in too: 3 faults per page");
#endif
    int counted = counter_available();
    struct setup s;
    memset(&s, 0, sizeof s);
    struct bench_case c;
    bench_case_init(&c, "set up", setup_op, &s, 1);
    c.pre = setup_pre;
    c.post = setup_post;
    bench_interleave(&c, 1, 5);
    /* The warm-up, the 5 timed rounds and the counting round (when counted). */
    ASSERT_EQ(s.pre_calls, 1 + 5 + counted);
    ASSERT_EQ(s.post_calls, s.pre_calls);
    ASSERT_EQ(c.rounds, 5);
    ASSERT_EQ(c.ops, 5);
    if (!(bench_case_flt(&c) < 0.5))
        TST_FAIL("the set-up's page fault counted: %.2f faults per operation", bench_case_flt(&c));
    if (!counted) SKIP("syscall counter unavailable: %s", bench_sc_why);
    if (bench_case_sc(&c) != 1.0)
        TST_FAIL("one getppid per operation counted as %.2f system calls", bench_case_sc(&c));
}

/* The same in worker processes (bench_interleave_procs): each worker counts its own
 * system calls in its counting round, and times its rounds with the counter closed. */
struct procs_shared { struct probe p; };
static struct procs_shared *procs_shm;

static void procs_setup(int w, void *arg)
{
    (void)w;
    (void)arg;
}

static void procs_make(int i, struct bench_case *c, void *arg)
{
    (void)arg;
    if (i == 0) bench_case_init(c, "two", getppid_ops, (void *)(intptr_t)2, 1000);
    else bench_case_init(c, "probe", probe_ops, &procs_shm->p, 4);
}

TEST(worker_processes_count_their_own)
{
    int counted = counter_available();
    procs_shm = (struct procs_shared *)mmap(NULL, sizeof *procs_shm, PROT_READ | PROT_WRITE,
                                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(procs_shm != MAP_FAILED);
    memset(procs_shm, 0, sizeof *procs_shm);
    static const int worker_of[2] = { 0, 1 };
    struct bench_procs pr = { 2, worker_of, procs_setup, procs_make, NULL };
    struct bench_case c[2];
    for (int i = 0; i < 2; i++) bench_case_init(&c[i], "", getppid_ops, NULL, 1);
    bench_interleave_procs(c, 2, 3, &pr);
    ASSERT_EQ(procs_shm->p.closed_calls, 1 + 3);
    ASSERT_EQ(procs_shm->p.open_calls, counted ? 1 : 0);
    ASSERT_EQ(c[0].rounds, 3);
    ASSERT_EQ(c[0].n, 1000);
    ASSERT_EQ(c[0].ops, 3 * 1000);
    if (!counted) SKIP("syscall counter unavailable: %s", bench_sc_why);
    ASSERT(bench_case_sc(&c[0]) == 2.0);
}

/* Cases that run their operations in pairs (switches) get an even count. */
TEST(paired_operations_are_even)
{
    struct bench_opts o;
    memset(&o, 0, sizeof o);
    for (int q = 0; q < 2; q++) {
        o.quick = q;
        for (double f = 0.0000001; f < 2; f *= 1.7) {
            o.ops_factor = f;
            long n = bench_ops_pairs(&o, 2000000, 20);
            if (n < 2 || n % 2) TST_FAIL("factor %g, quick %d: %ld", f, q, n);
            long m = bench_ops(&o, 2000000, 20);
            ASSERT(n == m || n == m + 1);
        }
    }
}

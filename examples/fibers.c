/*
 * fibers.c - vmstack example: fibers that yield, and one that overflows its stack.
 *
 * Five fibers each compute 1 + 2 + ... + n three times with a recursive function,
 * yielding back to the scheduler loop in main() after every round. A sixth fiber,
 * "deep", gets an n far too large for its 64 KiB stack: it runs into the guard below
 * its stack, vmstack writes an oops report to stderr and kills that fiber alone. The
 * others, suspended at that moment, go on and finish with the right results.
 *
 * Build:  cc -O2 -o fibers fibers.c $(pkg-config --cflags --libs vmstack)
 * Exit:   0 when exactly "deep" was killed and every other fiber's result is right.
 * Needs the default, guarded vmstack: a library built with -DVMSTACK_VMAP=OFF has no
 * guards, and this program refuses to overflow a stack there.
 */
#include <vmstack.h>

#include <stdio.h>
#include <string.h>

#define NFIBERS    6
#define ROUNDS     3
#define DEEP       3            /* the index of the fiber that overflows */
#define STACK_SIZE (64 * 1024)

struct job {
    const char *name;
    unsigned long n;            /* sum 1..n, ROUNDS times */
    unsigned long result;       /* written by the fiber */
    int finished;               /* set by the fiber as its last act */
};

/* 1 + 2 + ... + n, one stack frame per number. Each level keeps its n in a volatile
 * array on its own stack and reads it back after the recursive call, so every level has
 * a real frame of about 100 bytes and the compiler cannot turn the recursion into a loop. */
static __attribute__((noinline)) unsigned long sum_to(unsigned long n)
{
    volatile unsigned long frame[8];
    frame[0] = n;
    if (n == 0) return 0;
    return sum_to(n - 1) + frame[0];
}

/* The body of every fiber: a fiber is just a function that may call vms_fiber_yield()
 * to give control back to whoever resumed it. */
static void job_main(void *arg)
{
    struct job *j = arg;
    unsigned long total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        total += sum_to(j->n);
        vms_fiber_yield();          /* back to main(); resumed in the next round */
    }
    j->result = total;
    j->finished = 1;
}

int main(void)
{
    /* Our lines go to stdout, vmstack's report straight to stderr (write(2)): line
     * buffering keeps them in order when both go to the same pipe or file. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* A deliberate overflow is only safe where there is a guard to catch it. */
    vms_stats stats;
    if (vms_get_stats(&stats) != 0) {
        fprintf(stderr, "fibers: vms_get_stats failed\n");
        return 1;
    }
    if (strcmp(stats.guard_method, "none") == 0) {
        fprintf(stderr, "fibers: this vmstack has no guard pages (direct backend): "
                        "not overflowing a stack on purpose\n");
        return 1;
    }

    /* The deep fiber's n needs about 1 GB of stack: 10 million frames. The others need
     * at most 100 frames, 10 to 20 KiB (more without optimization or with sanitizers). */
    struct job jobs[NFIBERS] = {
        { .name = "sum-20", .n = 20 }, { .name = "sum-40", .n = 40 },
        { .name = "sum-60", .n = 60 }, { .name = "deep",   .n = 10 * 1000 * 1000 },
        { .name = "sum-80", .n = 80 }, { .name = "sum-100", .n = 100 },
    };
    vms_fiber *fibers[NFIBERS];
    for (int i = 0; i < NFIBERS; i++) {
        /* The name labels the fiber in oops reports. vmstack copies it, so the attr
         * may be a temporary. */
        vms_fiber_attr attr = { .stack_size = STACK_SIZE, .name = jobs[i].name };
        fibers[i] = vms_fiber_create(job_main, &jobs[i], &attr);
        if (!fibers[i]) {
            perror("fibers: vms_fiber_create");
            return 1;
        }
    }

    /* A round-robin scheduler: resume every fiber that can still run until none can.
     * vms_fiber_resume returns the fiber's new state: VMS_SUSPENDED (it yielded),
     * VMS_DONE (its function returned) or VMS_KILLED (it overflowed its stack). */
    int running = NFIBERS;
    while (running > 0) {
        running = 0;
        for (int i = 0; i < NFIBERS; i++) {
            int state = vms_fiber_state(fibers[i]);
            if (state == VMS_DONE || state == VMS_KILLED) continue;
            state = vms_fiber_resume(fibers[i]);
            if (state < 0) {
                fprintf(stderr, "fibers: vms_fiber_resume(%s): error %d\n", jobs[i].name,
                        state);
                return 1;
            }
            if (state == VMS_SUSPENDED) running++;
            if (state == VMS_KILLED)
                printf("fiber %s was killed; the scheduler goes on\n", jobs[i].name);
        }
    }

    /* Check every fiber: the deep one killed with an oops, the others right. */
    int ok = 1;
    for (int i = 0; i < NFIBERS; i++) {
        int state = vms_fiber_state(fibers[i]);
        if (i == DEEP) {
            const vms_oops *oops = vms_fiber_oops(fibers[i]);
            if (state != VMS_KILLED || !oops || oops->kind != VMS_OVERFLOW ||
                jobs[i].finished) {
                printf("fiber %s: expected a kill by stack overflow, got state %d\n",
                       jobs[i].name, state);
                ok = 0;
                continue;
            }
            /* The vms_oops stays readable until the fiber is destroyed. */
            printf("fiber %s: killed: stack overflow %zu bytes below its %zu-byte stack "
                   "(fault at %p, %d frames in the trace)\n",
                   oops->name, oops->overrun, oops->stack_size, oops->fault_addr,
                   oops->depth);
            continue;
        }
        unsigned long want = ROUNDS * (jobs[i].n * (jobs[i].n + 1) / 2);
        if (state != VMS_DONE || !jobs[i].finished || jobs[i].result != want) {
            printf("fiber %s: WRONG: state %d, result %lu, expected %lu\n",
                   jobs[i].name, state, jobs[i].result, want);
            ok = 0;
            continue;
        }
        printf("fiber %s: done, result %lu (expected %lu)\n", jobs[i].name, jobs[i].result,
               want);
    }

    /* Destroy every fiber, killed ones included: that gives their stacks back. */
    for (int i = 0; i < NFIBERS; i++) vms_fiber_destroy(fibers[i]);

    if (vms_get_stats(&stats) != 0 || stats.overflows != 1 || stats.stacks_live != 0) {
        printf("unexpected statistics: %zu overflows, %zu live stacks\n",
               stats.overflows, stats.stacks_live);
        ok = 0;
    }
    printf("%s\n", ok ? "fibers: OK: one fiber killed, the others finished correctly"
                      : "fibers: FAILED");
    return ok ? 0 : 1;
}

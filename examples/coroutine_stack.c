/*
 * coroutine_stack.c - vmstack example: a guarded stack for a coroutine mechanism of your
 * own (here the C library's ucontext: makecontext and swapcontext).
 *
 * vms_stack_alloc hands out a stack with a guard below it; vms_stack_base and
 * vms_stack_size describe it exactly as makecontext (or Boost.Context, or any other
 * switch) wants it. This program runs a generator on such a stack: a recursive in-order
 * walk of a binary search tree that hands every key back to main() with swapcontext.
 * Recursion in a coroutine is where small stacks overflow, so the guard matters.
 *
 *   ./coroutine_stack             walks a balanced tree of 100,000 keys (17 levels
 *                                 deep) and checks that the keys come out in order
 *   ./coroutine_stack --overflow  walks a degenerate tree, 100,000 levels deep, that
 *                                 cannot fit in the 64 KiB stack
 *
 * With --overflow the walk hits the guard, and vmstack writes an oops report to stderr.
 * No vmstack fiber or thread owns this stack, so there is no task to kill alone: the
 * report ends with "aborting" and the process dies by SIGSEGV, as it would have without
 * vmstack, but with a report that says which stack overflowed and where. (Run the
 * coroutine on a vms_fiber instead if only the coroutine should die.)
 *
 * Build:  cc -O2 -o coroutine_stack coroutine_stack.c $(pkg-config --cflags --libs vmstack)
 * Exit:   0 when the walk gave every key in order; killed by SIGSEGV with --overflow.
 */
#include <vmstack.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define NKEYS      100000
#define STACK_SIZE (64 * 1024)

struct node {
    struct node *left, *right;
    long key;
};

/* ---- the generator, running on the vmstack stack ----------------------------------- */

static ucontext_t main_ctx, gen_ctx;
static const struct node *gen_root;
static long gen_key;                   /* the key just yielded */
static int gen_finished;               /* the walk is over */
static size_t gen_min_remaining = SIZE_MAX;

/* Hands key to main() and waits until main() asks for the next one. */
static void yield_key(long key)
{
    /* vms_stack_remaining works on any vmstack stack, a raw one too: how much deeper
     * the walk could still go. */
    size_t left = vms_stack_remaining();
    if (left < gen_min_remaining) gen_min_remaining = left;
    gen_key = key;
    swapcontext(&gen_ctx, &main_ctx);
}

/* In-order walk: one stack frame per tree level. */
static void walk(const struct node *n)
{
    if (!n) return;
    walk(n->left);
    yield_key(n->key);
    walk(n->right);
}

static void generator(void)
{
    walk(gen_root);
    gen_finished = 1;
    /* Returning resumes uc_link: main_ctx. */
}

/* ---- trees ---------------------------------------------------------------------------- */

/* A balanced tree of the keys lo..hi-1, built from nodes[lo..hi). */
static struct node *balanced(struct node *nodes, long lo, long hi)
{
    if (lo >= hi) return NULL;
    long mid = lo + (hi - lo) / 2;
    nodes[mid].key = mid;
    nodes[mid].left = balanced(nodes, lo, mid);
    nodes[mid].right = balanced(nodes, mid + 1, hi);
    return &nodes[mid];
}

/* A degenerate tree: every node the left child of the next, NKEYS levels deep. (The
 * left side, because the walk's call for it is not a tail call: every level needs a
 * frame of its own.) */
static struct node *degenerate(struct node *nodes)
{
    for (long i = 0; i < NKEYS; i++) {
        nodes[i].key = i;
        nodes[i].left = i > 0 ? &nodes[i - 1] : NULL;
        nodes[i].right = NULL;
    }
    return &nodes[NKEYS - 1];
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* in order with a report on stderr */
    int overflow = argc > 1 && strcmp(argv[1], "--overflow") == 0;
    if (argc > 2 || (argc == 2 && !overflow)) {
        fprintf(stderr, "usage: %s [--overflow]\n", argv[0]);
        return 2;
    }

    struct node *nodes = calloc(NKEYS, sizeof *nodes);
    if (!nodes) {
        perror("coroutine_stack: calloc");
        return 1;
    }
    gen_root = overflow ? degenerate(nodes) : balanced(nodes, 0, NKEYS);

    /* The stack: usable from vms_stack_base up to base + vms_stack_size, with a guard
     * below the base. (A request is rounded up to a power-of-two size class; 64 KiB is
     * one.) */
    vms_stack *st = vms_stack_alloc(STACK_SIZE);
    if (!st) {
        perror("coroutine_stack: vms_stack_alloc");
        return 1;
    }
    if (getcontext(&gen_ctx) != 0) {
        perror("coroutine_stack: getcontext");
        return 1;
    }
    gen_ctx.uc_stack.ss_sp = vms_stack_base(st);
    gen_ctx.uc_stack.ss_size = vms_stack_size(st);
    gen_ctx.uc_link = &main_ctx;
    makecontext(&gen_ctx, generator, 0);
    printf("generator on a %zu-byte vmstack stack at [%p-%p)\n", vms_stack_size(st),
           vms_stack_base(st), vms_stack_top(st));

    /* Pull keys until the walk is over; each must be the next in order. */
    long expected = 0;
    int ok = 1;
    for (;;) {
        if (swapcontext(&main_ctx, &gen_ctx) != 0) {
            perror("coroutine_stack: swapcontext");
            return 1;
        }
        if (gen_finished) break;
        if (gen_key != expected) {
            printf("key %ld out of order: expected %ld\n", gen_key, expected);
            ok = 0;
            break;
        }
        expected++;
    }
    if (overflow) {
        printf("the degenerate walk should have overflowed its stack\n");
        ok = 0;
    } else if (ok && expected != NKEYS) {
        printf("the walk gave %ld keys, expected %d\n", expected, NKEYS);
        ok = 0;
    }
    printf("walk: %ld keys in order; at its deepest, %zu of %zu stack bytes were left\n",
           expected, gen_min_remaining, vms_stack_size(st));

    /* The coroutine has returned: nothing runs on the stack any more. */
    vms_stack_free(st);
    free(nodes);
    printf("%s\n", ok ? "coroutine_stack: OK" : "coroutine_stack: FAILED");
    return ok ? 0 : 1;
}

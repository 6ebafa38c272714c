/*
 * trace_dlopen.c - call traces through an object loaded with dlopen after vmstack read
 * the loaded objects (at initialization and thread start): the fault handler adopts it
 * from /proc/self/maps and names its functions.
 */
#include "test.h"
#include "island.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>

typedef int (*recurse_fn)(volatile char *, int);

static void *nothing(void *arg)
{
    return arg;
}

/* The program's own recursion (as plugin_recurse, not tail-called either). */
__attribute__((noinline)) int plugin_recurse_here(volatile char *prev, int depth);
__attribute__((noinline)) int plugin_recurse_here(volatile char *prev, int depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = prev ? prev[0] : 0;
    if (depth == 0) return frame[0];
    return plugin_recurse_here(frame, depth - 1) + frame[sizeof frame - 1];
}

static void run_plugin(void *arg)
{
    recurse_fn fn = (recurse_fn)arg;
    fn(NULL, 1 << 20);   /* 512 MiB of frames: overflows any stack */
}

static void overflow_in_plugin(void *arg)
{
    (void)arg;
    /* vmstack starts first: the objects it knows are the ones loaded now. */
    vms_stack *warm = vms_stack_alloc(0);
    if (!warm) _exit(2);
    vms_stack_free(warm);
    void *h = dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("dlopen: %s\n", dlerror());
        _exit(3);
    }
    recurse_fn fn;
    *(void **)&fn = dlsym(h, "plugin_recurse");
    if (!fn) _exit(4);
    vms_fiber *f = vms_fiber_create(run_plugin, (void *)fn, NULL);
    if (!f) _exit(5);
    int s = vms_fiber_resume(f);
    vms_fiber_destroy(f);
    if (s != VMS_KILLED) _exit(6);
}

TEST(object_loaded_after_start_is_named)
{
    NEED_GUARD_FAULTS();
    static char out[64 * 1024];
    tst_run_ok(overflow_in_plugin, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    ASSERT_STR_CONTAINS(out, "plugin_recurse+0x");
    ASSERT_STR_CONTAINS(out, "[libvms_test_plugin.so]");
}

/* The lookup itself, in normal context: an object loaded after vmstack read the table
 * is adopted on first use; memory that no file maps stays unnamed, every time. */
TEST(symbolize_adopts_new_objects_only)
{
    vms_stack *warm = vms_stack_alloc(0);   /* vmstack starts: it reads the table */
    ASSERT_NOT_NULL(warm);
    vms_stack_free(warm);
    int known = vms__trace_load();
    void *h = dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) TST_FAIL("dlopen: %s", dlerror());
    void *fn = dlsym(h, "plugin_recurse");
    ASSERT_NOT_NULL(fn);
    struct vms__sym s;
    ASSERT_EQ(vms__trace_symbolize((uintptr_t)fn + 4, &s), 2);
    ASSERT(vms__sigsafe_streq(s.name, "plugin_recurse"));
    ASSERT(vms__sigsafe_streq(s.object, "libvms_test_plugin.so"));
    ASSERT_UEQ(s.start, (uintptr_t)fn);
    /* The loader, asked next (a thread start), describes the object exactly as the
     * handler did: no second entry. */
    ASSERT_EQ(vms__trace_load(), known + 1);
    struct vms__sym again;
    ASSERT_EQ(vms__trace_symbolize((uintptr_t)fn + 4, &again), 2);
    ASSERT_PTR_EQ(again.object, s.object);

    char *anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(anon != MAP_FAILED);
    for (int i = 0; i < 100; i++) ASSERT_EQ(vms__trace_symbolize((uintptr_t)anon + 8, &s), 0);
    ASSERT_NULL(s.object);
    /* Still named afterwards (the table did not change under it). */
    ASSERT_EQ(vms__trace_symbolize((uintptr_t)fn + 4, &s), 2);
    munmap(anon, 4096);
}

struct reload {
    recurse_fn fn;
    bool same_place;
};

/* A plugin reloaded: the first one is known to vmstack (a thread start read it), then
 * closed, and the second one loaded in its place. */
static void reload_plugin(struct reload *r)
{
    pthread_t t;
    void *h = dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) _exit(3);
    uintptr_t old = (uintptr_t)dlsym(h, "plugin_recurse");
    if (vms_thread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0)
        _exit(4);
    dlclose(h);
    h = dlopen(PLUGIN2_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) _exit(5);
    *(void **)&r->fn = dlsym(h, "plugin2_recurse");
    if (!r->fn) _exit(6);
    /* The code of both starts at the same offset: the same address means the same
     * place (glibc gives the freed range to the next object that fits). */
    r->same_place = (uintptr_t)r->fn == old;
}

static void overflow_in_reloaded_plugin(void *arg)
{
    (void)arg;
    struct reload r;
    reload_plugin(&r);
    /* A skip in the child, which tst_run_ok passes on (a printf before _exit(0) was
     * lost in stdout's buffer, and the case failed on an empty output under qemu-user,
     * whose loader puts the second plugin elsewhere). */
    if (!r.same_place) SKIP("the loader put the second plugin elsewhere: nothing to check");
    vms_fiber *f = vms_fiber_create(run_plugin, (void *)r.fn, NULL);
    if (!f) _exit(7);
    if (vms_fiber_resume(f) != VMS_KILLED) _exit(8);
}

/* The unloaded object no longer answers for its addresses: the report names the
 * object now there (it used to say plugin_recurse [libvms_test_plugin.so]). */
TEST(object_loaded_where_an_unloaded_one_was_is_named)
{
    NEED_GUARD_FAULTS();
    static char out[64 * 1024];
    tst_run_ok(overflow_in_reloaded_plugin, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    ASSERT_STR_CONTAINS(out, "plugin2_recurse+0x");
    ASSERT_STR_CONTAINS(out, "[libvms_test_plugin2.so]");
    ASSERT(!strstr(out, "plugin_recurse"));
    ASSERT(!strstr(out, "[libvms_test_plugin.so]"));
}

/* An unloaded object's range reused by anonymous executable memory (JIT code) is
 * nobody's: no name of the unloaded object's, and its code is not read. */
TEST(unloaded_object_range_reused_by_anonymous_code_is_unnamed)
{
    pthread_t t;
    void *h = dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!h) TST_FAIL("dlopen: %s", dlerror());
    uintptr_t fn = (uintptr_t)dlsym(h, "plugin_recurse");
    ASSERT(fn != 0);
    ASSERT_EQ(vms_thread_create(&t, NULL, nothing, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    struct vms__sym s;
    vms__trace_report_begin();
    ASSERT_EQ(vms__trace_symbolize(fn + 4, &s), 2);
    ASSERT(vms__sigsafe_streq(s.name, "plugin_recurse"));
    dlclose(h);
    uintptr_t page = fn & ~(uintptr_t)4095;
    void *jit = mmap((void *)page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (jit == MAP_FAILED || (uintptr_t)jit != page) SKIP("the range was taken meanwhile");
    vms__trace_report_begin();
    ASSERT_EQ(vms__trace_symbolize(fn + 4, &s), 0);
    ASSERT_NULL(s.name);
    ASSERT_NULL(s.object);
    munmap(jit, 4096);
    /* Nothing mapped there now: nothing named either. */
    vms__trace_report_begin();
    ASSERT_EQ(vms__trace_symbolize(fn + 4, &s), 0);
}

#if defined(__x86_64__)
/* A recursion in anonymous executable memory, as a JIT would emit it: frame records,
 * 272-byte frames, no unwind information. push %rbp; mov %rsp,%rbp; sub $256,%rsp;
 * call <itself>; leave; ret. */
static const unsigned char jit_code[] = {
    0x55, 0x48, 0x89, 0xe5, 0x48, 0x81, 0xec, 0x00, 0x01, 0x00, 0x00,
    0xe8, 0xf0, 0xff, 0xff, 0xff, 0xc9, 0xc3,
};
#else
static const unsigned char jit_code[] = { 0 };
#endif
static void (*jit_fn)(void);

__attribute__((noinline)) void jit_enter(void);
__attribute__((noinline)) void jit_enter(void)
{
    jit_fn();
    __asm__ volatile("" ::: "memory");   /* not a tail call: this frame stays */
}

static void run_jit(void *arg)
{
    (void)arg;
    jit_enter();
}

static void overflow_in_jit_code(void *arg)
{
    (void)arg;
    unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) SKIP("no executable anonymous memory here");
    memcpy(p, jit_code, sizeof jit_code);
    *(void **)&jit_fn = p;
    vms_fiber *f = vms_fiber_create(run_jit, NULL, NULL);
    if (!f) _exit(5);
    vms_fiber_resume(f);
    printf("resumed\n");
}

/* A task is killed alone only when the walk saw every frame. libunwind ends its walk
 * in code without unwind information with the same 0 as at the declared end of a
 * stack, once its guess at the frame chain looks implausible: before, the fiber was
 * killed after 65 frames of the JIT code, its frames below never seen. Either the
 * trace reaches the frame below the JIT code (the frame-pointer walk) and the fiber is
 * killed, or it says where it ended and the process dies. */
TEST(code_without_unwind_info_is_no_complete_trace)
{
#if !defined(__x86_64__)
    SKIP("the JIT code is x86-64 machine code");
#endif
    NEED_GUARD_FAULTS();
    static char out[64 * 1024];
    int st = tst_fork(overflow_in_jit_code, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    if (strstr(out, "killed fiber")) {
        ASSERT_STR_CONTAINS(out, "jit_enter+0x");
        ASSERT_STR_CONTAINS(out, "resumed");
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    } else {
        ASSERT_STR_CONTAINS(out, "cannot kill safely: the call trace ends early at 0x");
        ASSERT_STR_CONTAINS(out, "vmstack: aborting");
        ASSERT_SIGNALED(st, SIGSEGV);
    }
}

/* volatile: in the direct build, where need_guards() skips every case before the
 * dlopen, gcc took it for always NULL and warned at the dlclose (-Wnonnull). */
static void *volatile closing;

static int close_then_overflow(void)
{
    dlclose(closing);   /* the plugin's frame below stays, its code is gone */
    int r = plugin_recurse_here(NULL, 1 << 20);
    __asm__ volatile("" ::: "memory");   /* not a tail call: this frame stays */
    return r + 1;
}

__attribute__((noinline)) void closed_enter(int (*call)(int (*)(void)));
__attribute__((noinline)) void closed_enter(int (*call)(int (*)(void)))
{
    call(close_then_overflow);
    __asm__ volatile("" ::: "memory");   /* not a tail call: this frame stays */
}

static void run_closed(void *arg)
{
    closed_enter((int (*)(int (*)(void)))arg);
}

static void overflow_below_an_unloaded_frame(void *arg)
{
    (void)arg;
    pthread_t t;
    closing = dlopen(PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!closing) _exit(3);
    void *call = dlsym(closing, "plugin_call");
    if (!call) _exit(4);
    /* A thread start: vmstack reads the plugin's symbols before it is closed. */
    if (vms_thread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0)
        _exit(5);
    vms_fiber *f = vms_fiber_create(run_closed, call, NULL);
    if (!f) _exit(6);
    vms_fiber_resume(f);
    printf("resumed\n");
}

/* A frame of an object unloaded while the frame was live: no unwind information for it
 * any more, and its code is gone. libunwind guessed past it: before, the report showed
 * a stack address as the next frame, left closed_enter out, and killed the fiber
 * alone. Either the trace reaches closed_enter (the frame-pointer walk) and the fiber
 * is killed, or it ends at the unloaded frame, says so, and the process dies. */
TEST(frame_of_an_unloaded_object_is_no_complete_trace)
{
    NEED_GUARD_FAULTS();
    static char out[64 * 1024];
    int st = tst_fork(overflow_below_an_unloaded_frame, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    ASSERT_STR_CONTAINS(out, "close_then_overflow+0x");
    ASSERT(!strstr(out, "plugin_call"));   /* its object is gone: its address only */
    if (strstr(out, "killed fiber")) {
        ASSERT_STR_CONTAINS(out, "closed_enter+0x");
        ASSERT_STR_CONTAINS(out, "resumed");
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    } else {
        ASSERT_STR_CONTAINS(out, "cannot kill safely: the call trace ends early at 0x");
        ASSERT_STR_CONTAINS(out, "vmstack: aborting");
        ASSERT_SIGNALED(st, SIGSEGV);
    }
}

/*
 * trace_dlopen.c - call traces through an object loaded with dlopen after vmstack read
 * the loaded objects (at initialization and thread start): the fault handler adopts it
 * from /proc/self/maps and names its functions.
 */
#include "test.h"
#include "island.h"

#include <dlfcn.h>
#include <stdio.h>
#include <sys/mman.h>

typedef int (*recurse_fn)(volatile char *, int);

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

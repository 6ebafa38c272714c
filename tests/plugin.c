/*
 * plugin.c - a shared object that tests/trace_dlopen.c loads with dlopen after vmstack
 * has read the symbol tables of the objects loaded at start: its frames must still be
 * named in call traces.
 */
int plugin_recurse(volatile char *prev, int depth);

__attribute__((noinline, visibility("default"))) int plugin_recurse(volatile char *prev,
                                                                   int depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = prev ? prev[0] : 0;
    if (depth == 0) return frame[0];
    /* Not a tail call: the frame is used after the call returns. */
    return plugin_recurse(frame, depth - 1) + frame[sizeof frame - 1];
}

int plugin_call(int (*cb)(void));

/* Calls back into the program (which may unload this object before it returns). */
__attribute__((noinline, visibility("default"))) int plugin_call(int (*cb)(void))
{
    int r = cb();
    __asm__ volatile("" ::: "memory");   /* not a tail call: this frame stays */
    return r + 1;
}

/*
 * island.h - what the async-signal-safe island (guard.c, oops.c, trace.c, sigsafe.c)
 * shares inside itself; nothing outside the island includes it.
 *
 * Everything here marked async-signal-safe takes no lock that a normal code path could
 * hold (the report lock is taken only by reporters, with a bounded wait), calls no
 * malloc or stdio, and reads only memory prepared before any fault (the
 * object table of trace.c is appended with release stores and read with acquire loads).
 * Tests include this header to reach the units directly.
 */
#ifndef VMSTACK_ISLAND_H
#define VMSTACK_ISLAND_H

#include "internal.h"

#include <signal.h>

/* ------------------------------------------------------------------ sigsafe.c ---- */
/* One report line being formatted. Appends never overflow: a line that does not fit is
 * cut and ends in "..." when written. */
#define VMS__LINE_MAX 480
struct vms__line {
    size_t len;
    bool   cut;
    char   buf[VMS__LINE_MAX + 8];   /* + room for "...\n" */
};
/* async-signal-safe: the formatting helpers. */
VMS_HIDDEN void vms__line_reset(struct vms__line *l);
VMS_HIDDEN void vms__line_str(struct vms__line *l, const char *s);
VMS_HIDDEN void vms__line_strn(struct vms__line *l, const char *s, size_t n);
VMS_HIDDEN void vms__line_name(struct vms__line *l, const char *s);
VMS_HIDDEN void vms__line_char(struct vms__line *l, char c);
/* "0x" and the hexadecimal digits of v, zero-padded to at least width digits. */
VMS_HIDDEN void vms__line_hex(struct vms__line *l, uintptr_t v, unsigned width);
VMS_HIDDEN void vms__line_udec(struct vms__line *l, unsigned long long v);
VMS_HIDDEN void vms__line_dec(struct vms__line *l, long long v);
/* Terminates the line ("\n", "...\n" when cut) and returns its length; buf is then the
 * complete line. */
VMS_HIDDEN size_t vms__line_finish(struct vms__line *l);

/* async-signal-safe: writes all of p to fd, waiting at most timeout_ms for the fd to
 * accept more (poll) each time it is full. Returns 0, or a negative errno (-ETIMEDOUT,
 * -EPIPE, -EBADF, ...) after which the caller should stop writing. Never raises
 * SIGPIPE: the caller blocks it (vms__sigsafe_block_sigpipe). */
VMS_HIDDEN int vms__sigsafe_write(int fd, const char *p, size_t n, int timeout_ms);
/* How a report writes to an fd, decided once per report (one fstat, and an fcntl for
 * what may wait): VMS__FD_DIRECT (a regular file, a block device, /dev/null: a write
 * never waits for a reader and cannot raise SIGPIPE), VMS__FD_NONBLOCK (write first,
 * poll after EAGAIN), VMS__FD_POLL (a blocking pipe, socket or terminal: poll before
 * each write). Negative errno for a bad fd. async-signal-safe. */
enum { VMS__FD_DIRECT = 0, VMS__FD_NONBLOCK = 1, VMS__FD_POLL = 2 };
VMS_HIDDEN int vms__sigsafe_fd_mode(int fd);
/* async-signal-safe: vms__sigsafe_write for an fd of the given mode. */
VMS_HIDDEN int vms__sigsafe_write_mode(int fd, int mode, const char *p, size_t n,
                                       int timeout_ms);
/* async-signal-safe: blocks SIGPIPE for the calling thread and remembers whether one was
 * already pending; unblock discards a SIGPIPE that our own writes raised meanwhile and
 * restores the mask. */
struct vms__sigpipe_state { sigset_t old; bool was_pending; };
VMS_HIDDEN void vms__sigsafe_block_sigpipe(struct vms__sigpipe_state *s);
VMS_HIDDEN void vms__sigsafe_unblock_sigpipe(struct vms__sigpipe_state *s);
/* async-signal-safe: small libc replacements (the libc ones are not promised to be). */
VMS_HIDDEN size_t vms__sigsafe_strlen(const char *s);
VMS_HIDDEN bool vms__sigsafe_streq(const char *a, const char *b);
VMS_HIDDEN bool vms__sigsafe_prefix(const char *s, const char *prefix);
VMS_HIDDEN long vms__sigsafe_gettid(void);
VMS_HIDDEN void vms__sigsafe_sleep_ms(unsigned ms);
/* One line of /proc/self/maps. path points into the reader's buffer (valid during the
 * call only), not NUL-terminated; path_len 0 for anonymous memory. */
struct vms__map {
    uintptr_t lo, hi, offset;
    unsigned long long inode;      /* 0 for anonymous memory */
    char perms[5];                 /* "r-xp" */
    const char *path;
    size_t path_len;
};
/* async-signal-safe: calls fn for each mapping of the process, lowest first, until it
 * returns false. False when /proc/self/maps cannot be read. */
VMS_HIDDEN bool vms__sigsafe_maps_each(bool (*fn)(const struct vms__map *m, void *ctx),
                                       void *ctx);

/* -------------------------------------------------------------------- trace.c ---- */
/* Loads the symbol tables of every object loaded so far (ELF files mapped read-only;
 * .symtab, else .dynsym). Not async-signal-safe: called at install and at thread init,
 * where it adds objects loaded since. Returns the number of objects known. */
VMS_HIDDEN int vms__trace_load(void);
/* fork: holds off vms__trace_load (taken before fork) and releases it after, in the
 * parent and in the child; the child also clears the table's busy flag, which only a
 * thread that the child does not have could hold. */
VMS_HIDDEN void vms__trace_fork_lock(void);
VMS_HIDDEN void vms__trace_fork_unlock(bool child);
struct vms__sym {
    const char *name;      /* NULL when no symbol covers the address */
    uintptr_t   start;     /* the symbol's first byte */
    size_t      size;
    const char *object;    /* basename of the object file, NULL when unknown */
    bool        in_libc;   /* the object is the C library */
    bool        in_loader; /* the object is the dynamic loader (ld.so) */
};
/* async-signal-safe: the symbol covering addr (for a return address pass addr - 1).
 * Returns 2 with a symbol, 1 with only the object known, 0 when nothing is known. */
VMS_HIDDEN int vms__trace_symbolize(uintptr_t addr, struct vms__sym *out);
/* async-signal-safe: starts a report's symbol lookups (the bound on the objects it may
 * adopt from /proc/self/maps, and its memory of addresses no file maps). */
VMS_HIDDEN void vms__trace_report_begin(void);
/* async-signal-safe: addr lies in the C library's loaded object. */
VMS_HIDDEN bool vms__trace_in_libc(uintptr_t addr);
/* async-signal-safe: addr lies in the dynamic loader's loaded object. */
VMS_HIDDEN bool vms__trace_in_loader(uintptr_t addr);
/* async-signal-safe: addr lies, without a symbol, in an object without a symbol table
 * that holds the C library's code (a static program) or vmstack's (linked in
 * statically): VMS__UNSAFE_LIBC or VMS__UNSAFE_VMSTACK, else 0. A frame there may be
 * inside a function that holds a lock, and nothing tells. */
VMS_HIDDEN int vms__trace_unnamed_inside(uintptr_t addr);
/* One frame of a walk; return false to stop the walk. */
typedef bool (*vms__frame_fn)(void *ctx, uintptr_t addr);
/* Records the return address the kernel gives signal handlers (x86-64: the C library's
 * restorer, from the action installed for sig, the fault handler just installed;
 * aarch64: the vDSO's __kernel_rt_sigreturn), so that the frame-pointer walk can follow
 * a signal frame into the code it interrupted. Normal context. */
VMS_HIDDEN void vms__trace_note_restorer(int sig);
/* Adds addr to the restorers the walk knows (at most 2; for tests). Normal context. */
VMS_HIDDEN void vms__trace_add_restorer(uintptr_t addr);
/* The address of the vDSO's symbol name, or 0 (no vDSO, or no such symbol); hash
 * chooses how its symbols are counted: DT_HASH, DT_GNU_HASH, or 0 for either (DT_HASH
 * first). Normal context. */
VMS_HIDDEN uintptr_t vms__trace_vdso_symbol(const char *name, int hash);
/* async-signal-safe: walks the stack of the interrupted context uc, innermost first (the
 * first frame is the pc), calling fn for each frame, at most max frames. Return
 * addresses reach fn without a pointer authentication code (aarch64's pac-ret). The
 * frame-pointer walk reads only [lo, hi); the libunwind walk validates its own reads.
 * Return the number of frames passed to fn; *complete (when not NULL) tells whether
 * the walk reached the outermost frame (rather than a broken chain, an unwinding
 * error, or max).
 * entry: the task's entry function (0: none or not known), which the frame-pointer walk
 * needs to tell a chain that starts at the task's outermost records from one that
 * skipped code without frame pointers (trace.c). */
VMS_HIDDEN int vms__trace_walk_fp(const ucontext_t *uc, uintptr_t lo, uintptr_t hi,
                                  uintptr_t entry, vms__frame_fn fn, void *ctx, int max,
                                  bool *complete);
VMS_HIDDEN int vms__trace_walk_unwind(const ucontext_t *uc, vms__frame_fn fn, void *ctx,
                                      int max, bool *complete);
/* The walk the reports use. With libunwind: libunwind's frames, found by libunwind
 * except at return addresses where it twice confirmed a plain frame record, which are
 * followed by frame pointer inside [lo, hi) (far fewer system calls for a deep
 * recursion). Without: the frame-pointer walk. */
VMS_HIDDEN int vms__trace_walk(const ucontext_t *uc, uintptr_t lo, uintptr_t hi,
                               uintptr_t entry, vms__frame_fn fn, void *ctx, int max,
                               bool *complete);
VMS_HIDDEN bool vms__trace_have_unwind(void);
/* async-signal-safe: whether name is a function that a task may be stopped inside with
 * a process-wide lock held: VMS__UNSAFE_LIBC for the C library's allocator, stdio,
 * loader, exit-handler and environment functions, VMS__UNSAFE_CXX for the C++ runtime's
 * allocation of exception objects, 0 for any other. */
enum { VMS__UNSAFE_LIBC = 1, VMS__UNSAFE_CXX = 2, VMS__UNSAFE_VMSTACK = 3 };
VMS_HIDDEN int vms__trace_name_unsafe(const char *name);
/* async-signal-safe: name as C++ source spells it ("ns::f(int)") in out (cap bytes, a
 * name cut to fit ends in "..."), when it is a mangled C++ name (_Z...) that the
 * demangler (libiberty, VMSTACK_DEMANGLE) understands and room bytes of the caller's
 * stack are enough for it (VMS__DEMANGLE_ROOM). Returns the length written, or 0: then
 * print name as it is. */
VMS_HIDDEN size_t vms__trace_demangle(const char *name, size_t room, char *out, size_t cap);
/* The stack the demangler may use for a name of len bytes: its work arrays and
 * recursion grow with the name (measured here: at most 430 bytes per byte of the name,
 * for chains of const pointers, 90 for the longest names in libstdc++ and Boost). */
#define VMS__DEMANGLE_ROOM(len) (16 * 1024 + 512 * (size_t)(len))

/* --------------------------------------------------------------------- oops.c ---- */
enum { VMS__FAULT_OVERFLOW = VMS_OVERFLOW, VMS__FAULT_UNDERFLOW = VMS_UNDERFLOW,
       VMS__FAULT_WILD,        /* a guard hit by a pointer from another stack */
       VMS__FAULT_MAIN,        /* the main thread ran past its stack limit */
       VMS__FAULT_THREAD,      /* a thread not created by vmstack ran past its stack */
       VMS__FAULT_CLIB };      /* a vms thread ran past its C-library stack, outside its
                                  body (thread start or exit: TLS and TSD destructors) */
enum { VMS__ACT_KILL = 1, VMS__ACT_ABORT = 2 };
/* A classified fault, filled by guard.c for the reporter. */
struct vms__fault {
    int        kind;            /* VMS__FAULT_* */
    int        sig;
    const ucontext_t *uc;
    uintptr_t  addr, pc, sp;
    bool       frame;           /* the kernel could not write a signal frame below sp
                                   (addr: the lowest byte it may have needed) */
    uintptr_t  lo, hi;          /* the overrun stack's usable bytes [lo, hi) */
    size_t     guard;           /* its guard's size */
    uintptr_t  walk_lo, walk_hi;/* where the frame-pointer walk may read */
    bool       have_task;       /* task: the vmstack task running on this thread (the
                                   one blamed, except for a wild access) */
    struct vms__task_info task;
    const char *name;           /* thread name for MAIN and THREAD, else task.name */
    long       tid;
    int        action;          /* VMS__ACT_*, as the policy asks */
    const char *why_no_kill;    /* with ACT_ABORT under VMS_KILL_TASK: why, or NULL */
};
/* async-signal-safe: writes the oops for f to vms__opt.report_fd under the report lock,
 * fills *oops, calls the oops hook, and writes the action line. Downgrades f->action to
 * VMS__ACT_ABORT when killing only the task is unsafe. Counts the taint. Returns the
 * final action. */
VMS_HIDDEN int vms__oops_report(struct vms__fault *f, vms_oops *oops);
/* The taint counter: oopses so far in this process. */
VMS_HIDDEN size_t vms__oops_tainted(void);
/* Calls the oops hook, if one is set, with oops (the end magic's report; an oops report
 * calls it itself). */
VMS_HIDDEN void vms__oops_call_hook(const vms_oops *oops);
/* fork: takes the lock of vms_set_oops_hook and the report lock (waiting, at most
 * vms__oops_fork_wait_ms, for a report in flight on another thread) and releases them
 * (parent and child; the child also forgets the reports that were reading the hook on
 * other threads). */
VMS_HIDDEN void vms__oops_fork_lock(void);
VMS_HIDDEN void vms__oops_fork_unlock(bool child);
/* How long fork waits for another thread's report (20 s); tests shorten it. */
VMS_HIDDEN extern long vms__oops_fork_wait_ms;
/* How long a report waits for another thread's report (20 s) before it goes on with a
 * call trace by frame pointers only; tests shorten it. */
VMS_HIDDEN extern long vms__oops_lock_wait_ms;
/* Tests only: when set, called by every reader of the hook between reading the hook and
 * reading its ctx (async-signal context). */
VMS_HIDDEN extern void (*vms__oops_hook_read_hook)(void);
/* Tests only: when set, called before each yield of a wait for another thread's report:
 * vms_set_oops_hook's for the record it fills or the one it replaced, fork's for the
 * report lock. A test learns from it that the waiter is waiting, instead of guessing
 * with a sleep. */
VMS_HIDDEN extern void (*vms__oops_wait_hook)(void);
/* async-signal-safe: ends a report cut short by a fault of its own (sig at addr, the
 * faulting instruction at pc): a line saying so, then "aborting". */
VMS_HIDDEN void vms__oops_nested(int sig, uintptr_t addr, uintptr_t pc);
/* async-signal-safe: the line that says the calling thread's SS_AUTODISARM alternate
 * stack could not be enabled again after a kill (err: a negative errno). */
VMS_HIDDEN void vms__oops_rearm_failed(int err);
/* async-signal-safe: the short report for a fault whose full report does not fit in the
 * room left on the thread's own alternate stack (room of its size bytes; need: what the
 * full report asks for): the first line, the fault address, a line saying why there is
 * no more, and "aborting". Counts the taint; calls no hook. */
VMS_HIDDEN void vms__oops_report_no_room(const struct vms__fault *f, size_t room, size_t size,
                                         size_t need);

/* -------------------------------------------------------------------- guard.c ---- */
/* Whether vms__guard_thread_init set this thread up as one of vmstack's own threads
 * (called from the task layer's thread start: no foreign-stack record, no alternate
 * stack query). For tests. */
VMS_HIDDEN bool vms__guard_thread_is_task(void);
/* Whether vms__guard_install put the fault handler in place (for tests). */
VMS_HIDDEN bool vms__guard_installed(void);

#endif /* VMSTACK_ISLAND_H */

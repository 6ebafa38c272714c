/*
 * options.c - configuration: vms_init, the VMSTACK_* environment variables, defaults.
 *
 * Precedence, per field: a non-zero vms_config field, then the environment, then the
 * default. The options are decided once, on first use, and never change afterwards, so
 * every other file (including the fault handler) reads vms__opt without locks once
 * vms__ensure_init() has returned 0.
 *
 * The table below has one row per variable; docs/configuration.md has one line per row,
 * and tests/options.c one test per row.
 */
#include "internal.h"
#include "island.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

struct vms__options vms__opt;

enum { INIT_NONE = 0, INIT_DONE = 2 };
static atomic_int init_state;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

int vms__parse_size(const char *s, size_t *out)
{
    if (!s || !*s) return -EINVAL;
    const char *p = s;
    size_t v = 0;
    if (*p < '0' || *p > '9') return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        size_t d = (size_t)(*p - '0');
        if (v > (SIZE_MAX - d) / 10) return -EINVAL;
        v = v * 10 + d;
    }
    size_t mul = 1;
    switch (*p) {
    case 'k': case 'K': mul = VMS_KIB; p++; break;
    case 'm': case 'M': mul = VMS_MIB; p++; break;
    case 'g': case 'G': mul = VMS_GIB; p++; break;
    default: break;
    }
    /* Accept an optional "b" or "iB" after the suffix ("64k", "64KiB", "64kb"; not
     * "64ki"). */
    if (mul != 1 && (*p == 'i' || *p == 'I') && (p[1] == 'b' || p[1] == 'B')) p++;
    if (mul != 1 && (*p == 'b' || *p == 'B')) p++;
    if (*p != '\0') return -EINVAL;
    if (v > SIZE_MAX / mul) return -EINVAL;
    *out = v * mul;
    return 0;
}

static size_t page_round(size_t v)
{
    size_t page = vms__os_page_size();
    return (v + page - 1) & ~(page - 1);
}

/* Set once this process, or the process it was forked from, has said what is wrong with
 * the VMSTACK_* variables: by its own first use, or early by vms__options_check_env. The
 * variables' warnings are not said again then (a command's processes share one stderr). */
static atomic_bool env_said;

/* A warning about the variables, unless they were said already (env_said). */
#define ENV_WARN(...)                                                                  \
    do {                                                                               \
        if (!atomic_load_explicit(&env_said, memory_order_relaxed))                    \
            vms__log_warn(__VA_ARGS__);                                                \
    } while (0)

/* A variable's value, or NULL. In a secure-execution process (set-user-ID or
 * set-group-ID, file capabilities: AT_SECURE) the variables belong to a user with fewer
 * privileges than the program, who could turn scrubbing off or exhaust the mapping limit
 * with the mprotect method: each one set is ignored, with a warning that does not echo
 * its value (the C library drops LD_PRELOAD and the like for the same reason). */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v && getauxval(AT_SECURE)) {
        ENV_WARN("%s is ignored: this program runs with privileges its user does not have "
                 "(set-user-ID or set-group-ID); using the default", name);
        return NULL;
    }
    return v;
}

/* What a malformed variable's warning says is used instead: the value the program gave
 * vms_init for that field when it gave one (it wins over the variable anyway), else the
 * default. */
static const char *instead(bool by_program)
{
    return by_program ? "using the value the program gave vms_init" : "using the default";
}

/* Each malformed variable is reported once per process (options are read once) and its
 * children (env_said); the sizes' own warning is in env_size. */
static void bad_env(const char *name, const char *value, const char *want, bool by_program)
{
    ENV_WARN("%s=\"%s\" is not %s; %s", name, value, want, instead(by_program));
}

/* Who, besides cfg, gives vms_init a flag in the processes a command warns for
 * (vms__options_check_env); NULL when nobody. Set only during that call, under
 * init_lock. */
static const char *(*env_set_by)(unsigned flag, void *ctx);
static void *env_set_by_ctx;

static void env_size(const char *name, size_t *field, size_t min, size_t max,
                     bool by_program)
{
    const char *v = env(name);
    if (!v) return;
    size_t n;
    if (vms__parse_size(v, &n) != 0 || n < min || n > max) {
        ENV_WARN("%s=\"%s\" is not a size from %zu to %zu bytes (digits with an optional "
                 "k, m or g suffix, such as 64k); %s", name, v, min, max, instead(by_program));
        return;
    }
    *field = n;
}

static void env_bool_flag(struct vms__options *o, const vms_config *cfg, const char *name,
                          unsigned flag, bool set_when_true)
{
    const char *v = env(name);
    if (!v) return;
    bool on;
    if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "true")) on = true;
    else if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "false")) on = false;
    else {
        /* Some of a command's processes may set the flag themselves and others not
         * (`vmstack bench`'s groups): the default is then not used everywhere. */
        static const char want[] = "0 or 1 (or no/yes, off/on, false/true)";
        bool by_program = cfg && (cfg->flags & flag);
        const char *who = env_set_by && !by_program ? env_set_by(flag, env_set_by_ctx) : NULL;
        if (who)
            ENV_WARN("%s=\"%s\" is not %s; using the default, except %s", name, v, want, who);
        else
            bad_env(name, v, want, by_program);
        return;
    }
    if (on == set_when_true) o->flags |= flag;
    else o->flags &= ~flag;
}

/* The variables into *o, saying what is wrong with them unless env_said; then env_said.
 * cfg (or NULL) is what the program gives vms_init, applied after: it only changes what
 * a warning says is used instead. */
static void load_env(struct vms__options *o, const vms_config *cfg)
{
    env_size("VMSTACK_STACK_SIZE", &o->stack_size, 1, VMS_MAX_STACK_SIZE, cfg && cfg->stack_size);
    env_size("VMSTACK_GUARD_SIZE", &o->guard_size, 1, VMS_MAX_GUARD_SIZE, cfg && cfg->guard_size);

    const char *v = env("VMSTACK_CACHE");
    if (v) {
        /* A count: digits only (a size suffix, "1k", would mean 1024 stacks). */
        size_t n;
        if (v[strspn(v, "0123456789")] != '\0' || vms__parse_size(v, &n) != 0 || n > 1024)
            bad_env("VMSTACK_CACHE", v, "a count from 0 to 1024", cfg && cfg->cache_per_thread);
        else
            o->cache_per_thread = (unsigned)n;
    }
    v = env("VMSTACK_ON_OVERFLOW");
    if (v) {
        if (!strcmp(v, "kill")) o->on_overflow = VMS_KILL_TASK;
        else if (!strcmp(v, "abort")) o->on_overflow = VMS_ABORT;
        else bad_env("VMSTACK_ON_OVERFLOW", v, "kill or abort", cfg && cfg->on_overflow);
    }
    env_bool_flag(o, cfg, "VMSTACK_PAINT", VMS_PAINT, true);
    env_bool_flag(o, cfg, "VMSTACK_END_CHECK", VMS_END_CHECK, true);
    env_bool_flag(o, cfg, "VMSTACK_SCRUB", VMS_NO_SCRUB, false);
    v = env("VMSTACK_GUARD_METHOD");
    if (v) {
        if (!strcmp(v, "madvise")) o->guard_request = VMS__GUARD_MADVISE;
        else if (!strcmp(v, "mprotect")) o->guard_request = VMS__GUARD_MPROTECT;
        else bad_env("VMSTACK_GUARD_METHOD", v, "madvise or mprotect",
                     cfg && (cfg->flags & VMS_FORCE_MPROTECT));
    }
    atomic_store_explicit(&env_said, true, memory_order_relaxed);
}

void vms__options_check_env(const vms_config *cfg,
                            const char *(*set_by)(unsigned flag, void *ctx), void *ctx)
{
    pthread_mutex_lock(&init_lock);
    if (atomic_load_explicit(&init_state, memory_order_acquire) != INIT_DONE) {
        struct vms__options scratch;
        memset(&scratch, 0, sizeof scratch);
        env_set_by = set_by;
        env_set_by_ctx = ctx;
        load_env(&scratch, cfg);   /* nothing said when env_said is set already */
        env_set_by = NULL;
        env_set_by_ctx = NULL;
    }
    pthread_mutex_unlock(&init_lock);
}

void vms__options_env_said(void)
{
    atomic_store_explicit(&env_said, true, memory_order_relaxed);
}

/* Validates cfg without touching vms__opt. */
static int check_config(const vms_config *cfg)
{
    if (cfg->stack_size > VMS_MAX_STACK_SIZE) return -EINVAL;
    if (cfg->guard_size > VMS_MAX_GUARD_SIZE) return -EINVAL;
    if (cfg->cache_per_thread > 1024) return -EINVAL;
    if (cfg->on_overflow != VMS_KILL_TASK && cfg->on_overflow != VMS_ABORT) return -EINVAL;
    if (cfg->report_fd < 0) return -EINVAL;
    /* A descriptor that is not open, or not open for writing, would lose every report
     * without a word: said now rather than at the first overflow. */
    if (cfg->report_fd > 0) {
        int fl = fcntl(cfg->report_fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY) return -EINVAL;
    }
    if (cfg->flags & ~(unsigned)(VMS_PAINT | VMS_END_CHECK | VMS_FORCE_MPROTECT | VMS_NO_SCRUB))
        return -EINVAL;
    return 0;
}

/* Called with init_lock held and init_state == INIT_NONE. cfg may be NULL. */
static void decide(const vms_config *cfg)
{
    /* Defaults. The per-thread cache holds 8 clean stacks: the kernel keeps 2 per CPU
     * because a task is created and destroyed on the same CPU in bursts of a few; fibers
     * come in larger bursts (a request fanning out), and a cached stack costs only its
     * warm top page (4 KiB), so 8 covers common bursts for 32 KiB per thread. Beyond it
     * the shared list per size class takes over. */
    vms__opt.stack_size = VMS_DEFAULT_STACK_SIZE;
    vms__opt.guard_size = VMS_DEFAULT_GUARD_SIZE;
    vms__opt.cache_per_thread = 8;
    vms__opt.on_overflow = VMS_KILL_TASK;
    vms__opt.report_fd = 2;
    vms__opt.flags = 0;
    vms__opt.guard_request = VMS__GUARD_NONE;   /* not asked for: decided below */
    vms__opt.guard_valgrind = false;

    load_env(&vms__opt, cfg);

    if (cfg) {
        if (cfg->stack_size) vms__opt.stack_size = cfg->stack_size;
        if (cfg->guard_size) vms__opt.guard_size = cfg->guard_size;
        if (cfg->cache_per_thread) vms__opt.cache_per_thread = cfg->cache_per_thread;
        if (cfg->on_overflow) vms__opt.on_overflow = cfg->on_overflow;
        if (cfg->report_fd) vms__opt.report_fd = cfg->report_fd;
        vms__opt.flags |= cfg->flags;
    }
    if (vms__opt.flags & VMS_FORCE_MPROTECT) vms__opt.guard_request = VMS__GUARD_MPROTECT;
    bool valgrind = vms__os_under_valgrind();
    if (vms__opt.guard_request == VMS__GUARD_NONE) {
        /* Valgrind takes madvise guards for readable memory, and its leak check at exit
         * reads every guard word by word, each read a caught fault (seconds for a few
         * hundred stacks). mprotect guards it knows. VMSTACK_GUARD_METHOD=madvise still
         * asks for madvise guards. */
        vms__opt.guard_valgrind = valgrind;
        vms__opt.guard_request = valgrind ? VMS__GUARD_MPROTECT : VMS__GUARD_MADVISE;
    }
#if !defined(VMSTACK_VALGRIND)
    /* Without VALGRIND_STACK_REGISTER memcheck takes a switch to a fiber's stack for a
     * huge frame and the stack's memory, once left, for freed: every fiber's first
     * writes after a switch become "invalid write" errors. */
    if (valgrind)
        vms__log_warn("running under Valgrind, but this vmstack was built without "
                      "-DVMSTACK_VALGRIND=ON: memcheck does not know about fiber switches "
                      "and will report false errors on fiber and thread stacks");
#endif
    /* The flag says what was asked for: not set by the Valgrind choice. */
    if (vms__opt.guard_request == VMS__GUARD_MPROTECT && !vms__opt.guard_valgrind)
        vms__opt.flags |= VMS_FORCE_MPROTECT;

    /* Sizes: the guard is whole pages (at least one); the default stack size is that of
     * its size class, so vms_stack_size() of a default stack equals it. */
    vms__opt.guard_size = page_round(vms__opt.guard_size);
    unsigned cls;
    if (vms__arena_class(vms__opt.stack_size, &cls) == 0)
        vms__opt.stack_size = vms__arena_class_size(cls);
    else
        vms__opt.stack_size = VMS_DEFAULT_STACK_SIZE;
}

void (*vms__init_hook)(void);

static int finish_init(const vms_config *cfg)
{
    decide(cfg);
    if (vms__init_hook) vms__init_hook();
    /* The handler and what it reads (the main stack's range, symbol tables) are set up
     * before any other thread can see INIT_DONE and start using vmstack. */
    int e = vms__guard_install();
    if (e) vms__log_warn("the stack-overflow handler could not be installed (%s): overflows "
                         "will not be reported", strerror(-e));
    atomic_store_explicit(&init_state, INIT_DONE, memory_order_release);
    /* After INIT_DONE: the first thread's alternate signal stack comes back here through
     * vms_stack_alloc. */
    (void)vms__guard_thread_init();
    return 0;
}

/* fork: the init lock first, then, once vmstack is initialized, every other lock of
 * vmstack (stack.c). Registered when the library is loaded, not at initialization: a
 * fork while another thread is initializing vmstack (it holds init_lock, before
 * INIT_DONE) used to give the child init_lock held by a thread it does not have, and
 * the child's first vmstack call hung. Now that fork waits for the initialization. */
static bool fork_took_all;          /* written by the forking thread under init_lock */

void (*vms__fork_hook)(void);

static void fork_prepare(void)
{
    if (vms__fork_hook) vms__fork_hook();
    pthread_mutex_lock(&init_lock);
    fork_took_all = atomic_load_explicit(&init_state, memory_order_acquire) == INIT_DONE;
    if (fork_took_all) vms__stack_fork_prepare();
    vms__oops_fork_lock();        /* vms_set_oops_hook needs no initialization */
}

static void fork_parent(void)
{
    vms__oops_fork_unlock(false);
    if (fork_took_all) vms__stack_fork_parent();
    pthread_mutex_unlock(&init_lock);
}

static void fork_child(void)
{
    vms__os_fork_child();
    vms__fiber_fork_child();
    vms__oops_fork_unlock(true);
    if (fork_took_all) vms__stack_fork_child();
    pthread_mutex_unlock(&init_lock);
}

/* Priority 101, the first a program may use: in a static link the program's objects
 * come first, and so would their constructors. Handlers registered earlier run their
 * prepare after vmstack's and their parent and child handlers before vmstack's: with
 * vmstack's locks still held (a vmstack call there hung for good) and, in the child,
 * before the child is set right (a fiber of a thread the fork left behind could not be
 * destroyed there). So vmstack's come before those a program registers in a
 * constructor of its own (without a priority, or one above 101) or later, which may
 * use vmstack. All of vmstack's child work is done in these handlers, none in others
 * registered later, at first use. */
__attribute__((constructor(101))) static void fork_register(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int vms__ensure_init(void)
{
    if (VMS_LIKELY(atomic_load_explicit(&init_state, memory_order_acquire) == INIT_DONE))
        return 0;
    int saved = errno;   /* a first use that succeeds leaves the program's errno alone */
    pthread_mutex_lock(&init_lock);
    int e = 0;
    if (atomic_load_explicit(&init_state, memory_order_acquire) != INIT_DONE)
        e = finish_init(NULL);
    pthread_mutex_unlock(&init_lock);
    errno = saved;
    return e;
}

bool vms__initialized(void)
{
    return atomic_load_explicit(&init_state, memory_order_acquire) == INIT_DONE;
}

int vms_init(const vms_config *cfg)
{
    if (!cfg) return -EINVAL;
    int e = check_config(cfg);
    if (e) return e;
    pthread_mutex_lock(&init_lock);
    if (atomic_load_explicit(&init_state, memory_order_acquire) == INIT_DONE)
        e = -EBUSY;
    else
        e = finish_init(cfg);
    pthread_mutex_unlock(&init_lock);
    return e;
}

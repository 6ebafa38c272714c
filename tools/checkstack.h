/*
 * checkstack.h - what the files of `vmstack checkstack` share: the function table and
 * call graph (checkstack_graph.c), the parsers for GCC's .su and .ci files
 * (checkstack_gcc.c) and for ELF objects (checkstack_elf.c). Plain C and libc only: the
 * command must work without the vmstack library. Parsers take (buffer, length, file
 * name), never exit and never read outside the buffer; on bad input they return -1 with
 * "FILE:LINE: what" (or "FILE: what" for ELF) in the caller's error buffer, so they can
 * run under libFuzzer.
 */
#ifndef VMSTACK_CHECKSTACK_H
#define VMSTACK_CHECKSTACK_H

#include <stddef.h>
#include <stdint.h>

/* Saturating arithmetic keeps absurd inputs (fuzzed frame sizes near 2^64) from
 * wrapping around into small, plausible-looking depths. */
#define CS_SATURATED UINT64_MAX

/* Why a worst case is unbounded; the first cause found on the path is reported. */
enum cs_why { CS_BOUNDED = 0, CS_RECURSION, CS_DYNAMIC, CS_INDIRECT };

struct cs_func {
    char    *key;          /* .ci title (linkage name; "file:name" for statics) or .su name */
    char    *name;         /* the name shown: first line of the .ci label, or the .su name */
    char    *loc;          /* "file:line:col" of the definition, or NULL */
    uint64_t frame;        /* bytes, valid when has_frame */
    unsigned has_frame : 1;    /* defined in the input (a .su line or a .ci label with bytes) */
    unsigned dynamic : 1;      /* frame grows at run time (alloca, VLA, realignment) */
    unsigned bounded : 1;      /* dynamic, but GCC proved `frame` is the bound */
    unsigned has_graph : 1;    /* its calls are known (it came from a .ci file) */
    unsigned is_indirect : 1;  /* GCC's "__indirect_call" placeholder node */
    unsigned calls_indirect : 1; /* has an edge to the placeholder */
    unsigned called : 1;       /* some other function calls it */
    unsigned redefined : 1;    /* defined twice differently; the larger frame is kept */
    size_t  *callees;      /* indexes into cs_graph.f, in input order, duplicates removed */
    size_t   ncallees, capcallees;
    /* Results of cs_graph_analyze(). */
    size_t   scc;          /* strongly connected component id */
    unsigned in_cycle : 1; /* part of a recursion (cycle or self-call) */
    unsigned done : 1;
    enum cs_why why;       /* CS_BOUNDED or the cause of unboundedness */
    size_t   culprit;      /* the function that causes `why` (valid when why != 0) */
    uint64_t depth;        /* worst-case bytes including this frame (when bounded) */
    size_t   next;         /* callee on the worst path, or SIZE_MAX at a leaf */
};

/* A .su line kept until every file is read, then merged into the .ci nodes it repeats. */
struct cs_su_line {
    char    *name, *loc;
    uint64_t frame;
    unsigned dynamic : 1, bounded : 1;
};

struct cs_graph {
    struct cs_func *f;
    size_t n, cap;
    size_t *hash;          /* open addressing on key: index + 1, 0 = empty */
    size_t hcap;
    struct cs_su_line *su;
    size_t nsu, capsu;
};

/* One function found in an ELF file: its symbol name and frame bytes. */
struct cs_frame {
    char    *name;
    uint64_t bytes;
};
struct cs_frames {
    struct cs_frame *v;
    size_t n, cap;
};

/* checkstack_graph.c */
void   cs_graph_free(struct cs_graph *g);
/* Returns the index of the function with this key, creating it (no frame, no graph) if
 * asked; SIZE_MAX when absent (or out of memory when create is set). */
size_t cs_graph_find(struct cs_graph *g, const char *key, int create);
int    cs_graph_add_edge(struct cs_graph *g, size_t from, size_t to);
int    cs_graph_add_su(struct cs_graph *g, const char *name, const char *loc,
                       uint64_t frame, int dynamic, int bounded);
/* Folds the .su lines into the graph: a line that repeats a .ci node (same name and
 * location) is checked against it, others become functions without a call graph.
 * Returns 0, or -1 with a message in err when a frame size disagrees or memory ran out. */
int    cs_graph_merge_su(struct cs_graph *g, char *err, size_t errsz);
/* Computes scc, in_cycle, why, culprit, depth and next for every function. Iterative:
 * a deep call chain in the input must not overflow this tool's own stack. Returns 0 or
 * -1 when out of memory. */
int    cs_graph_analyze(struct cs_graph *g);
/* Finds the shortest cycle from f back to f: out[0] = f, then the functions in call
 * order (the last one calls f). out has room for g->n entries. Returns the length, at
 * least 1 (f alone for a self-call; also when f is in no cycle). */
size_t cs_graph_cycle(const struct cs_graph *g, size_t f, size_t *out);
uint64_t cs_add_sat(uint64_t a, uint64_t b);

/* checkstack_gcc.c */
int cs_parse_su(struct cs_graph *g, const char *buf, size_t len, const char *file,
                char *err, size_t errsz);
int cs_parse_ci(struct cs_graph *g, const char *buf, size_t len, const char *file,
                char *err, size_t errsz);

/* checkstack_elf.c */
int  cs_parse_elf(struct cs_frames *out, const unsigned char *buf, size_t len,
                  const char *file, char *err, size_t errsz);
void cs_frames_free(struct cs_frames *fr);
/* The frame-size decoders, exposed for unit tests: the bytes a function's prologue
 * reserves, including the return address on x86-64 (see docs/checkstack.md). */
uint64_t cs_x86_64_frame(const unsigned char *code, size_t len);
uint64_t cs_aarch64_frame(const unsigned char *code, size_t len);

#endif

/*
 * checkstack_graph.c - the function table and call graph of `vmstack checkstack`, and
 * the worst-case stack depth computed over it. Functions are found by key through an
 * open-addressing hash, so inputs with many thousands of functions stay linear. The
 * analysis is iterative (Tarjan's strongly connected components with an explicit stack)
 * so that a fuzzed or generated call chain of any length cannot overflow our own stack.
 * Invariant: every index stored in callees[] is < g->n.
 */
#include "checkstack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t cs_add_sat(uint64_t a, uint64_t b)
{
    return a > CS_SATURATED - b ? CS_SATURATED : a + b;
}

static uint64_t hash_str(const char *s)
{
    /* FNV-1a: simple, and good enough for function names. */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void cs_graph_free(struct cs_graph *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->f[i].key);
        free(g->f[i].name);
        free(g->f[i].loc);
        free(g->f[i].callees);
    }
    for (size_t i = 0; i < g->nsu; i++) {
        free(g->su[i].name);
        free(g->su[i].loc);
    }
    free(g->f);
    free(g->hash);
    free(g->su);
    memset(g, 0, sizeof *g);
}

/* Doubles the hash table when it is half full, keeping probe sequences short. */
static int rehash(struct cs_graph *g)
{
    size_t ncap = g->hcap ? g->hcap * 2 : 64;
    size_t *nh = calloc(ncap, sizeof *nh);
    if (!nh) return -1;
    for (size_t i = 0; i < g->n; i++) {
        size_t h = (size_t)hash_str(g->f[i].key) & (ncap - 1);
        while (nh[h]) h = (h + 1) & (ncap - 1);
        nh[h] = i + 1;
    }
    free(g->hash);
    g->hash = nh;
    g->hcap = ncap;
    return 0;
}

size_t cs_graph_find(struct cs_graph *g, const char *key, int create)
{
    if (g->hcap) {
        size_t h = (size_t)hash_str(key) & (g->hcap - 1);
        while (g->hash[h]) {
            if (!strcmp(g->f[g->hash[h] - 1].key, key)) return g->hash[h] - 1;
            h = (h + 1) & (g->hcap - 1);
        }
    }
    if (!create) return SIZE_MAX;
    if ((g->n + 1) * 2 > g->hcap && rehash(g) != 0) return SIZE_MAX;
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 64;
        struct cs_func *nf = realloc(g->f, ncap * sizeof *nf);
        if (!nf) return SIZE_MAX;
        g->f = nf;
        g->cap = ncap;
    }
    struct cs_func *f = &g->f[g->n];
    memset(f, 0, sizeof *f);
    f->key = strdup(key);
    f->name = strdup(key);
    if (!f->key || !f->name) {
        free(f->key);
        free(f->name);
        return SIZE_MAX;
    }
    f->next = SIZE_MAX;
    size_t h = (size_t)hash_str(key) & (g->hcap - 1);
    while (g->hash[h]) h = (h + 1) & (g->hcap - 1);
    g->hash[h] = g->n + 1;
    return g->n++;
}

int cs_graph_add_edge(struct cs_graph *g, size_t from, size_t to)
{
    struct cs_func *f = &g->f[from];
    /* GCC lists one edge per call site; the depth needs each callee once. The scan is
     * linear, but a function rarely calls more than a few dozen others. */
    for (size_t i = 0; i < f->ncallees; i++)
        if (f->callees[i] == to) return 0;
    if (f->ncallees == f->capcallees) {
        size_t ncap = f->capcallees ? f->capcallees * 2 : 4;
        size_t *nc = realloc(f->callees, ncap * sizeof *nc);
        if (!nc) return -1;
        f->callees = nc;
        f->capcallees = ncap;
    }
    f->callees[f->ncallees++] = to;
    if (to != from) g->f[to].called = 1;
    return 0;
}

int cs_graph_add_su(struct cs_graph *g, const char *name, const char *loc,
                    uint64_t frame, int dynamic, int bounded)
{
    if (g->nsu == g->capsu) {
        size_t ncap = g->capsu ? g->capsu * 2 : 64;
        struct cs_su_line *ns = realloc(g->su, ncap * sizeof *ns);
        if (!ns) return -1;
        g->su = ns;
        g->capsu = ncap;
    }
    struct cs_su_line *s = &g->su[g->nsu];
    s->name = strdup(name);
    s->loc = strdup(loc);
    if (!s->name || !s->loc) {
        free(s->name);
        free(s->loc);
        return -1;
    }
    s->frame = frame;
    s->dynamic = dynamic != 0;
    s->bounded = bounded != 0;
    g->nsu++;
    return 0;
}

/* Key for matching a .su line with a .ci node: "loc\nname", which both formats give. */
static char *loc_key(const char *loc, const char *name)
{
    size_t a = strlen(loc), b = strlen(name);
    char *k = malloc(a + b + 2);
    if (!k) return NULL;
    memcpy(k, loc, a);
    k[a] = '\n';
    memcpy(k + a + 1, name, b + 1);
    return k;
}

int cs_graph_merge_su(struct cs_graph *g, char *err, size_t errsz)
{
    /* A second table keyed by location and name finds the .ci node a .su line repeats. */
    struct cs_graph byloc = { 0 };
    int rc = -1;
    for (size_t i = 0; i < g->n; i++) {
        if (!g->f[i].has_frame || !g->f[i].loc) continue;
        char *k = loc_key(g->f[i].loc, g->f[i].name);
        if (!k) goto oom;
        size_t j = cs_graph_find(&byloc, k, 1);
        free(k);
        if (j == SIZE_MAX) goto oom;
        byloc.f[j].frame = i;
    }
    for (size_t i = 0; i < g->nsu; i++) {
        struct cs_su_line *s = &g->su[i];
        char *k = loc_key(s->loc, s->name);
        if (!k) goto oom;
        size_t j = cs_graph_find(&byloc, k, 0);
        free(k);
        if (j != SIZE_MAX) {
            struct cs_func *f = &g->f[byloc.f[j].frame];
            if (f->frame != s->frame || f->dynamic != s->dynamic) {
                snprintf(err, errsz, "%s: %s: the .su file says %llu bytes%s, the .ci file %llu%s",
                         s->loc, s->name, (unsigned long long)s->frame,
                         s->dynamic ? " (dynamic)" : "", (unsigned long long)f->frame,
                         f->dynamic ? " (dynamic)" : "");
                goto out;
            }
            continue;
        }
        /* Not in any .ci file: a function whose calls we do not know. Its key is its
         * name, so that .ci edges to it (an extern defined in a file without .ci) find
         * it; a second definition of the same name (statics) gets a location key. */
        size_t idx = cs_graph_find(g, s->name, 0);
        if (idx != SIZE_MAX && g->f[idx].redefined && g->f[idx].has_graph)
            continue; /* a second .ci definition, which kept only its first location */
        if (idx != SIZE_MAX && g->f[idx].has_frame) {
            char *k2 = loc_key(s->loc, s->name);
            if (!k2) goto oom;
            idx = cs_graph_find(g, k2, 1);
            free(k2);
        } else if (idx == SIZE_MAX) {
            idx = cs_graph_find(g, s->name, 1);
        }
        if (idx == SIZE_MAX) goto oom;
        struct cs_func *f = &g->f[idx];
        if (f->has_frame) continue; /* the same .su file given twice */
        char *nm = strdup(s->name), *lc = strdup(s->loc);
        if (!nm || !lc) {
            free(nm);
            free(lc);
            goto oom;
        }
        free(f->name);
        free(f->loc);
        f->name = nm;
        f->loc = lc;
        f->frame = s->frame;
        f->has_frame = 1;
        f->dynamic = s->dynamic;
        f->bounded = s->bounded;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errsz, "out of memory");
out:
    cs_graph_free(&byloc);
    return rc;
}

/* Tarjan's algorithm without recursion. Components come out callees first (reverse
 * topological order of the condensed graph), which is the order the depth needs. */
int cs_graph_analyze(struct cs_graph *g)
{
    size_t n = g->n;
    if (n == 0) return 0;
    size_t *index = malloc(n * sizeof *index), *low = malloc(n * sizeof *low);
    size_t *stk = malloc(n * sizeof *stk), *cs = malloc(n * sizeof *cs);
    size_t *ce = malloc(n * sizeof *ce);
    unsigned char *onstk = calloc(n, 1);
    int rc = -1;
    if (!index || !low || !stk || !cs || !ce || !onstk) goto out;
    for (size_t i = 0; i < n; i++) {
        index[i] = SIZE_MAX;
        /* Known only now: the placeholder node may be declared after its edges. */
        g->f[i].calls_indirect = 0;
        for (size_t e = 0; e < g->f[i].ncallees; e++)
            if (g->f[g->f[i].callees[e]].is_indirect) g->f[i].calls_indirect = 1;
    }
    size_t counter = 0, sp = 0, csp = 0, nscc = 0;
    for (size_t root = 0; root < n; root++) {
        if (index[root] != SIZE_MAX) continue;
        cs[csp] = root;
        ce[csp++] = 0;
        index[root] = low[root] = counter++;
        stk[sp++] = root;
        onstk[root] = 1;
        while (csp) {
            size_t v = cs[csp - 1];
            struct cs_func *f = &g->f[v];
            if (ce[csp - 1] < f->ncallees) {
                size_t w = f->callees[ce[csp - 1]++];
                if (index[w] == SIZE_MAX) {
                    index[w] = low[w] = counter++;
                    stk[sp++] = w;
                    onstk[w] = 1;
                    cs[csp] = w;
                    ce[csp++] = 0;
                } else if (onstk[w] && index[w] < low[v]) {
                    low[v] = index[w];
                }
                continue;
            }
            /* All callees of v are done. */
            csp--;
            if (csp && low[v] < low[cs[csp - 1]]) low[cs[csp - 1]] = low[v];
            if (low[v] != index[v]) continue;
            /* v roots a component: pop it, then compute each member's result. */
            size_t first = sp;
            do {
                first--;
            } while (stk[first] != v);
            size_t size = sp - first;
            for (size_t k = first; k < sp; k++) {
                size_t u = stk[k];
                onstk[u] = 0;
                g->f[u].scc = nscc;
                g->f[u].in_cycle = size > 1;
                for (size_t e = 0; e < g->f[u].ncallees; e++)
                    if (g->f[u].callees[e] == u) g->f[u].in_cycle = 1;
            }
            for (size_t k = first; k < sp; k++) {
                size_t u = stk[k];
                struct cs_func *fu = &g->f[u];
                fu->done = 1;
                fu->next = SIZE_MAX;
                fu->depth = fu->has_frame ? fu->frame : 0;
                if (fu->in_cycle) {
                    fu->why = CS_RECURSION;
                    fu->culprit = u;
                    continue;
                }
                if (fu->dynamic && !fu->bounded) {
                    fu->why = CS_DYNAMIC;
                    fu->culprit = u;
                    continue;
                }
                if (fu->calls_indirect) {
                    fu->why = CS_INDIRECT;
                    fu->culprit = u;
                    continue;
                }
                uint64_t best = 0;
                for (size_t e = 0; e < fu->ncallees; e++) {
                    struct cs_func *c = &g->f[fu->callees[e]];
                    if (c->is_indirect) continue;
                    if (c->why != CS_BOUNDED) {
                        fu->why = c->why;
                        fu->culprit = c->culprit;
                        fu->next = fu->callees[e];
                        break;
                    }
                    if (fu->next == SIZE_MAX || c->depth > best) {
                        best = c->depth;
                        fu->next = fu->callees[e];
                    }
                }
                if (fu->why == CS_BOUNDED) fu->depth = cs_add_sat(fu->depth, best);
            }
            sp = first;
            nscc++;
        }
    }
    rc = 0;
out:
    free(index);
    free(low);
    free(stk);
    free(cs);
    free(ce);
    free(onstk);
    return rc;
}

size_t cs_graph_cycle(const struct cs_graph *g, size_t start, size_t *out)
{
    /* Breadth-first search inside start's component for the shortest way back. */
    size_t n = g->n, len = 1, *prev = malloc(n * sizeof *prev), *queue = malloc(n * sizeof *queue);
    out[0] = start;
    if (!prev || !queue) goto out;
    for (size_t i = 0; i < n; i++) prev[i] = SIZE_MAX;
    size_t qh = 0, qt = 0, hit = SIZE_MAX;
    queue[qt++] = start;
    while (qh < qt && hit == SIZE_MAX) {
        size_t v = queue[qh++];
        for (size_t e = 0; e < g->f[v].ncallees; e++) {
            size_t w = g->f[v].callees[e];
            if (w == start) {
                hit = v;
                break;
            }
            if (g->f[w].scc != g->f[start].scc || prev[w] != SIZE_MAX) continue;
            prev[w] = v;
            queue[qt++] = w;
        }
    }
    if (hit == SIZE_MAX) goto out;
    /* Walk back from hit to start, then store forwards. */
    size_t k = 0;
    for (size_t v = hit; v != start; v = prev[v]) queue[k++] = v;
    while (k) out[len++] = queue[--k];
out:
    free(prev);
    free(queue);
    return len;
}

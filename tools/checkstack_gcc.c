/*
 * checkstack_gcc.c - parsers for GCC's stack-usage files: `.su` (-fstack-usage, one
 * "file:line:col:function<TAB>bytes<TAB>qualifiers" line per function; clang omits
 * the column) and `.ci`
 * (-fcallgraph-info=su, the VCG graph format: node and edge objects). Both take a
 * buffer that need not be NUL-terminated, never read past len, and report the first
 * problem as "FILE:LINE: what" (line numbers from 1). Formats checked against gcc 12.
 */
#include "checkstack.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...)                                                   \
    do {                                                            \
        snprintf(err, errsz, __VA_ARGS__);                          \
        goto fail;                                                  \
    } while (0)

/* Parses a decimal byte count in [s, e); -1 when not all digits or above 2^63 - 1. */
static int parse_u64(const char *s, const char *e, uint64_t *out)
{
    uint64_t v = 0;
    if (s == e) return -1;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9') return -1;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX / 2 - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Qualifiers as GCC writes them: "static", "dynamic" or "dynamic,bounded". */
static int parse_qual(const char *s, size_t n, int *dynamic, int *bounded)
{
    if (n == 6 && !memcmp(s, "static", 6)) {
        *dynamic = *bounded = 0;
    } else if (n == 7 && !memcmp(s, "dynamic", 7)) {
        *dynamic = 1;
        *bounded = 0;
    } else if (n == 15 && !memcmp(s, "dynamic,bounded", 15)) {
        *dynamic = *bounded = 1;
    } else {
        return -1;
    }
    return 0;
}

/* Finds ":LINE:COL:" in the first field of a .su line; the file name before it may
 * itself hold colons, and a C++ name after it holds "::", so the first place where two
 * colon-separated numbers follow is taken. clang's -fstack-usage writes no column
 * ("file:LINE:function"), so one number is accepted when no place has two. Returns
 * the offset of the name (with *loc_end the end of the location), or 0. */
static size_t su_name_offset(const char *s, size_t n, size_t *loc_end)
{
    for (int numbers = 2; numbers >= 1; numbers--) {
        for (size_t i = 1; i < n; i++) {
            if (s[i] != ':') continue;
            size_t k = i;
            int ok = 1;
            for (int m = 0; m < numbers && ok; m++) {
                size_t j = k + 1;
                for (k = j; k < n && isdigit((unsigned char)s[k]); k++) {}
                ok = k > j && k < n && s[k] == ':';
            }
            if (!ok) continue;
            if (k + 1 >= n) return 0;
            *loc_end = k;
            return k + 1;
        }
    }
    return 0;
}

int cs_parse_su(struct cs_graph *g, const char *buf, size_t len, const char *file,
                char *err, size_t errsz)
{
    size_t line = 0, pos = 0;
    char *name = NULL, *loc = NULL;
    if (len == 0) {
        snprintf(err, errsz, "%s:1: empty file: no functions (gcc writes an empty .su "
                 "for a source without functions; pass the folder to skip such files)", file);
        return -1;
    }
    while (pos < len) {
        line++;
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl != NULL);
        if (n && s[n - 1] == '\r') n--;
        if (n == 0) continue;
        if (memchr(s, '\0', n))
            FAIL("%s:%zu: binary data where a `file:line:col:function<TAB>bytes<TAB>qualifiers` "
                 "line was expected", file, line);
        const char *t1 = memchr(s, '\t', n);
        const char *t2 = t1 ? memchr(t1 + 1, '\t', n - (size_t)(t1 + 1 - s)) : NULL;
        if (!t1 || !t2 || memchr(t2 + 1, '\t', n - (size_t)(t2 + 1 - s)))
            FAIL("%s:%zu: expected three tab-separated fields "
                 "`file:line:col:function<TAB>bytes<TAB>qualifiers`", file, line);
        size_t loc_end = 0, noff = su_name_offset(s, (size_t)(t1 - s), &loc_end);
        if (!noff) FAIL("%s:%zu: first field is not `file:line:col:function`", file, line);
        uint64_t bytes;
        if (parse_u64(t1 + 1, t2, &bytes) != 0)
            FAIL("%s:%zu: frame size `%.*s` is not a number of bytes", file, line,
                 (int)((t2 - t1 - 1) > 40 ? 40 : (t2 - t1 - 1)), t1 + 1);
        int dynamic, bounded;
        size_t qn = n - (size_t)(t2 + 1 - s);
        if (parse_qual(t2 + 1, qn, &dynamic, &bounded) != 0)
            FAIL("%s:%zu: qualifier `%.*s` is not static, dynamic or dynamic,bounded", file,
                 line, (int)(qn > 40 ? 40 : qn), t2 + 1);
        name = strndup(s + noff, (size_t)(t1 - s) - noff);
        loc = strndup(s, loc_end);
        if (!name || !loc) FAIL("%s:%zu: out of memory", file, line);
        if (cs_graph_add_su(g, name, loc, bytes, dynamic, bounded) != 0)
            FAIL("%s:%zu: out of memory", file, line);
        free(name);
        free(loc);
        name = loc = NULL;
    }
    return 0;
fail:
    free(name);
    free(loc);
    return -1;
}

/* ---- .ci: a tokenizer for the subset of VCG that gcc writes ---------------------- */

enum tok { T_EOF, T_IDENT, T_STRING, T_COLON, T_LBRACE, T_RBRACE, T_OTHER, T_BAD };

struct lexer {
    const char *buf;
    size_t len, pos, line;
    /* The current token: its kind, line and text (strings unescaped, NUL-terminated).
     * T_BAD is an unterminated string or no memory (oom says which). */
    enum tok tok;
    size_t tline;
    char *text;
    size_t tlen, tcap;
    int oom;
};

static int lex_put(struct lexer *lx, char c)
{
    if (lx->tlen + 1 >= lx->tcap) {
        size_t ncap = lx->tcap ? lx->tcap * 2 : 128;
        char *nt = realloc(lx->text, ncap);
        if (!nt) {
            lx->oom = 1;
            return -1;
        }
        lx->text = nt;
        lx->tcap = ncap;
    }
    lx->text[lx->tlen++] = c;
    lx->text[lx->tlen] = '\0';
    return 0;
}

static void lex_next(struct lexer *lx)
{
    lx->tlen = 0;
    if (lx->text) lx->text[0] = '\0';
    while (lx->pos < lx->len && isspace((unsigned char)lx->buf[lx->pos])) {
        if (lx->buf[lx->pos] == '\n') lx->line++;
        lx->pos++;
    }
    lx->tline = lx->line;
    if (lx->pos >= lx->len) {
        lx->tok = T_EOF;
        return;
    }
    char c = lx->buf[lx->pos];
    if (c == ':' || c == '{' || c == '}') {
        lx->pos++;
        lx->tok = c == ':' ? T_COLON : c == '{' ? T_LBRACE : T_RBRACE;
        return;
    }
    if (c == '"') {
        lx->pos++;
        while (lx->pos < lx->len && lx->buf[lx->pos] != '"') {
            char d = lx->buf[lx->pos++];
            if (d == '\n') lx->line++;
            if (d == '\\' && lx->pos < lx->len) {
                d = lx->buf[lx->pos++];
                if (d == 'n') d = '\n';
                else if (d == '\n') lx->line++;
            }
            if (lex_put(lx, d) != 0) {
                lx->tok = T_BAD;
                return;
            }
        }
        if (lx->pos >= lx->len) {
            lx->tok = T_BAD; /* unterminated string */
            return;
        }
        lx->pos++;
        lx->tok = T_STRING;
        if (lex_put(lx, '\0') != 0) lx->tok = T_BAD;
        lx->tlen--; /* keep the NUL but not as content */
        return;
    }
    if (isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.') {
        while (lx->pos < lx->len) {
            c = lx->buf[lx->pos];
            if (!isalnum((unsigned char)c) && c != '_' && c != '-' && c != '.') break;
            if (lex_put(lx, c) != 0) {
                lx->tok = T_BAD;
                return;
            }
            lx->pos++;
        }
        lx->tok = T_IDENT;
        return;
    }
    lx->pos++;
    lx->tok = T_OTHER; /* a character VCG does not use here */
}

/* Parses "N bytes (static|dynamic|dynamic,bounded)", the label's third line. */
static int parse_bytes_line(const char *s, uint64_t *frame, int *dynamic, int *bounded)
{
    const char *sp = strchr(s, ' ');
    if (!sp || parse_u64(s, sp, frame) != 0) return -1;
    if (strncmp(sp, " bytes (", 8) != 0) return -1;
    const char *q = sp + 8, *close = strchr(q, ')');
    if (!close || close[1] != '\0') return -1;
    return parse_qual(q, (size_t)(close - q), dynamic, bounded);
}

struct ci_obj {
    char *title, *label, *source, *target;
};

static void obj_free(struct ci_obj *o)
{
    free(o->title);
    free(o->label);
    free(o->source);
    free(o->target);
    memset(o, 0, sizeof *o);
}

/* Records a node: the label "name\nfile:line:col\nN bytes (qual)" gives a definition;
 * a label without a byte count is a function defined elsewhere (an ellipse in VCG). */
static int add_node(struct cs_graph *g, struct ci_obj *o, const char *file, size_t line,
                    char *err, size_t errsz)
{
    size_t idx = cs_graph_find(g, o->title, 1);
    if (idx == SIZE_MAX) FAIL("%s:%zu: out of memory", file, line);
    struct cs_func *f = &g->f[idx];
    if (!strcmp(o->title, "__indirect_call") || (o->label && strstr(o->label, "Indirect Call")))
        f->is_indirect = 1;
    if (!o->label) return 0;
    char *l1 = o->label, *l2 = strchr(l1, '\n'), *l3 = l2 ? strchr(l2 + 1, '\n') : NULL;
    if (l2) *l2++ = '\0';
    if (l3) *l3++ = '\0';
    if (l3) {
        uint64_t frame;
        int dynamic, bounded;
        if (parse_bytes_line(l3, &frame, &dynamic, &bounded) != 0)
            FAIL("%s:%zu: node \"%s\": label's third line `%.60s` is not "
                 "`N bytes (static|dynamic|dynamic,bounded)`", file, line, o->title, l3);
        if (f->has_frame) {
            /* Defined again: the same file given twice, or (in a build folder)
             * alternative implementations or several programs. Keep the worse frame;
             * the calls of both are already merged. The caller warns. */
            if (f->frame != frame || f->dynamic != (unsigned)dynamic ||
                (f->loc && l2 && strcmp(f->loc, l2) != 0))
                f->redefined = 1;
            int unbounded = (f->dynamic && !f->bounded) || (dynamic && !bounded);
            if (frame > f->frame) f->frame = frame;
            f->dynamic |= dynamic != 0;
            f->bounded = f->dynamic && !unbounded;
            return 0;
        }
        f->frame = frame;
        f->dynamic = dynamic != 0;
        f->bounded = bounded != 0;
        f->has_frame = 1;
        f->has_graph = 1;
        free(f->loc);
        f->loc = NULL;
        if (l2 && *l2 && !(f->loc = strdup(l2))) FAIL("%s:%zu: out of memory", file, line);
    } else if (f->has_frame || !strncmp(l1, "__builtin_", 10)) {
        /* A reference must not rename a definition, and the title ("memset") reads
         * better than the "__builtin_memset" label of a builtin gcc expanded. */
        return 0;
    }
    if (*l1) {
        char *nm = strdup(l1);
        if (!nm) FAIL("%s:%zu: out of memory", file, line);
        free(f->name);
        f->name = nm;
    }
    return 0;
fail:
    return -1;
}

int cs_parse_ci(struct cs_graph *g, const char *buf, size_t len, const char *file,
                char *err, size_t errsz)
{
    struct lexer lx = { .buf = buf, .len = len, .line = 1 };
    struct ci_obj o = { 0 };
    int rc = -1;
    if (len == 0) FAIL("%s:1: empty file: expected `graph: {` (gcc -fcallgraph-info=su)", file);
    if (memchr(buf, '\0', len)) {
        size_t l = 1;
        for (const char *p = buf; *p; p++) l += *p == '\n';
        FAIL("%s:%zu: binary data in a .ci file", file, l);
    }
    lex_next(&lx);
    if (lx.tok != T_IDENT || strcmp(lx.text, "graph") != 0)
        FAIL("%s:%zu: expected `graph: {` (gcc -fcallgraph-info=su output)", file, lx.tline);
    lex_next(&lx);
    if (lx.tok != T_COLON) FAIL("%s:%zu: expected `:` after `graph`", file, lx.tline);
    lex_next(&lx);
    if (lx.tok != T_LBRACE) FAIL("%s:%zu: expected `{` after `graph:`", file, lx.tline);
    size_t gline = lx.tline;
    for (;;) {
        lex_next(&lx);
        if (lx.tok == T_RBRACE) break;
        if (lx.tok == T_EOF)
            FAIL("%s:%zu: unterminated graph: `{` opened here has no `}`", file, gline);
        if (lx.tok != T_IDENT)
            FAIL("%s:%zu: %s", file, lx.tline, lx.oom ? "out of memory" :
                 "expected an attribute, `node:` or `edge:`");
        /* Copy the key: the next token reuses the lexer's buffer. */
        int is_node = !strcmp(lx.text, "node"), is_edge = !strcmp(lx.text, "edge");
        char key[32];
        snprintf(key, sizeof key, "%s", lx.text);
        size_t kline = lx.tline;
        lex_next(&lx);
        if (lx.tok != T_COLON) FAIL("%s:%zu: expected `:` after `%s`", file, lx.tline, key);
        lex_next(&lx);
        if (!is_node && !is_edge) {
            /* A graph attribute such as title: its value is one string or word. */
            if (lx.tok != T_STRING && lx.tok != T_IDENT)
                FAIL("%s:%zu: attribute `%s` has no value%s", file, kline, key,
                     lx.tok == T_BAD ? " (unterminated string?)" : "");
            continue;
        }
        if (lx.tok != T_LBRACE) FAIL("%s:%zu: expected `{` after `%s:`", file, lx.tline, key);
        for (;;) {
            lex_next(&lx);
            if (lx.tok == T_RBRACE) break;
            if (lx.tok == T_EOF || lx.tok == T_BAD || lx.tok == T_LBRACE)
                FAIL("%s:%zu: unterminated %s: `{` opened here has no `}`%s", file, kline, key,
                     lx.oom ? " (out of memory)" : "");
            if (lx.tok != T_IDENT)
                FAIL("%s:%zu: expected an attribute name in %s", file, lx.tline, key);
            char attr[32];
            snprintf(attr, sizeof attr, "%s", lx.text);
            lex_next(&lx);
            if (lx.tok != T_COLON)
                FAIL("%s:%zu: expected `:` after `%s`", file, lx.tline, attr);
            lex_next(&lx);
            if (lx.tok == T_EOF || lx.tok == T_BAD)
                FAIL("%s:%zu: unterminated %s: `{` opened here has no `}`", file, kline, key);
            if (lx.tok != T_STRING && lx.tok != T_IDENT)
                FAIL("%s:%zu: attribute `%s` has no value", file, lx.tline, attr);
            char **slot = NULL;
            if (is_node && !strcmp(attr, "title")) slot = &o.title;
            else if (is_node && !strcmp(attr, "label")) slot = &o.label;
            else if (is_edge && !strcmp(attr, "sourcename")) slot = &o.source;
            else if (is_edge && !strcmp(attr, "targetname")) slot = &o.target;
            if (slot) {
                free(*slot);
                *slot = strdup(lx.text ? lx.text : "");
                if (!*slot) FAIL("%s:%zu: out of memory", file, lx.tline);
            }
        }
        if (is_node) {
            if (!o.title || !*o.title) FAIL("%s:%zu: node without a title", file, kline);
            if (add_node(g, &o, file, kline, err, errsz) != 0) goto fail;
        } else {
            if (!o.source || !o.target || !*o.source || !*o.target)
                FAIL("%s:%zu: edge without sourcename and targetname", file, kline);
            size_t a = cs_graph_find(g, o.source, 1);
            size_t b = a == SIZE_MAX ? SIZE_MAX : cs_graph_find(g, o.target, 1);
            if (b == SIZE_MAX || cs_graph_add_edge(g, a, b) != 0)
                FAIL("%s:%zu: out of memory", file, kline);
            /* A caller named only by edges still has a known call list from here. */
        }
        obj_free(&o);
    }
    lex_next(&lx);
    if (lx.tok != T_EOF)
        FAIL("%s:%zu: unexpected text after the graph's closing `}`", file, lx.tline);
    rc = 0;
fail:
    obj_free(&o);
    free(lx.text);
    return rc;
}

/*
 * checkstack_unit.c - the parsers and decoders of `vmstack checkstack` called directly:
 * hand-assembled prologues with known frames for both architectures, .su and .ci text
 * with exact error positions, the graph analysis on shapes the gcc inputs cannot make
 * (long chains, saturation), and a synthetic ELF cut at every length.
 */
#include "test.h"

#include "checkstack.h"

static char err[1024];

#define X(...) ((const unsigned char[]){ __VA_ARGS__ }), sizeof((const unsigned char[]){ __VA_ARGS__ })

TEST(x86_64_prologues)
{
    /* push %rbp; mov %rsp,%rbp; push %rbx; sub $0x28,%rsp; call; ...: 8 + 8 + 8 + 40. */
    ASSERT_EQ(cs_x86_64_frame(X(0x55, 0x48, 0x89, 0xe5, 0x53, 0x48, 0x83, 0xec, 0x28,
                                0xe8, 0, 0, 0, 0, 0xc3)), 64);
    /* endbr64; sub $0xf30,%rsp (imm32); ret: 8 + 3888. */
    ASSERT_EQ(cs_x86_64_frame(X(0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x81, 0xec, 0x30, 0x0f, 0, 0,
                                0xc3)), 3896);
    /* A leaf without a frame: only the return address. */
    ASSERT_EQ(cs_x86_64_frame(X(0x89, 0xf8, 0xc3)), 8);
    /* Shrink-wrapped: test %edi,%edi; je +1; ret; push %r12; push %rbx; sub $0x18,%rsp;
     * call: the early return is stepped over. 8 + 16 + 24. */
    ASSERT_EQ(cs_x86_64_frame(X(0x85, 0xff, 0x74, 0x01, 0xc3, 0x41, 0x54, 0x53, 0x48, 0x83,
                                0xec, 0x18, 0xe8, 0, 0, 0, 0, 0xc3)), 48);
    /* Stack-clash probing loop: lea -0x3000(%rsp),%r11; L: sub $0x1000,%rsp;
     * orq $0,(%rsp); cmp %r11,%rsp; jne L; sub $0x20,%rsp: 8 + 0x3000 + 0x20. */
    ASSERT_EQ(cs_x86_64_frame(X(0x4c, 0x8d, 0x9c, 0x24, 0x00, 0xd0, 0xff, 0xff,
                                0x48, 0x81, 0xec, 0x00, 0x10, 0, 0,
                                0x48, 0x83, 0x0c, 0x24, 0x00,
                                0x4c, 0x39, 0xdc, 0x75, 0xef,
                                0x48, 0x83, 0xec, 0x20, 0xe8, 0, 0, 0, 0)), 8 + 0x3000 + 0x20);
    /* gcc -O0's `add $-128,%rsp` allocates. */
    ASSERT_EQ(cs_x86_64_frame(X(0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xc4, 0x80, 0xc9, 0xc3)), 144);
    /* Arguments pushed for a call count once (gcc's "dynamic,bounded"): sub $8,%rsp;
     * push $0; call; add $16,%rsp; ret after a prologue of push %rbx: 8 + 8 + 16. */
    ASSERT_EQ(cs_x86_64_frame(X(0x53, 0xe8, 0, 0, 0, 0, 0x48, 0x83, 0xec, 0x08, 0x6a, 0x00,
                                0xe8, 0, 0, 0, 0, 0x48, 0x83, 0xc4, 0x10, 0x5b, 0xc3)), 32);
    /* Realignment: push %rbp; mov %rsp,%rbp; and $-32,%rsp; sub $0x40,%rsp: 16 rounded
     * up to 32, plus 64. */
    ASSERT_EQ(cs_x86_64_frame(X(0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xe4, 0xe0, 0x48, 0x83,
                                0xec, 0x40, 0xe8, 0, 0, 0, 0)), 96);
    /* Truncated in the middle of an instruction: what was decoded so far. */
    ASSERT_EQ(cs_x86_64_frame(X(0x55, 0x48, 0x81, 0xec, 0x00)), 16);
    ASSERT_EQ(cs_x86_64_frame(NULL, 0), 8);
}

static size_t put32(unsigned char *p, size_t k, uint32_t v)
{
    p[4 * k] = (unsigned char)v;
    p[4 * k + 1] = (unsigned char)(v >> 8);
    p[4 * k + 2] = (unsigned char)(v >> 16);
    p[4 * k + 3] = (unsigned char)(v >> 24);
    return k + 1;
}

TEST(aarch64_prologues)
{
    unsigned char c[64];
    size_t k = 0;
    k = put32(c, k, 0xa9b17bfd); /* stp x29, x30, [sp, #-240]! */
    k = put32(c, k, 0x910003fd); /* mov x29, sp */
    k = put32(c, k, 0x94000000); /* bl */
    ASSERT_EQ(cs_aarch64_frame(c, 4 * k), 240);
    k = 0;
    k = put32(c, k, 0xd13e83ff); /* sub sp, sp, #0xfa0 */
    k = put32(c, k, 0xd65f03c0); /* ret */
    ASSERT_EQ(cs_aarch64_frame(c, 4 * k), 4000);
    k = 0;
    k = put32(c, k, 0xd14007ff); /* sub sp, sp, #0x1, lsl #12 */
    k = put32(c, k, 0xd10403ff); /* sub sp, sp, #0x100 */
    ASSERT_EQ(cs_aarch64_frame(c, 4 * k), 4096 + 256);
    k = 0;
    k = put32(c, k, 0xd282040c); /* mov x12, #0x1020 */
    k = put32(c, k, 0xcb2c63ff); /* sub sp, sp, x12 */
    k = put32(c, k, 0xa9007bfd); /* stp x29, x30, [sp] (no writeback) */
    k = put32(c, k, 0x94000000); /* bl */
    ASSERT_EQ(cs_aarch64_frame(c, 4 * k), 0x1020);
    k = 0;
    k = put32(c, k, 0x34000041); /* cbz w1, +8 */
    k = put32(c, k, 0xd65f03c0); /* ret: the early exit of a shrink-wrapped function */
    k = put32(c, k, 0xa9bb7bfd); /* stp x29, x30, [sp, #-80]! */
    k = put32(c, k, 0xf81f0ff3); /* str x19, [sp, #-16]! */
    k = put32(c, k, 0x94000000); /* bl */
    ASSERT_EQ(cs_aarch64_frame(c, 4 * k), 96);
    ASSERT_EQ(cs_aarch64_frame(c, 3), 0);
}

TEST(su_parsing)
{
    struct cs_graph g = { 0 };
    static const char su[] =
        "C:/src/x.c:1:5:plain\t16\tstatic\r\n"
        "w.cc:2:5:int n::S::m(int)\t32\tstatic\n"
        "\n"
        "a:b.c:7:3:dyn\t48\tdynamic,bounded\n"
        "y.c:3:5:vla\t16\tdynamic\n"
        "clang.c:4:leaf\t3880\tstatic\n";
    ASSERT_EQ(cs_parse_su(&g, su, sizeof su - 1, "t.su", err, sizeof err), 0);
    ASSERT_EQ(g.nsu, 5);
    ASSERT(!strcmp(g.su[4].name, "leaf")); /* clang's format has no column */
    ASSERT(!strcmp(g.su[4].loc, "clang.c:4"));
    ASSERT(!strcmp(g.su[0].name, "plain"));
    ASSERT(!strcmp(g.su[0].loc, "C:/src/x.c:1:5"));
    ASSERT(!strcmp(g.su[1].name, "int n::S::m(int)"));
    ASSERT(!strcmp(g.su[2].loc, "a:b.c:7:3"));
    ASSERT(g.su[2].dynamic && g.su[2].bounded);
    ASSERT(g.su[3].dynamic && !g.su[3].bounded);
    ASSERT_EQ(g.su[3].frame, 16);
    ASSERT_EQ(cs_graph_merge_su(&g, err, sizeof err), 0);
    ASSERT_NE(cs_graph_find(&g, "int n::S::m(int)", 0), SIZE_MAX);
    cs_graph_free(&g);

    static const char *bad[] = {
        "x.c:1:5:f\t16\n",                   /* two fields */
        "x.c:1:5:f\t16\tstatic\textra\n",    /* four fields */
        "f\t16\tstatic\n",                   /* no location */
        "x.c:1:5:\t16\tstatic\n",            /* no name */
        "x.c:1:5:f\t\tstatic\n",             /* no number */
        "x.c:1:5:f\t99999999999999999999\tstatic\n", /* overflow */
        "x.c:1:5:f\t9223372036854775808\tstatic\n",  /* 2^63: one beyond the limit */
        "x.c:1:5:f\t16\tStatic\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[256];
        int n = snprintf(buf, sizeof buf, "ok.c:1:1:ok\t8\tstatic\n%s", bad[i]);
        err[0] = '\0';
        ASSERT_EQ(cs_parse_su(&g, buf, (size_t)n, "b.su", err, sizeof err), -1);
        ASSERT_STR_CONTAINS(err, "b.su:2: ");
        cs_graph_free(&g);
    }
}

/* The largest frame a .su line may give is 2^63 - 1, exactly (one more is refused
 * above, as an overflow). */
TEST(su_frame_limit_is_exact)
{
    struct cs_graph g = { 0 };
    static const char su[] = "x.c:1:5:f\t9223372036854775807\tstatic\n";
    ASSERT_EQ(cs_parse_su(&g, su, sizeof su - 1, "x.su", err, sizeof err), 0);
    ASSERT_EQ(g.su[0].frame, 9223372036854775807ULL);
    cs_graph_free(&g);
}

TEST(ci_parsing)
{
    struct cs_graph g = { 0 };
    /* Edges before their nodes, the indirect placeholder declared after its edge, an
     * escaped quote, a builtin label, and one function defined in two files. */
    static const char ci[] =
        "graph: { title: \"t.c\"\n"
        "edge: { sourcename: \"f\" targetname: \"__indirect_call\" label: \"t.c:3:1\" }\n"
        "node: { title: \"f\" label: \"f\\nt.c:1:5\\n64 bytes (static)\" }\n"
        "node: { title: \"__indirect_call\" label: \"Indirect Call Placeholder\" shape : ellipse }\n"
        "edge: { sourcename: \"g\" targetname: \"memset\" }\n"
        "node: { title: \"memset\" label: \"__builtin_memset\\n<built-in>\" shape : ellipse }\n"
        "node: { title: \"t.c:g\" label: \"g \\\"q\\\"\\nt.c:9:12\\n32 bytes (dynamic,bounded)\" }\n"
        "node: { title: \"g\" label: \"g\\nt.c:7:5\\n16 bytes (static)\" }\n"
        "node: { title: \"g\" label: \"g\\nt.c:7:5\\n16 bytes (static)\" }\n"
        "}\n";
    ASSERT_EQ(cs_parse_ci(&g, ci, sizeof ci - 1, "t.ci", err, sizeof err), 0);
    ASSERT_EQ(cs_graph_analyze(&g), 0);
    size_t f = cs_graph_find(&g, "f", 0), gg = cs_graph_find(&g, "g", 0);
    size_t ms = cs_graph_find(&g, "memset", 0), st = cs_graph_find(&g, "t.c:g", 0);
    ASSERT_NE(f, SIZE_MAX);
    ASSERT_EQ(g.f[f].frame, 64);
    ASSERT(g.f[f].calls_indirect);
    ASSERT_EQ(g.f[f].why, CS_INDIRECT);
    ASSERT_EQ(g.f[gg].why, CS_BOUNDED);
    ASSERT_EQ(g.f[gg].depth, 16);
    ASSERT(!g.f[ms].has_frame);
    ASSERT(!strcmp(g.f[ms].name, "memset"));
    ASSERT(!strcmp(g.f[st].name, "g \"q\""));
    ASSERT(g.f[st].dynamic && g.f[st].bounded);
    ASSERT_EQ(g.f[st].why, CS_BOUNDED);
    cs_graph_free(&g);

    struct { const char *text, *want; } bad[] = {
        { "graph: { title: \"t\"\nnode: { title: \"f\"\n", "b.ci:2: unterminated node" },
        { "graph: { title: \"t\"\nnode: { title: \"f\" label: \"f\n", "b.ci:2: unterminated node" },
        { "graph: { title: \"t\"\n", "b.ci:1: unterminated graph" },
        { "graph: { title: \"t\"\n}\n}\n", "b.ci:3: unexpected text" },
        { "digraph {}\n", "b.ci:1: expected `graph: {`" },
        { "graph: { title: \"t\"\nedge: { sourcename: \"f\" }\n}", "b.ci:2: edge without" },
        { "graph: { title: \"t\"\nnode: { label: \"f\" }\n}", "b.ci:2: node without a title" },
        { "graph: { title: \"t\"\n\n\nnode: { title: \"f\" label: \"f\\nx\\n1 bytes\" }\n}",
          "b.ci:4: node \"f\": label's third line" },
        { "graph: { title: \"t\" node: { title: \"f\" ! }\n}", "b.ci:1: expected an attribute name" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ASSERT_EQ(cs_parse_ci(&g, bad[i].text, strlen(bad[i].text), "b.ci", err, sizeof err), -1);
        ASSERT_STR_CONTAINS(err, bad[i].want);
        cs_graph_free(&g);
    }
}

TEST(ci_redefinition_keeps_the_worse_frame)
{
    /* Two backends defining the same function (arena.c and direct.c in this project):
     * the larger frame, the union of the calls, and a flag for the warning. */
    struct cs_graph g = { 0 };
    static const char a[] =
        "graph: { title: \"a.c\"\n"
        "node: { title: \"f\" label: \"f\\na.c:1:5\\n16 bytes (static)\" }\n"
        "edge: { sourcename: \"f\" targetname: \"x\" }\n}\n";
    static const char b[] =
        "graph: { title: \"b.c\"\n"
        "node: { title: \"f\" label: \"f\\nb.c:1:5\\n48 bytes (dynamic,bounded)\" }\n"
        "edge: { sourcename: \"f\" targetname: \"y\" }\n}\n";
    ASSERT_EQ(cs_parse_ci(&g, a, sizeof a - 1, "a.ci", err, sizeof err), 0);
    ASSERT_EQ(cs_parse_ci(&g, b, sizeof b - 1, "b.ci", err, sizeof err), 0);
    size_t f = cs_graph_find(&g, "f", 0);
    ASSERT(g.f[f].redefined);
    ASSERT_EQ(g.f[f].frame, 48);
    ASSERT(g.f[f].dynamic && g.f[f].bounded);
    ASSERT_EQ(g.f[f].ncallees, 2);
    /* The .su line of the second definition repeats it: no extra function. */
    static const char su[] = "b.c:1:5:f\t48\tdynamic,bounded\n";
    size_t before = g.n;
    ASSERT_EQ(cs_parse_su(&g, su, sizeof su - 1, "b.su", err, sizeof err), 0);
    ASSERT_EQ(cs_graph_merge_su(&g, err, sizeof err), 0);
    ASSERT_EQ(g.n, before);
    /* The same file twice is not a redefinition. */
    cs_graph_free(&g);
    ASSERT_EQ(cs_parse_ci(&g, a, sizeof a - 1, "a.ci", err, sizeof err), 0);
    ASSERT_EQ(cs_parse_ci(&g, a, sizeof a - 1, "a.ci", err, sizeof err), 0);
    ASSERT(!g.f[cs_graph_find(&g, "f", 0)].redefined);
    cs_graph_free(&g);
}

TEST(su_merges_with_ci)
{
    struct cs_graph g = { 0 };
    static const char ci[] =
        "graph: { title: \"t.c\"\n"
        "node: { title: \"f\" label: \"f\\nt.c:1:5\\n64 bytes (static)\" }\n"
        "edge: { sourcename: \"f\" targetname: \"h\" }\n}\n";
    static const char su[] = "t.c:1:5:f\t64\tstatic\nu.c:2:5:h\t100\tstatic\n";
    ASSERT_EQ(cs_parse_su(&g, su, sizeof su - 1, "t.su", err, sizeof err), 0);
    ASSERT_EQ(cs_parse_ci(&g, ci, sizeof ci - 1, "t.ci", err, sizeof err), 0);
    ASSERT_EQ(cs_graph_merge_su(&g, err, sizeof err), 0);
    ASSERT_EQ(cs_graph_analyze(&g), 0);
    size_t f = cs_graph_find(&g, "f", 0), h = cs_graph_find(&g, "h", 0);
    ASSERT_EQ(g.n, 2); /* f is not duplicated; h (only in a .su) joins the graph */
    ASSERT_EQ(g.f[f].depth, 164);
    ASSERT(!g.f[h].has_graph);
    cs_graph_free(&g);

    static const char su2[] = "t.c:1:5:f\t72\tstatic\n";
    ASSERT_EQ(cs_parse_su(&g, su2, sizeof su2 - 1, "t.su", err, sizeof err), 0);
    ASSERT_EQ(cs_parse_ci(&g, ci, sizeof ci - 1, "t.ci", err, sizeof err), 0);
    ASSERT_EQ(cs_graph_merge_su(&g, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "the .su file says 72 bytes, the .ci file 64");
    cs_graph_free(&g);
}

TEST(graph_long_chain_and_saturation)
{
    /* 200000 functions in one chain: the analysis must not recurse on our stack. */
    struct cs_graph g = { 0 };
    enum { N = 200000 };
    char key[32];
    for (size_t i = 0; i < N; i++) {
        snprintf(key, sizeof key, "f%zu", i);
        size_t k = cs_graph_find(&g, key, 1);
        ASSERT_EQ(k, i);
        g.f[k].has_frame = 1;
        g.f[k].frame = 16;
        if (i) ASSERT_EQ(cs_graph_add_edge(&g, i - 1, i), 0);
    }
    ASSERT_EQ(cs_graph_analyze(&g), 0);
    ASSERT_EQ(g.f[0].why, CS_BOUNDED);
    ASSERT_EQ(g.f[0].depth, 16ull * N);
    /* Close the chain into one big cycle. */
    ASSERT_EQ(cs_graph_add_edge(&g, N - 1, 0), 0);
    ASSERT_EQ(cs_graph_analyze(&g), 0);
    ASSERT_EQ(g.f[0].why, CS_RECURSION);
    size_t *cyc = malloc(N * sizeof *cyc);
    ASSERT_EQ(cs_graph_cycle(&g, 0, cyc), N);
    ASSERT_EQ(cyc[1], 1);
    free(cyc);
    cs_graph_free(&g);

    /* Frames near 2^64 saturate instead of wrapping into small depths. */
    size_t a = cs_graph_find(&g, "a", 1), b = cs_graph_find(&g, "b", 1);
    g.f[a].has_frame = g.f[b].has_frame = 1;
    g.f[a].frame = g.f[b].frame = UINT64_MAX / 2 + 10;
    ASSERT_EQ(cs_graph_add_edge(&g, a, b), 0);
    ASSERT_EQ(cs_graph_analyze(&g), 0);
    ASSERT_UEQ(g.f[a].depth, CS_SATURATED);
    cs_graph_free(&g);
}

/* A minimal x86-64 ET_REL: header, .text, .symtab, .strtab, section headers. */
static size_t make_elf(unsigned char *b)
{
    static const unsigned char text[] = { 0x55, 0x48, 0x81, 0xec, 0x00, 0x01, 0, 0, 0xe8, 0, 0, 0, 0, 0xc3,
                                          0x48, 0x83, 0xec, 0x18, 0xc3 };
    static const char strtab[] = "\0big\0small";
    memset(b, 0, 1024);
    memcpy(b, "\177ELF\2\1\1", 7);
    b[16] = 1;                   /* ET_REL */
    b[18] = 62;                  /* EM_X86_64 */
    size_t text_off = 64, sym_off = 96, str_off = 96 + 3 * 24, sh_off = 256;
    memcpy(b + text_off, text, sizeof text);
    /* symbols: null, big (0..14), small (14..19) */
    unsigned char *s = b + sym_off + 24;
    s[0] = 1; s[4] = 0x12; s[6] = 1; s[16] = 14;
    s += 24;
    s[0] = 5; s[4] = 0x12; s[6] = 1; s[8] = 14; s[16] = 5;
    memcpy(b + str_off, strtab, sizeof strtab);
    unsigned char *sh = b + sh_off;
    /* [1] .text */
    sh[64 + 4] = 1; sh[64 + 8] = 6; sh[64 + 24] = (unsigned char)text_off; sh[64 + 32] = sizeof text;
    /* [2] .symtab -> link 3 */
    sh[128 + 4] = 2; sh[128 + 24] = (unsigned char)sym_off; sh[128 + 32] = 72; sh[128 + 40] = 3;
    sh[128 + 56] = 24;
    /* [3] .strtab */
    sh[192 + 4] = 3; sh[192 + 24] = (unsigned char)str_off; sh[192 + 32] = sizeof strtab;
    b[40] = (unsigned char)sh_off; b[41] = (unsigned char)(sh_off >> 8);
    b[58] = 64;
    b[60] = 4;
    return sh_off + 4 * 64;
}

TEST(elf_synthetic_and_every_truncation)
{
    static unsigned char b[1024];
    size_t len = make_elf(b);
    struct cs_frames fr = { 0 };
    ASSERT_EQ(cs_parse_elf(&fr, b, len, "s.o", err, sizeof err), 0);
    ASSERT_EQ(fr.n, 2);
    ASSERT(!strcmp(fr.v[0].name, "big"));
    ASSERT_EQ(fr.v[0].bytes, 8 + 8 + 256);
    ASSERT(!strcmp(fr.v[1].name, "small"));
    ASSERT_EQ(fr.v[1].bytes, 8 + 24);
    cs_frames_free(&fr);
    /* Every shorter length fails with a message naming the file; none reads past it
     * (run under ASan via scripts/fuzz.sh or VMSTACK_SANITIZE to check the "past"). */
    for (size_t n = 0; n < len; n++) {
        unsigned char *copy = malloc(n ? n : 1);
        memcpy(copy, b, n);
        err[0] = '\0';
        ASSERT_EQ(cs_parse_elf(&fr, copy, n, "s.o", err, sizeof err), -1);
        ASSERT(!strncmp(err, "s.o: ", 5));
        cs_frames_free(&fr);
        free(copy);
    }
    /* A symbol name offset outside the string table is corrupt, not a crash. */
    b[96 + 24] = 200;
    ASSERT_EQ(cs_parse_elf(&fr, b, len, "s.o", err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "s.o: corrupt ELF: symbol 1's name");
    cs_frames_free(&fr);
}

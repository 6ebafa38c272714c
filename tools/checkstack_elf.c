/*
 * checkstack_elf.c - frame sizes straight from an ELF file (64-bit little-endian,
 * x86-64 or aarch64; executable, shared object or relocatable object), without objdump:
 * every FUNC symbol of .symtab (or .dynsym when stripped) is located in its section and
 * its code is decoded: the prologue, and on x86-64 the body for arguments pushed for
 * calls. Work is linear in the code size. Every offset read from the file is bounds-checked against the
 * buffer before use, since the file may be truncated, corrupt or hostile (fuzzed).
 * The frame reported is what GCC's -fstack-usage reports for the same function; the
 * exact relation per architecture is in docs/checkstack.md and tested.
 */
#include "checkstack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ELF constants (elf(5)); spelled out so the parser is independent of <elf.h>. */
#define EM_X86_64_ 62
#define EM_AARCH64_ 183
#define SHT_SYMTAB_ 2
#define SHT_NOBITS_ 8
#define SHT_DYNSYM_ 11
#define SHF_EXECINSTR_ 0x4
#define STT_FUNC_ 2
#define SHN_LORESERVE_ 0xff00

/* The longest prologue we decode. GCC's prologues are a few instructions, but
 * shrink-wrapping may put an early-exit path first; the window bounds the search and
 * keeps stray matches deep inside a body out. */
#define X86_WINDOW 512
#define X86_MAX_INSNS 128
/* Functions are walked to their end for pushed arguments, up to this many bytes. */
#define X86_BODY_MAX ((size_t)1 << 18)
#define A64_WINDOW_INSNS 96

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* True when [off, off + size) lies inside a buffer of len bytes, without overflow. */
static int in_bounds(uint64_t off, uint64_t size, size_t len)
{
    return off <= len && size <= len - off;
}

/* One decoded x86-64 instruction: enough to step over it and to recognise the few
 * that move %rsp. */
struct x86_insn {
    size_t len;        /* 0: not decodable (invalid, or runs past the buffer) */
    int rex;           /* the REX byte, or 0 */
    int map;           /* 0: one-byte opcodes, 1: 0F, 2: 0F38, 3: 0F3A, 4: VEX/EVEX */
    int op;
    int has_modrm, modrm;
    size_t disp_off;   /* offset of the displacement, when disp_len */
    int disp_len;
    size_t imm_off;    /* offset of the immediate, when imm_len */
    int imm_len;
};

/* ModRM: does the one-byte opcode op take one? (1 = yes; x87, groups and ALU forms.) */
static int x86_modrm1(int op)
{
    if (op < 0x40) return (op & 7) < 4;
    if (op == 0x63 || op == 0x69 || op == 0x6b) return 1;
    if (op >= 0x80 && op <= 0x8f) return 1;
    if (op == 0xc0 || op == 0xc1 || op == 0xc6 || op == 0xc7) return 1;
    if ((op >= 0xd0 && op <= 0xd3) || (op >= 0xd8 && op <= 0xdf)) return 1;
    if (op == 0xf6 || op == 0xf7 || op == 0xfe || op == 0xff) return 1;
    return 0;
}

/* Decodes the length of the instruction at c[0..len): prefixes, REX, VEX/EVEX, the
 * opcode maps, ModRM/SIB/displacement and immediates (Intel SDM vol. 2, ch. 2 and
 * appendix A). Instructions never seen in compiled C (far jumps, BCD) give len 0. */
static struct x86_insn x86_decode(const unsigned char *c, size_t len)
{
    struct x86_insn in = { 0 };
    size_t i = 0;
    int opsize16 = 0;
    for (; i < len && i < 14; i++) {
        unsigned char b = c[i];
        if (b == 0x66) opsize16 = 1;
        else if (!(b == 0x67 || b == 0xf0 || b == 0xf2 || b == 0xf3 || b == 0x2e ||
                   b == 0x36 || b == 0x3e || b == 0x26 || b == 0x64 || b == 0x65)) break;
    }
    if (i < len && (c[i] & 0xf0) == 0x40) in.rex = c[i++];
    if (i >= len) return in;
    int op = c[i++], imm = 0, rexw = (in.rex & 8) != 0;
    if (op == 0xc4 || op == 0xc5 || op == 0x62) {
        /* VEX (2 or 3 bytes) or EVEX (4 bytes): the map is in the prefix; all take a
         * ModRM, and only map 0F3A adds an imm8. */
        size_t plen = op == 0xc5 ? 1 : op == 0xc4 ? 2 : 3;
        if (i + plen >= len) return in;
        int map = op == 0xc5 ? 1 : c[i] & (op == 0x62 ? 3 : 0x1f);
        i += plen;
        in.map = 4;
        in.op = c[i++];
        in.has_modrm = 1;
        imm = map == 3 ? 1 : 0;
    } else if (op == 0x0f) {
        if (i >= len) return in;
        int op2 = c[i++];
        if (op2 == 0x38 || op2 == 0x3a) {
            if (i >= len) return in;
            in.map = op2 == 0x38 ? 2 : 3;
            in.op = c[i++];
            in.has_modrm = 1;
            imm = op2 == 0x3a;
        } else {
            in.map = 1;
            in.op = op2;
            in.has_modrm = !((op2 >= 0x04 && op2 <= 0x0b && op2 != 0x0d) || op2 == 0x0e ||
                             (op2 >= 0x30 && op2 <= 0x37) || op2 == 0x77 ||
                             (op2 >= 0x80 && op2 <= 0x8f) || op2 == 0xa0 || op2 == 0xa1 ||
                             op2 == 0xa2 || op2 == 0xa8 || op2 == 0xa9 || op2 == 0xaa ||
                             (op2 >= 0xc8 && op2 <= 0xcf));
            if (op2 >= 0x80 && op2 <= 0x8f) imm = 4; /* jcc rel32 */
            if ((op2 >= 0x70 && op2 <= 0x73) || op2 == 0xa4 || op2 == 0xac || op2 == 0xba ||
                op2 == 0xc2 || (op2 >= 0xc4 && op2 <= 0xc6) || op2 == 0x0f)
                imm = 1;
        }
    } else {
        in.op = op;
        if ((op >= 0x06 && op < 0x40 && ((op & 7) == 6 || (op & 7) == 7)) ||
            op == 0x60 || op == 0x61 || op == 0x82 || op == 0x9a || op == 0xce ||
            op == 0xd4 || op == 0xd5 || op == 0xd6 || op == 0xea)
            return in; /* invalid in 64-bit mode */
        in.has_modrm = x86_modrm1(op);
        int z = opsize16 ? 2 : 4; /* "Iz": 16 or 32 bits */
        if (op < 0x40 && (op & 7) == 4) imm = 1;
        else if (op < 0x40 && (op & 7) == 5) imm = z;
        else if (op == 0x68 || op == 0x69 || op == 0x81 || op == 0xa9 || op == 0xc7) imm = z;
        else if (op == 0x6a || op == 0x6b || op == 0x80 || op == 0x83 || op == 0xa8 ||
                 (op >= 0x70 && op <= 0x7f) || op == 0xc0 || op == 0xc1 || op == 0xc6 ||
                 op == 0xcd || op == 0xeb || (op >= 0xe0 && op <= 0xe7) || (op >= 0xb0 && op <= 0xb7))
            imm = 1;
        else if (op >= 0xb8 && op <= 0xbf) imm = rexw ? 8 : z;
        else if (op >= 0xa0 && op <= 0xa3) imm = 8; /* moffs64 */
        else if (op == 0xc2 || op == 0xca) imm = 2;
        else if (op == 0xc8) imm = 3;
        else if (op == 0xe8 || op == 0xe9) imm = 4;
    }
    if (in.has_modrm) {
        if (i >= len) return in;
        int m = in.modrm = c[i++], mod = m >> 6, rm = m & 7;
        if (!in.map && (op == 0xf6 || op == 0xf7) && ((m >> 3) & 7) < 2)
            imm = op == 0xf6 ? 1 : opsize16 ? 2 : 4; /* test r/m, imm */
        if (mod != 3 && rm == 4) {
            if (i >= len) return in;
            int sib = c[i++];
            if (mod == 0 && (sib & 7) == 5) in.disp_len = 4;
        }
        if (mod == 0 && rm == 5) in.disp_len = 4; /* %rip-relative */
        else if (mod == 1) in.disp_len = 1;
        else if (mod == 2) in.disp_len = 4;
        in.disp_off = i;
        i += (size_t)in.disp_len;
    }
    in.imm_off = i;
    in.imm_len = imm;
    i += (size_t)imm;
    if (i > len) return in;
    in.len = i;
    return in;
}

/* Sign-extended displacement or immediate of a decoded instruction. */
static int64_t x86_field(const unsigned char *c, size_t off, int n)
{
    if (n == 1) return (int8_t)c[off];
    if (n == 2) return (int16_t)rd16(c + off);
    if (n == 4) return (int32_t)rd32(c + off);
    if (n == 8) return (int64_t)rd64(c + off);
    return 0; /* enter's 3-byte iw,ib pair: never a frame size we use */
}

/* The %rsp change of one instruction, as far as frames care: > 0 allocates (push, sub,
 * lea down), < 0 gives back (pop, add, lea up). *kind is 1 for a call, 2 for a return
 * or jump, 3 for mov/leave restoring %rsp, 4 for `and $-N,%rsp`, 5 for the stack-clash
 * `lea -N(%rsp),%r11` (N in the result), 6 for jne, 0 otherwise. */
static int64_t x86_rsp_delta(const unsigned char *p, const struct x86_insn *in, int *kind)
{
    int op = in->op, reg = (in->modrm >> 3) & 7, rm = (in->modrm & 7) | (in->rex & 1) << 3;
    int mod = in->modrm >> 6, reg_full = reg | ((in->rex >> 2) & 1) << 3;
    int64_t imm = in->imm_len ? x86_field(p, in->imm_off, in->imm_len) : 0;
    int64_t disp = in->disp_len ? x86_field(p, in->disp_off, in->disp_len) : 0;
    *kind = 0;
    if (in->map == 1 && op == 0x85) *kind = 6;
    if (in->map != 0) return 0;
    if (op >= 0x50 && op <= 0x57) return 8;                 /* push %reg */
    if (op == 0x68 || op == 0x6a) return 8;                 /* push $imm */
    if (op == 0xff && reg == 6) return 8;                   /* push r/m */
    if (op >= 0x58 && op <= 0x5f) return -8;                /* pop %reg */
    if ((op == 0x81 || op == 0x83) && mod == 3 && rm == 4) {
        if (reg == 5) return imm;                           /* sub $imm,%rsp */
        if (reg == 0) return -imm;                          /* add $imm,%rsp */
        if (reg == 4) { *kind = 4; return imm; }            /* and $-N,%rsp */
        return 0;
    }
    if (op == 0x8d && mod != 3 && (in->modrm & 7) == 4 && p[in->disp_off - 1] == 0x24) {
        if (reg_full == 4) return -disp;                    /* lea disp(%rsp),%rsp */
        /* lea -N(%rsp),%r11 with N of a page or more starts gcc's stack-clash probing
         * loop, which moves %rsp down by N one page at a time. */
        if (reg_full == 11 && disp <= -4096) { *kind = 5; return -disp; }
        return 0;
    }
    if (op == 0xe8 || (op == 0xff && reg == 2)) *kind = 1;
    else if (op == 0xc3 || op == 0xc2 || op == 0xe9 || op == 0xeb || (op == 0xff && reg == 4)) *kind = 2;
    else if (((op == 0x89 || op == 0x8b) && mod == 3 && (op == 0x89 ? rm : reg_full) == 4) || op == 0xc9)
        *kind = 3;
    else if (op == 0x75) *kind = 6;
    return 0;
}

/* x86-64: the bytes a function's frame takes, as gcc's -fstack-usage counts them: the
 * 8-byte return address the call pushed, plus the prologue's pushes and subtractions
 * from %rsp, plus the most that arguments pushed for calls add later ("dynamic,bounded"
 * in gcc's words).
 * Prologue: the first instructions up to the first call, or up to a return, jump or
 * epilogue once a frame was made. Before any frame is made, returns and jumps are
 * stepped over: with shrink-wrapping the early-exit path comes first.
 * Body: the rest, walked linearly without following branches; pushes and subs between
 * calls count, adds and pops give back, a return or jump starts from zero again. */
uint64_t cs_x86_64_frame(const unsigned char *c, size_t len)
{
    uint64_t total = 8;
    int64_t extra = 0, max_extra = 0;
    int probe_loop = 0, body = 0, prev_push = 0;
    size_t pos = 0;
    if (len > X86_BODY_MAX) len = X86_BODY_MAX;
    /* First pass: the branch targets inside the function. GCC pops pushed arguments
     * before every label ("defer-pop" stops at labels), so the walk below restarts
     * from zero there; this matters after calls that do not return, whose arguments
     * are never popped. Without memory for the map, targets are simply not known. */
    unsigned char *target = calloc(len / 8 + 1, 1);
    for (pos = 0; target && pos < len;) {
        const unsigned char *p = c + pos;
        struct x86_insn in = x86_decode(p, len - pos);
        if (!in.len) break;
        pos += in.len;
        int rel = (in.map == 0 && ((in.op >= 0x70 && in.op <= 0x7f) || in.op == 0xeb ||
                                   in.op == 0xe9)) || (in.map == 1 && in.op >= 0x80 && in.op <= 0x8f);
        if (!rel) continue;
        int64_t t = (int64_t)pos + x86_field(p, in.imm_off, in.imm_len);
        if (t >= 0 && (uint64_t)t < len) target[t / 8] |= (unsigned char)(1u << (t % 8));
    }
    pos = 0;
    for (size_t k = 0; pos < len; k++) {
        if (!body && (k >= X86_MAX_INSNS || pos >= X86_WINDOW)) body = 1;
        if (body && target && (target[pos / 8] >> (pos % 8)) & 1) extra = 0;
        const unsigned char *p = c + pos;
        struct x86_insn in = x86_decode(p, len - pos);
        if (!in.len) break;
        pos += in.len;
        int kind;
        int64_t d = x86_rsp_delta(p, &in, &kind);
        if (body) {
            if (kind == 2 || kind == 3) {
                extra = 0;
            } else if (kind == 0 && d) {
                extra += d;
                if (extra < 0) extra = 0;
                if (extra > max_extra) max_extra = extra;
            }
            continue;
        }
        int made = total > 8;
        if (kind == 5) {
            total = cs_add_sat(total, (uint64_t)d);
            probe_loop = 1;
        } else if (kind == 6 && probe_loop) {
            probe_loop = 0; /* jne back to the probing loop's sub */
        } else if (made && ((in.map == 0 && in.op >= 0x70 && in.op <= 0x7f) ||
                            (in.map == 1 && in.op >= 0x80 && in.op <= 0x8f))) {
            /* A conditional branch once the frame is made: the prologue is over. What
             * follows before the first call (pushes, `sub $8` for alignment) is that
             * call's arguments, which the body walk counts; counted here as well, they
             * would be added twice. */
            body = 1;
        } else if (kind == 4) {
            /* and $-N,%rsp realigns: gcc counts the frame so far rounded up to N. */
            if (d < 0 && d >= -4096) total = (total + (uint64_t)-d - 1) & ~((uint64_t)-d - 1);
        } else if (kind == 1) {
            body = 1;
        } else if (kind == 0 && d == -8 && prev_push) {
            total -= 8; /* push %rax; pop %rax: a stack-clash probe, not a frame */
        } else if (kind == 2 || kind == 3 || d < 0) {
            if (made) body = 1; /* an epilogue: the prologue is over */
        } else if (d > 0 && !probe_loop) {
            total = cs_add_sat(total, (uint64_t)d);
        }
        prev_push = in.map == 0 && in.op >= 0x50 && in.op <= 0x57;
    }
    free(target);
    return cs_add_sat(total, (uint64_t)max_extra);
}

/* aarch64: sums the stack-pointer decrements of the first instructions: stp/str with
 * pre-index writeback on sp and `sub sp, sp, #imm{, lsl #12}`. The return address lives
 * in x30 and is stored by the stp, so it is already counted. Stops at a call, at an
 * instruction that gives stack back, or at a branch or return once a frame was made
 * (before that, the early-exit path of a shrink-wrapped function is stepped over). */
uint64_t cs_aarch64_frame(const unsigned char *c, size_t len)
{
    uint64_t total = 0, xval[32] = { 0 };
    uint32_t xknown = 0; /* bit r: xval[r] holds the constant that mov/movk put in x<r> */
    size_t n = len / 4;
    if (n > A64_WINDOW_INSNS) n = A64_WINDOW_INSNS;
    for (size_t k = 0; k < n; k++) {
        uint32_t in = rd32(c + 4 * k);
        unsigned rn = (in >> 5) & 31, rd = in & 31, hw = ((in >> 21) & 3) * 16;
        uint64_t imm16 = (in >> 5) & 0xffff;
        /* Large frames: `mov x12, #N` (movz/movk) then `sub sp, sp, x12`. */
        if ((in & 0xff800000u) == 0xd2800000u) { /* movz */
            xval[rd] = imm16 << hw;
            xknown |= 1u << rd;
            continue;
        }
        if ((in & 0xff800000u) == 0xf2800000u) { /* movk */
            xval[rd] = (xval[rd] & ~(0xffffull << hw)) | imm16 << hw;
            continue;
        }
        if ((in & 0xffe0fc00u) == 0xcb206000u && rn == 31 && rd == 31) {
            unsigned rm = (in >> 16) & 31; /* sub sp, sp, x<rm> */
            if (xknown & (1u << rm)) total = cs_add_sat(total, xval[rm]);
            continue;
        }
        if ((in & 0xffc00000u) == 0xa9800000u || (in & 0xffc00000u) == 0x6d800000u ||
            (in & 0xffc00000u) == 0xad800000u) {
            /* stp x/d/q pre-index: imm7 scaled by 8 (x, d) or 16 (q). */
            if (rn != 31) continue;
            int32_t imm7 = (int32_t)((in >> 15) & 0x7f);
            if (imm7 & 0x40) imm7 -= 0x80;
            int32_t bytes = imm7 * ((in & 0xffc00000u) == 0xad800000u ? 16 : 8);
            if (bytes < 0) total += (uint64_t)-(int64_t)bytes;
        } else if ((in & 0xffe00c00u) == 0xf8000c00u || (in & 0xffe00c00u) == 0xfc000c00u) {
            /* str x/d pre-index: imm9 unscaled. */
            if (rn != 31) continue;
            int32_t imm9 = (int32_t)((in >> 12) & 0x1ff);
            if (imm9 & 0x100) imm9 -= 0x200;
            if (imm9 < 0) total += (uint64_t)-(int64_t)imm9;
        } else if ((in & 0xff800000u) == 0xd1000000u) {
            /* sub (immediate), 64-bit; bit 22 shifts the immediate left by 12. */
            if (rn == 31 && rd == 31)
                total = cs_add_sat(total, (uint64_t)((in >> 10) & 0xfff) << ((in >> 22) & 1 ? 12 : 0));
        } else if ((in & 0xff800000u) == 0x91000000u && rn == 31 && rd == 31) {
            if (total) break; /* add sp, sp, #imm: the epilogue of a function without calls */
        } else if ((in & 0xffc00000u) == 0xa8c00000u && rn == 31) {
            if (total) break; /* ldp ..., [sp], #imm: restoring registers */
        } else if ((in & 0xfc000000u) == 0x94000000u || (in & 0xfffffc1fu) == 0xd63f0000u) {
            break; /* bl, blr: whatever follows is the body */
        } else if ((in & 0xfffffc1fu) == 0xd65f0000u || (in & 0xfc000000u) == 0x14000000u ||
                   (in & 0xfffffc1fu) == 0xd61f0000u) {
            if (total) break; /* ret, b, br */
        }
    }
    return total;
}

static int add_frame(struct cs_frames *out, const char *name, uint64_t bytes)
{
    if (out->n == out->cap) {
        size_t ncap = out->cap ? out->cap * 2 : 64;
        struct cs_frame *nv = realloc(out->v, ncap * sizeof *nv);
        if (!nv) return -1;
        out->v = nv;
        out->cap = ncap;
    }
    if (!(out->v[out->n].name = strdup(name))) return -1;
    out->v[out->n++].bytes = bytes;
    return 0;
}

void cs_frames_free(struct cs_frames *fr)
{
    for (size_t i = 0; i < fr->n; i++) free(fr->v[i].name);
    free(fr->v);
    memset(fr, 0, sizeof *fr);
}

#define FAIL(...)                                                   \
    do {                                                            \
        snprintf(err, errsz, __VA_ARGS__);                          \
        return -1;                                                  \
    } while (0)

/* The length of the parent's name when name is a cold part gcc split off a function
 * ("f.cold", "f.cold.3", "f.constprop.0.cold"), else 0. */
static size_t cold_parent_len(const char *name)
{
    const char *c = strstr(name, ".cold");
    while (c) {
        const char *e = c + 5;
        if (*e == '.' && e[1]) {
            for (e++; *e >= '0' && *e <= '9'; e++) {}
        }
        if (*e == '\0' && c > name) return (size_t)(c - name);
        c = strstr(c + 1, ".cold");
    }
    return 0;
}

static int cmp_frame_name(const void *a, const void *b)
{
    return strcmp((*(struct cs_frame *const *)a)->name, (*(struct cs_frame *const *)b)->name);
}

/* At -O2 gcc moves a function's unlikely code (paths that end in a noreturn or cold
 * call) into a cold part, "f.cold", elsewhere in .text. It runs on f's frame, is
 * entered by a jump (no return address of its own) and may push more, for example
 * before its call: gcc's -fstack-usage counts that in f. So each cold part found with
 * its parent in v[first..n) adds what it pushes beyond the entry (its decoded frame
 * less ret_addr, the return address the decoder assumed) to the parent, and is dropped
 * from the list. Assuming f's whole frame is in place at the jump is safe: at worst it
 * counts a prologue twice. A cold part whose parent is not in the file stays. */
static int fold_cold_parts(struct cs_frames *out, size_t first, uint64_t ret_addr)
{
    size_t n = out->n - first, ncold = 0;
    struct cs_frame **idx;
    for (size_t i = first; i < out->n; i++) ncold += cold_parent_len(out->v[i].name) != 0;
    if (!ncold) return 0;
    if (!(idx = malloc(n * sizeof *idx))) return -1;
    for (size_t i = 0; i < n; i++) idx[i] = &out->v[first + i];
    qsort(idx, n, sizeof *idx, cmp_frame_name);
    unsigned char *drop = calloc(n, 1);
    if (!drop) {
        free(idx);
        return -1;
    }
    for (size_t i = first; i < out->n; i++) {
        size_t plen = cold_parent_len(out->v[i].name);
        if (!plen) continue;
        /* Binary search for the parent's exact name among the file's functions. */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const char *m = idx[mid]->name;
            int c = strncmp(m, out->v[i].name, plen);
            if (c == 0 && m[plen]) c = 1;
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        /* In a linked program, statics of several files may share the name: which
         * one the part belongs to is not known, so each of them gets it (safe). */
        uint64_t extra = out->v[i].bytes > ret_addr ? out->v[i].bytes - ret_addr : 0;
        for (; lo < n && !strncmp(idx[lo]->name, out->v[i].name, plen) && !idx[lo]->name[plen];
             lo++) {
            idx[lo]->bytes = cs_add_sat(idx[lo]->bytes, extra);
            drop[i - first] = 1;
        }
    }
    size_t k = first;
    for (size_t i = first; i < out->n; i++) {
        if (drop[i - first]) free(out->v[i].name);
        else out->v[k++] = out->v[i];
    }
    out->n = k;
    free(drop);
    free(idx);
    return 0;
}

/* Where a symbol starts: its section and value, for finding where the next one does. */
struct sym_start {
    uint64_t shndx, value;
};

static int cmp_start(const void *a, const void *b)
{
    const struct sym_start *x = a, *y = b;
    if (x->shndx != y->shndx) return x->shndx < y->shndx ? -1 : 1;
    return x->value < y->value ? -1 : x->value > y->value;
}

int cs_parse_elf(struct cs_frames *out, const unsigned char *b, size_t len,
                 const char *file, char *err, size_t errsz)
{
    size_t first = out->n;
    if (len < 4 || memcmp(b, "\177ELF", 4) != 0) FAIL("%s: not an ELF file", file);
    if (len < 64) FAIL("%s: truncated ELF: %zu bytes, shorter than the 64-byte header", file, len);
    if (b[4] != 2) FAIL("%s: 32-bit ELF is not supported (only 64-bit x86-64 and aarch64)", file);
    if (b[5] != 1) FAIL("%s: big-endian ELF is not supported (only little-endian)", file);
    uint16_t machine = rd16(b + 18);
    if (machine != EM_X86_64_ && machine != EM_AARCH64_)
        FAIL("%s: ELF machine %u is not supported (only x86-64 and aarch64)", file, machine);
    uint64_t shoff = rd64(b + 40);
    uint16_t shentsize = rd16(b + 58);
    uint64_t shnum = rd16(b + 60);
    if (shoff == 0) FAIL("%s: ELF file has no section headers, so no symbols to find", file);
    if (shentsize != 64) FAIL("%s: corrupt ELF: section header size %u, expected 64", file, shentsize);
    if (!in_bounds(shoff, 64, len))
        FAIL("%s: truncated ELF: section headers at byte %llu, beyond the file's %zu bytes", file,
             (unsigned long long)shoff, len);
    if (shnum == 0) shnum = rd64(b + shoff + 32); /* extended numbering: sh_size of #0 */
    if (shnum > len / 64 || !in_bounds(shoff, shnum * 64, len))
        FAIL("%s: truncated ELF: %llu section headers at byte %llu do not fit in %zu bytes", file,
             (unsigned long long)shnum, (unsigned long long)shoff, len);
    const unsigned char *sh = b + shoff;

    /* Prefer the full symbol table; a stripped binary still has .dynsym. */
    uint64_t symidx = shnum;
    for (uint64_t i = 0; i < shnum; i++)
        if (rd32(sh + i * 64 + 4) == SHT_SYMTAB_) { symidx = i; break; }
    if (symidx == shnum)
        for (uint64_t i = 0; i < shnum; i++)
            if (rd32(sh + i * 64 + 4) == SHT_DYNSYM_) { symidx = i; break; }
    if (symidx == shnum) FAIL("%s: ELF file has no symbol table (.symtab or .dynsym)", file);
    const unsigned char *st = sh + symidx * 64;
    uint64_t symoff = rd64(st + 24), symsize = rd64(st + 32), symentsize = rd64(st + 56);
    uint32_t strlink = rd32(st + 40);
    if (symentsize != 24) FAIL("%s: corrupt ELF: symbol entry size %llu, expected 24", file,
                               (unsigned long long)symentsize);
    if (!in_bounds(symoff, symsize, len))
        FAIL("%s: truncated ELF: symbol table (%llu bytes at %llu) beyond the file's %zu bytes",
             file, (unsigned long long)symsize, (unsigned long long)symoff, len);
    if (strlink >= shnum) FAIL("%s: corrupt ELF: symbol table links to section %u of %llu", file,
                               strlink, (unsigned long long)shnum);
    const unsigned char *ss = sh + (uint64_t)strlink * 64;
    uint64_t stroff = rd64(ss + 24), strsize = rd64(ss + 32);
    if (!in_bounds(stroff, strsize, len))
        FAIL("%s: truncated ELF: string table (%llu bytes at %llu) beyond the file's %zu bytes",
             file, (unsigned long long)strsize, (unsigned long long)stroff, len);
    const char *strtab = (const char *)b + stroff;
    int is_rel = rd16(b + 16) == 1; /* ET_REL: symbol values are section offsets */

    /* A symbol without a size (crt's frame_dummy and register_tm_clones, hand-written
     * assembly) ends where the next symbol of its section starts: decoding past that
     * would read the next function's prologue as its own. So the starts of all
     * symbols are sorted by section and value, and searched for the next one. */
    size_t nsyms = (size_t)(symsize / 24), nstarts = 0;
    struct sym_start *starts = malloc((nsyms ? nsyms : 1) * sizeof *starts);
    if (!starts) FAIL("%s: out of memory", file);
    for (size_t s = 1; s < nsyms; s++) {
        const unsigned char *sym = b + symoff + s * 24;
        uint16_t shndx = rd16(sym + 6);
        unsigned type = sym[4] & 0xf;
        if (shndx == 0 || shndx >= SHN_LORESERVE_ || shndx >= shnum || type == 3 || type == 4)
            continue; /* undefined, absolute, corrupt (reported below); STT_SECTION, STT_FILE */
        starts[nstarts++] = (struct sym_start){ shndx, rd64(sym + 8) };
    }
    qsort(starts, nstarts, sizeof *starts, cmp_start);
#undef FAIL
#define FAIL(...)                                                   \
    do {                                                            \
        snprintf(err, errsz, __VA_ARGS__);                          \
        free(starts);                                               \
        return -1;                                                  \
    } while (0)

    for (uint64_t s = 1; s < symsize / 24; s++) {
        const unsigned char *sym = b + symoff + s * 24;
        uint32_t name = rd32(sym);
        unsigned char info = sym[4];
        uint16_t shndx = rd16(sym + 6);
        uint64_t value = rd64(sym + 8), size = rd64(sym + 16);
        if ((info & 0xf) != STT_FUNC_ || shndx == 0 || shndx >= SHN_LORESERVE_) continue;
        if (shndx >= shnum) FAIL("%s: corrupt ELF: symbol %llu in section %u of %llu", file,
                                 (unsigned long long)s, shndx, (unsigned long long)shnum);
        if (name >= strsize || !memchr(strtab + name, '\0', strsize - name))
            FAIL("%s: corrupt ELF: symbol %llu's name is outside the string table", file,
                 (unsigned long long)s);
        const unsigned char *sec = sh + (uint64_t)shndx * 64;
        if (rd32(sec + 4) == SHT_NOBITS_ || !(rd64(sec + 8) & SHF_EXECINSTR_)) continue;
        uint64_t addr = rd64(sec + 16), off = rd64(sec + 24), secsize = rd64(sec + 32);
        if (!in_bounds(off, secsize, len))
            FAIL("%s: truncated ELF: code section %u (%llu bytes at %llu) beyond the file's "
                 "%zu bytes", file, shndx, (unsigned long long)secsize, (unsigned long long)off, len);
        uint64_t rel = is_rel ? value : value - addr;
        if (!is_rel && value < addr) continue;
        if (rel >= secsize) continue; /* a symbol at the very end: nothing to decode */
        uint64_t avail = secsize - rel;
        if (size && size < avail) avail = size;
        if (!size) {
            size_t lo = 0, hi = nstarts;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (starts[mid].shndx < shndx || (starts[mid].shndx == shndx && starts[mid].value <= value))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < nstarts && starts[lo].shndx == shndx && starts[lo].value - value < avail)
                avail = starts[lo].value - value;
        }
        /* A symbol without a size (hand-written assembly) gets only the prologue
         * window: walking to the end of the section for each such symbol would make
         * the work quadratic. */
        if (!size && avail > X86_WINDOW) avail = X86_WINDOW;
        const unsigned char *code = b + off + rel;
        uint64_t frame = machine == EM_X86_64_ ? cs_x86_64_frame(code, (size_t)avail)
                                               : cs_aarch64_frame(code, (size_t)avail);
        if (add_frame(out, strtab + name, frame) != 0) FAIL("%s: out of memory", file);
    }
    if (fold_cold_parts(out, first, machine == EM_X86_64_ ? 8 : 0) != 0)
        FAIL("%s: out of memory", file);
    free(starts);
    return 0;
}

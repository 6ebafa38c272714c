/*
 * checkstack_elf.c - frame sizes straight from an ELF file (64-bit little-endian,
 * x86-64 or aarch64; executable, shared object or relocatable object), without objdump:
 * every FUNC symbol of .symtab (or .dynsym when stripped) is located in its section and
 * its prologue is decoded. Every offset read from the file is bounds-checked against the
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

/* The longest prologue we decode. GCC's prologues are a few instructions; a window
 * bounds the work per function and keeps stray matches deep inside a body out. */
#define X86_WINDOW 96
#define A64_WINDOW_INSNS 24

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

/* x86-64: sums what the prologue pushes and subtracts from %rsp, plus the 8-byte return
 * address the call pushed. Decodes only the instructions GCC and clang put in
 * prologues; the first other instruction ends the prologue. */
uint64_t cs_x86_64_frame(const unsigned char *c, size_t len)
{
    uint64_t total = 8;
    size_t i = 0;
    int probe_loop = 0; /* inside -fstack-clash-protection's probing loop */
    if (len > X86_WINDOW) len = X86_WINDOW;
    while (i < len) {
        size_t left = len - i;
        const unsigned char *p = c + i;
        if (left >= 4 && p[0] == 0xf3 && p[1] == 0x0f && p[2] == 0x1e && p[3] == 0xfa) {
            i += 4; /* endbr64 */
        } else if (p[0] >= 0x50 && p[0] <= 0x57) {
            total += 8; /* push %rax..%rdi (including %rbp) */
            i += 1;
        } else if (left >= 2 && p[0] == 0x41 && p[1] >= 0x50 && p[1] <= 0x57) {
            total += 8; /* push %r8..%r15 */
            i += 2;
        } else if (left >= 4 && p[0] == 0x48 && p[1] == 0x83 && p[2] == 0xec) {
            int8_t imm = (int8_t)p[3]; /* sub $imm8,%rsp */
            if (imm < 0) break;
            if (!probe_loop) total += (uint64_t)imm;
            i += 4;
        } else if (left >= 7 && p[0] == 0x48 && p[1] == 0x81 && p[2] == 0xec) {
            int32_t imm = (int32_t)rd32(p + 3); /* sub $imm32,%rsp */
            if (imm < 0) break;
            if (!probe_loop) total += (uint64_t)imm;
            i += 7;
        } else if (left >= 5 && p[0] == 0x48 && p[1] == 0x8d && p[2] == 0x64 && p[3] == 0x24) {
            int8_t d = (int8_t)p[4]; /* lea disp8(%rsp),%rsp */
            if (d > 0) break;
            total += (uint64_t)-(int64_t)d;
            i += 5;
        } else if (left >= 8 && p[0] == 0x48 && p[1] == 0x8d && p[2] == 0xa4 && p[3] == 0x24) {
            int32_t d = (int32_t)rd32(p + 4); /* lea disp32(%rsp),%rsp */
            if (d > 0) break;
            total += (uint64_t)-(int64_t)d;
            i += 8;
        } else if (left >= 8 && p[0] == 0x4c && p[1] == 0x8d && p[2] == 0x9c && p[3] == 0x24) {
            /* lea -N(%rsp),%r11 starts a stack-clash probing loop that moves %rsp down
             * by N one page at a time: count N once and skip the loop's own subs. */
            int32_t d = (int32_t)rd32(p + 4);
            if (d > 0) break;
            total += (uint64_t)-(int64_t)d;
            probe_loop = 1;
            i += 8;
        } else if (left >= 5 && p[0] == 0x48 && p[1] == 0x83 && p[2] == 0x0c && p[3] == 0x24) {
            i += 5; /* orq $imm8,(%rsp): a stack-clash probe */
        } else if (left >= 3 && p[0] == 0x4c && p[1] == 0x39 && p[2] == 0xdc) {
            i += 3; /* cmp %r11,%rsp: end test of the probing loop */
        } else if (left >= 2 && p[0] == 0x75 && probe_loop) {
            probe_loop = 0; /* jne back to the loop's sub */
            i += 2;
        } else if (left >= 3 && (p[0] & 0xf0) == 0x40 && (p[1] == 0x89 || p[1] == 0x8b ||
                                                          p[1] == 0x31 || p[1] == 0x33) &&
                   (p[2] & 0xc0) == 0xc0) {
            /* REX mov/xor between registers, e.g. mov %rsp,%rbp or mov %rdi,%rbx; one
             * that writes %rsp (mov %rbp,%rsp) belongs to an epilogue. */
            int rex_b = p[0] & 1, rex_r = (p[0] >> 2) & 1;
            int dst = p[1] == 0x89 || p[1] == 0x31 ? (p[2] & 7) | rex_b << 3
                                                   : ((p[2] >> 3) & 7) | rex_r << 3;
            if (dst == 4) break;
            i += 3;
        } else if (left >= 2 && (p[0] == 0x89 || p[0] == 0x8b || p[0] == 0x31 || p[0] == 0x33) &&
                   (p[1] & 0xc0) == 0xc0) {
            i += 2; /* 32-bit mov/xor between registers, e.g. mov %edi,%ebx */
        } else {
            break;
        }
    }
    return total;
}

/* aarch64: sums the stack-pointer decrements of the first instructions: stp/str with
 * pre-index writeback on sp and `sub sp, sp, #imm{, lsl #12}`. The return address lives
 * in x30 and is stored by the stp, so it is already counted. Stops at a call, branch or
 * return, or at an instruction that gives stack back. */
uint64_t cs_aarch64_frame(const unsigned char *c, size_t len)
{
    uint64_t total = 0;
    size_t n = len / 4;
    if (n > A64_WINDOW_INSNS) n = A64_WINDOW_INSNS;
    for (size_t k = 0; k < n; k++) {
        uint32_t in = rd32(c + 4 * k);
        unsigned rn = (in >> 5) & 31, rd = in & 31;
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
                total += (uint64_t)((in >> 10) & 0xfff) << ((in >> 22) & 1 ? 12 : 0);
        } else if ((in & 0xff800000u) == 0x91000000u && rn == 31 && rd == 31) {
            break; /* add sp, sp, #imm: the epilogue of a function without calls */
        } else if ((in & 0xffc00000u) == 0xa8c00000u && rn == 31) {
            break; /* ldp ..., [sp], #imm: restoring registers */
        } else if ((in & 0xfffffc1fu) == 0xd65f0000u || (in & 0xfc000000u) == 0x14000000u ||
                   (in & 0xfc000000u) == 0x94000000u || (in & 0xfffffc1fu) == 0xd61f0000u ||
                   (in & 0xfffffc1fu) == 0xd63f0000u) {
            break; /* ret, b, bl, br, blr */
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

int cs_parse_elf(struct cs_frames *out, const unsigned char *b, size_t len,
                 const char *file, char *err, size_t errsz)
{
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
        const unsigned char *code = b + off + rel;
        uint64_t frame = machine == EM_X86_64_ ? cs_x86_64_frame(code, (size_t)avail)
                                               : cs_aarch64_frame(code, (size_t)avail);
        if (add_frame(out, strtab + name, frame) != 0) FAIL("%s: out of memory", file);
    }
    return 0;
}

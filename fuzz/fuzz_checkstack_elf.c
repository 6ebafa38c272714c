/*
 * fuzz_checkstack_elf.c - libFuzzer target for checkstack's ELF reader and prologue
 * decoders. The input is copied to a buffer of exactly its size so that AddressSanitizer
 * catches any read past the end. Any crash or sanitizer report is a bug.
 */
#include "checkstack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cs_frames fr = { 0 };
    char err[512];
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    cs_parse_elf(&fr, copy, size, "fuzz.o", err, sizeof err);
    /* The decoders also see raw bytes directly: the ELF path reaches them only through
     * well-formed symbols. */
    cs_x86_64_frame(copy, size);
    cs_aarch64_frame(copy, size);
    cs_frames_free(&fr);
    free(copy);
    return 0;
}

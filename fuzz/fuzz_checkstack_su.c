/*
 * fuzz_checkstack_su.c - libFuzzer target for checkstack's .su parser, followed by the
 * merge and the depth analysis over whatever it accepted. Any crash, leak or sanitizer
 * report is a bug: the parser must turn every input into a result or an error.
 */
#include "checkstack.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cs_graph g = { 0 };
    char err[512];
    if (cs_parse_su(&g, (const char *)data, size, "fuzz.su", err, sizeof err) == 0 &&
        cs_graph_merge_su(&g, err, sizeof err) == 0)
        cs_graph_analyze(&g);
    cs_graph_free(&g);
    return 0;
}

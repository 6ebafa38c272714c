/*
 * fuzz_checkstack_ci.c - libFuzzer target for checkstack's .ci (VCG call graph) parser,
 * followed by the analysis and the cycle search that the report runs on recursions.
 * Any crash, leak or sanitizer report is a bug.
 */
#include "checkstack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cs_graph g = { 0 };
    char err[512];
    if (cs_parse_ci(&g, (const char *)data, size, "fuzz.ci", err, sizeof err) == 0 &&
        cs_graph_analyze(&g) == 0 && g.n) {
        size_t *cyc = malloc(g.n * sizeof *cyc);
        /* The report searches the cycle of each recursion it names; a few suffice. */
        for (size_t i = 0; cyc && i < g.n && i < 16; i++)
            if (g.f[i].why == CS_RECURSION) cs_graph_cycle(&g, g.f[i].culprit, cyc);
        free(cyc);
    }
    cs_graph_free(&g);
    return 0;
}

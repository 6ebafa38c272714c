/*
 * fuzz_checkstack_gcc.c - libFuzzer target for what `vmstack checkstack` does with a
 * folder of gcc output: a .ci call graph and a .su file parsed into one graph, the .su
 * lines merged into the graph's nodes, the analysis, and the cycle search of every
 * recursion it reports. The input is the .ci text, a NUL byte, the .su text (the seeds,
 * made by scripts/fuzz.sh, pair the files of one compiled test source). Any crash,
 * leak or sanitizer report is a bug.
 */
#include "checkstack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t ci_len = nul ? (size_t)(nul - data) : size;
    size_t su_off = nul ? ci_len + 1 : size;
    /* Each part in a buffer of exactly its size, so that ASan catches reads past it. */
    char *ci = malloc(ci_len ? ci_len : 1), *su = malloc(size - su_off ? size - su_off : 1);
    struct cs_graph g = { 0 };
    char err[512];
    if (!ci || !su) goto out;
    memcpy(ci, data, ci_len);
    memcpy(su, data + su_off, size - su_off);
    if (cs_parse_ci(&g, ci, ci_len, "fuzz.ci", err, sizeof err) != 0) goto out;
    if (size > su_off && cs_parse_su(&g, su, size - su_off, "fuzz.su", err, sizeof err) != 0)
        goto out;
    if (cs_graph_merge_su(&g, err, sizeof err) != 0 || cs_graph_analyze(&g) != 0 || !g.n)
        goto out;
    size_t *cyc = malloc(g.n * sizeof *cyc);
    for (size_t i = 0; cyc && i < g.n; i++)
        if (g.f[i].why == CS_RECURSION) cs_graph_cycle(&g, g.f[i].culprit, cyc);
    free(cyc);
out:
    cs_graph_free(&g);
    free(ci);
    free(su);
    return 0;
}

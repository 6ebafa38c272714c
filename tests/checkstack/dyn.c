/* checkstack test input: frames that grow at run time, a variable-length array and
 * alloca, so their worst case is unbounded. */
#include <alloca.h>
#include <string.h>

int dyn_vla(int n);
int dyn_alloca(int n);

int dyn_vla(int n)
{
    char v[n];
    memset(v, 1, (size_t)n);
    return v[n / 2];
}

int dyn_alloca(int n)
{
    char *p = alloca((size_t)n);
    memset(p, 2, (size_t)n);
    return p[n / 2];
}

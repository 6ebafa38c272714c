/* checkstack test input: calls with arguments on the stack (more than six) behind a
 * branch, so the first pushes of arguments come before the first call: they are the
 * call's, not the prologue's, and gcc's bound counts the largest such group once. */
int many(int a, int b, int c, int d, int e, int f, int g, int h);
int pushargs(int *p, int n);

int pushargs(int *p, int n)
{
    volatile char buf[64];
    buf[n & 63] = 1;
    if (*p > n)
        return many(n, 2, 3, 4, 5, 6, *p, buf[0]);
    return many(1, n, 3, 4, 5, 6, 7, buf[1]) + 1;
}

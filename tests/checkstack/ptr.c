/* checkstack test input: a call through a function pointer (unbounded: the callee is
 * not known statically). */
int ptr_call(int (*fn)(int), int x);

int ptr_call(int (*fn)(int), int x)
{
    volatile char b[160];
    b[x % 160] = 1;
    return fn(x) + b[0];
}

/* checkstack test input, compiled at -O2: gcc moves the unlikely path of each function
 * (the call to the cold, noreturn cold_fail) into a cold part with a symbol of its own,
 * "cold_parent.cold". That part runs on its parent's frame and pushes 8 bytes before
 * its call, which gcc's .su counts in cold_parent; the ELF mode must too, and must not
 * list the part as a function. */
__attribute__((noreturn, noinline, cold)) void cold_fail(const char *why, int a);
void use_buf(volatile char *b);
int cold_parent(int *p);
int cold_parent_framed(int *p, int n);

int cold_parent(int *p)
{
    if (__builtin_expect(p == 0, 0)) cold_fail("null", 1);
    return *p + 1;
}

int cold_parent_framed(int *p, int n)
{
    volatile char b[256];
    b[n & 255] = 1;
    if (__builtin_expect(p == 0, 0)) cold_fail("null", n);
    use_buf(b);
    return *p + b[3];
}

/* checkstack test input: direct recursion (rec_self) and mutual recursion
 * (mut_even <-> mut_odd) entered from rec_entry. */
int rec_self(int n);
int mut_even(int n);
int mut_odd(int n);
int rec_entry(int n);

int rec_self(int n)
{
    volatile char z[64];
    z[0] = (char)n;
    return n > 0 ? rec_self(n - 1) + z[0] : 0;
}

__attribute__((noinline)) int mut_even(int n)
{
    volatile char z[80];
    z[0] = (char)n;
    return n > 0 ? mut_odd(n - 1) + z[0] : 1;
}

__attribute__((noinline)) int mut_odd(int n)
{
    volatile char z[96];
    z[0] = (char)n;
    return n > 0 ? mut_even(n - 1) + z[0] : 0;
}

int rec_entry(int n)
{
    return mut_even(n) + 1;
}

/* checkstack test input: chain_a -> chain_b -> chain_c -> big_leaf (in leaf.c), with a
 * smaller side branch chain_b -> chain_small and a call to puts, which no input
 * defines (an unknown callee). */
#include <stdio.h>

int big_leaf(int i);
int chain_a(int x);
int chain_b(int x);
int chain_c(int x);
int chain_small(int x);

__attribute__((noinline)) int chain_small(int x)
{
    volatile char b[120];
    b[x % 120] = 4;
    return b[3];
}

__attribute__((noinline)) int chain_c(int x)
{
    volatile char b[200];
    b[x % 200] = 1;
    puts("chain_c");
    return b[0] + big_leaf(x);
}

__attribute__((noinline)) int chain_b(int x)
{
    volatile char b[300];
    b[x % 300] = 2;
    return b[1] + chain_small(x) + chain_c(x + 1);
}

int chain_a(int x)
{
    volatile char b[50];
    b[x % 50] = 3;
    return b[2] + chain_b(x + 2);
}

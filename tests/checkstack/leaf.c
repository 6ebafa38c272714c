/* checkstack test input: a leaf with a big local array (the largest frame). */
int big_leaf(int i);

int big_leaf(int i)
{
    volatile char buf[4000];
    buf[i % 4000] = (char)i;
    return buf[(i + 1) % 4000];
}

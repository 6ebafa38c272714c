/* checkstack test input: a linked program whose only large frame is big_first, the
 * first function of .text, right after the C runtime's functions without a symbol size
 * (frame_dummy, register_tm_clones, ...). Their frames are a few words; decoded past
 * their end they took big_first's prologue for their own. */
int big_first(int i);

int big_first(int i)
{
    volatile char buf[3000];
    buf[i % 3000] = (char)i;
    return buf[(i + 1) % 3000];
}

int main(int argc, char **argv)
{
    (void)argv;
    return big_first(argc) & 1;
}

/*
 * bti_probe.c - a C object built with -mbranch-protection=standard (tests/bti.cmake):
 * its GNU property note says BTI and PAC, as every object of a library built so does.
 */
int vms_test_bti_probe(int x);

int vms_test_bti_probe(int x)
{
    return x + 1;
}

/*
 * bti_probe.c - a C object built with branch protection (tests/bti.cmake): aarch64's
 * -mbranch-protection=standard (its GNU property note says BTI and PAC) or x86-64's
 * -fcf-protection=branch (IBT), as every object of a library built so has.
 */
int vms_test_bti_probe(int x);

int vms_test_bti_probe(int x)
{
    return x + 1;
}

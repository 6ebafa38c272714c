/*
 * thread_tls.c - vms threads in a program with a large static TLS. glibc carves a
 * thread's static TLS out of its own stack, which for a vms thread is small (the body
 * runs on the vmstack stack): vms_thread_create must find a size that fits.
 */
#include "test.h"
#include "vmstack.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define BIG_TLS (512 * 1024)
static __thread char big_tls[BIG_TLS];

static void *use_tls(void *arg)
{
    memset(big_tls, (int)(uintptr_t)arg, sizeof big_tls);
    size_t sum = 0;
    for (size_t i = 0; i < sizeof big_tls; i += 4096) sum += (unsigned char)big_tls[i];
    return (void *)sum;
}

TEST(large_static_tls)
{
    for (uintptr_t i = 1; i <= 3; i++) {   /* the size found first, then remembered */
        pthread_t t;
        ASSERT_EQ(vms_thread_create(&t, NULL, use_tls, (void *)i), 0);
        void *r = NULL;
        ASSERT_EQ(pthread_join(t, &r), 0);
        ASSERT_UEQ((uintptr_t)r, i * (BIG_TLS / 4096));
    }
}

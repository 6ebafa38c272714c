/*
 * thread_tls_medium.c - vms threads in a program whose static TLS (13,000 bytes) fits a
 * minimal thread stack but would leave it almost nothing: the pthread's own stack must
 * grow by the TLS, so that vmstack's start and exit code and a thread-specific-data
 * destructor still have their room.
 */
#include "test.h"
#include "vmstack.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define MEDIUM_TLS 13000
static __thread char medium_tls[MEDIUM_TLS];
static pthread_key_t key;
static volatile int destructed;

static void destructor(void *p)
{
    char buf[10 * 1024];   /* the room docs/api.md promises destructors, less a margin */
    memset(buf, (int)(uintptr_t)p, sizeof buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
    destructed += buf[sizeof buf - 1] == (char)(uintptr_t)p;
}

static void *use_tls(void *arg)
{
    memset(medium_tls, 1, sizeof medium_tls);
    pthread_setspecific(key, arg);
    return (void *)(uintptr_t)medium_tls[MEDIUM_TLS - 1];
}

TEST(medium_static_tls_leaves_room)
{
    ASSERT_EQ(pthread_key_create(&key, destructor), 0);
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        ASSERT_EQ(vms_thread_create(&t, NULL, use_tls, (void *)7), 0);
        void *r = NULL;
        ASSERT_EQ(pthread_join(t, &r), 0);
        ASSERT_UEQ((uintptr_t)r, 1);
    }
    ASSERT_EQ(destructed, 20);
}

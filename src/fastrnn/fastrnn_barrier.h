/* A barrier for the threads of one parallel region that does not spin a busy machine to a halt.
 *
 * Why not OpenMP's: a thread that arrives first spins (libgomp: up to GOMP_SPINCOUNT, about
 * 300,000 iterations) before it sleeps. With another process holding a core, the thread it
 * waits for may not be running at all, and the spinning costs that thread its time slice.
 * Here an arriving thread spins briefly (FR_BARRIER_SPIN_NS, a few microseconds: on an idle
 * machine the others arrive within that), then yields the CPU on every check, so that a
 * descheduled partner gets the core, and on Linux, after FR_BARRIER_YIELD_NS, sleeps on a
 * futex until the last one arrives: a thread that only yields keeps its core busy, so the
 * scheduler does not move the partner, queued behind another program on the other core, onto
 * it; asleep, its core falls idle and takes the partner (LSTM-L at 2 threads beside a process
 * spinning on one core, against 1 thread there: 0.77-0.83 yielding, 0.93-0.99 sleeping; on the
 * idle machine the same speed). The spin is bounded by the clock, not by a count of
 * pauses: a pause takes from about 10 cycles (older Intel) to 65 (AMD Zen 2) or 140 (Intel
 * Skylake and later), so a count fit for one CPU spins ten times longer on another (4000
 * pauses measured 96 us on the AMD EPYC of the development machine, where a thread whose
 * partner had lost its core spent most of its time spinning). Without a POSIX clock, a count.
 *
 * Use: a zeroed fr_barrier shared by the team; every thread calls fr_barrier_wait(&b, n) with
 * the same n, the team size. Generation counting: the last to arrive resets the count and
 * opens the next generation (and wakes the sleepers, if any); the others wait for the
 * generation they saw on arrival to end. A sleeper counts itself in `sleepers` before it looks
 * at the generation a last time and sleeps only while the generation is the one it saw (the
 * futex checks that atomically), and the last to arrive opens the generation before it looks
 * at `sleepers`: so either the sleeper sees the new generation or it is woken.
 */
#ifndef FASTRNN_BARRIER_H
#define FASTRNN_BARRIER_H

#if defined(_WIN32)
#  include <windows.h>
#  define fr_yield() SwitchToThread()
#else
#  include <sched.h>
#  define fr_yield() sched_yield()
#endif

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#  define fr_pause() _mm_pause()
#else
#  define fr_pause() ((void) 0)
#endif

#if defined(_WIN32)
#  define FR_BARRIER_CLOCK 0
#else
#  include <time.h>
#  define FR_BARRIER_CLOCK 1
#endif

#define FR_BARRIER_SPIN_NS 5000     /* spin at most this long before yielding */
#define FR_BARRIER_YIELD_NS 50000   /* then yield at most this long before sleeping (Linux) */
#define FR_BARRIER_SPINS 256        /* without a clock: pauses before yielding */
#define FR_BARRIER_PAUSES 16        /* pauses between two looks at the clock */

typedef struct {
    int count;         /* threads arrived in this generation */
    int generation;
    int sleepers;      /* threads asleep (or about to be) on generation */
    int sleeps;        /* times a thread went to sleep here (for the tests) */
} fr_barrier;

static void fr_barrier_init(fr_barrier *b)
{
    b->count = 0;
    b->generation = 0;
    b->sleepers = 0;
    b->sleeps = 0;
}

#if defined(__linux__)
#  include <limits.h>
#  include <linux/futex.h>
#  include <sys/syscall.h>
#  include <unistd.h>
#  define FR_BARRIER_FUTEX 1
/* Sleep while *word == value (returns at once if it no longer is, or on a spurious wake). */
static void fr_futex_wait(int *word, int value)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}

static void fr_futex_wake_all(int *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
#  define FR_BARRIER_FUTEX 0
#endif

#if FR_BARRIER_CLOCK
static long long fr_barrier_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#endif

/* Whether a thread that has waited `spins` rounds of FR_BARRIER_PAUSES pauses since `start`
 * should keep spinning rather than yield. */
static int fr_barrier_keep_spinning(long long start, int spins)
{
#if FR_BARRIER_CLOCK
    (void) spins;
    return fr_barrier_now_ns() - start < FR_BARRIER_SPIN_NS;
#else
    (void) start;
    return spins * FR_BARRIER_PAUSES < FR_BARRIER_SPINS;
#endif
}

/* Whether a thread waiting since `start` has yielded long enough to sleep instead. */
static int fr_barrier_may_sleep(long long start)
{
#if FR_BARRIER_CLOCK && FR_BARRIER_FUTEX
    return fr_barrier_now_ns() - start >= FR_BARRIER_YIELD_NS;
#else
    (void) start;
    return 0;
#endif
}

static void fr_barrier_wait(fr_barrier *b, int n)
{
    const int generation = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, generation + 1, __ATOMIC_SEQ_CST);
#if FR_BARRIER_FUTEX
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) > 0)
            fr_futex_wake_all(&b->generation);
#endif
        return;
    }
#if FR_BARRIER_CLOCK
    const long long start = fr_barrier_now_ns();
#else
    const long long start = 0;
#endif
    int spinning = 1;
    for (int spins = 0; __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) == generation;) {
        if (spinning) {
            for (int i = 0; i < FR_BARRIER_PAUSES; i++)
                fr_pause();
            spinning = fr_barrier_keep_spinning(start, ++spins);
        } else if (!fr_barrier_may_sleep(start)) {
            fr_yield();
        } else {
#if FR_BARRIER_FUTEX
            /* asleep, the core is free for the partner the scheduler took off its own */
            __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(&b->generation, __ATOMIC_SEQ_CST) == generation) {
                __atomic_add_fetch(&b->sleeps, 1, __ATOMIC_RELAXED);
                fr_futex_wait(&b->generation, generation);
            }
            __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
#else
            fr_yield();
#endif
        }
    }
}

#endif

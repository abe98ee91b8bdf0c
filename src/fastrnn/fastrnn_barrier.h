/* A barrier for the threads of one parallel region that does not spin a busy machine to a halt.
 *
 * Why not OpenMP's: a thread that arrives first spins (libgomp: up to GOMP_SPINCOUNT, about
 * 300,000 iterations) before it sleeps. With another process holding a core, the thread it
 * waits for may not be running at all, and the spinning costs that thread its time slice.
 * Here an arriving thread spins briefly (FR_BARRIER_SPIN_NS, a few microseconds: on an idle
 * machine the others arrive within that), then yields the CPU on every check, so that a
 * descheduled partner gets the core. The spin is bounded by the clock, not by a count of
 * pauses: a pause takes from about 10 cycles (older Intel) to 65 (AMD Zen 2) or 140 (Intel
 * Skylake and later), so a count fit for one CPU spins ten times longer on another (4000
 * pauses measured 96 us on the AMD EPYC of the development machine, where a thread whose
 * partner had lost its core spent most of its time spinning). Without a POSIX clock, a count.
 *
 * Use: a zeroed fr_barrier shared by the team; every thread calls fr_barrier_wait(&b, n) with
 * the same n, the team size. Generation counting: the last to arrive resets the count and
 * opens the next generation; the others wait for the generation they saw on arrival to end.
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
#define FR_BARRIER_SPINS 256        /* without a clock: pauses before yielding */
#define FR_BARRIER_PAUSES 16        /* pauses between two looks at the clock */

typedef struct {
    int count;         /* threads arrived in this generation */
    int generation;
} fr_barrier;

static void fr_barrier_init(fr_barrier *b)
{
    b->count = 0;
    b->generation = 0;
}

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

static void fr_barrier_wait(fr_barrier *b, int n)
{
    const int generation = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, generation + 1, __ATOMIC_RELEASE);
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
        } else {
            fr_yield();
        }
    }
}

#endif

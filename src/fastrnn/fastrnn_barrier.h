/* A barrier for the threads of one parallel region that does not spin a busy machine to a halt.
 *
 * Why not OpenMP's: a thread that arrives first spins (libgomp: up to GOMP_SPINCOUNT, about
 * 300,000 iterations) before it sleeps. With another process holding a core, the thread it
 * waits for may not be running at all, and the spinning costs that thread its time slice.
 * Here an arriving thread spins briefly (FR_BARRIER_SPINS pauses, a few microseconds: on an
 * idle machine the others arrive within that), then yields the CPU on every check, so that a
 * descheduled partner gets the core.
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

#define FR_BARRIER_SPINS 4000

typedef struct {
    int count;         /* threads arrived in this generation */
    int generation;
} fr_barrier;

static void fr_barrier_init(fr_barrier *b)
{
    b->count = 0;
    b->generation = 0;
}

static void fr_barrier_wait(fr_barrier *b, int n)
{
    const int generation = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, generation + 1, __ATOMIC_RELEASE);
        return;
    }
    for (int spins = 0; __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) == generation;) {
        if (spins < FR_BARRIER_SPINS) {
            fr_pause();
            spins++;
        } else {
            fr_yield();
        }
    }
}

#endif

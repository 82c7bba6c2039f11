// parallel_for over [0, n) in contiguous chunks, with a process-wide thread count that Python sets through
// pyfast.set_num_threads (default: the cores this process may use). Uses OpenMP when the build found it,
// std::thread otherwise. The first exception thrown by any chunk is rethrown on the calling thread.
#pragma once
#include <cstdint>
#include <functional>

namespace pyfast {

int get_num_threads();
void set_num_threads(int n);     // n < 1 -> std::invalid_argument
int default_num_threads();       // cores in this process's affinity mask
bool have_openmp();

// Calls fn(begin, end, worker) on at most get_num_threads() chunks. `grain` is the smallest chunk worth a
// thread: below 2 * grain the loop runs inline, so tiny inputs pay no thread start-up.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

// Like parallel_for, but for short calls made between idle gaps (a data pipeline's per-batch kernels): chunks of
// `grain` indices are claimed from a shared counter, the calling thread starts on them at once, and it waits
// only for chunks already being run, never for a helper thread that has not woken up yet. An OpenMP region
// must wait at its closing barrier for every thread to arrive: on the VMs we measure, waking a sleeping
// worker after ~20 ms idle cost 1-6 ms, against a 0.4 ms kernel. Here a late helper finds the work done
// (worst case: the single-thread time). fn(begin, end, worker), worker in [0, get_num_threads()); chunks
// run in no particular order and on any thread, so results must not depend on which thread runs what.
void parallel_for_elastic(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

// Runs fn(worker) once on each of `workers` threads (Hogwild-style trainers own their partition).
void parallel_workers(int workers, const std::function<void(int)>& fn);

}  // namespace pyfast

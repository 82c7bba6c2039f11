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

// Runs fn(worker) once on each of `workers` threads (Hogwild-style trainers own their partition).
void parallel_workers(int workers, const std::function<void(int)>& fn);

}  // namespace pyfast

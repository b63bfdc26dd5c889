// How the CPU kernels split work over OpenMP threads: a size below which a loop runs on the
// calling thread alone (waking the pool costs more than it saves), and contiguous spans, one per
// thread. Only where work goes changes with the thread count, never the order of a sum.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace mp::kernels::cpu {

// Elementwise loops shorter than this run single-threaded: with OMP_WAIT_POLICY=passive (sleeping
// idle threads, see bench/run_bench_gpt.sh) a parallel region costs a wake-up of ~10 µs, the time
// of some 10^4 cheap elements.
constexpr int64_t kMinParallelElements = int64_t(1) << 15;

// body(begin, end) over [0, n) in contiguous spans, one per OpenMP thread (all on the calling
// thread when n < min_parallel). For a body whose every element is independent of the others.
template <typename Body>
void for_each_span(int64_t n, Body body, int64_t min_parallel = kMinParallelElements) {
    if (n < min_parallel || omp_get_max_threads() == 1 || omp_in_parallel()) {
        if (n > 0) body(int64_t(0), n);
        return;
    }
#pragma omp parallel
    {
        const int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
        // Spans rounded to 16 elements (a 64-byte line of floats), so threads share no cache line.
        const int64_t span = ((n + threads - 1) / threads + 15) / 16 * 16;
        const int64_t begin = std::min(n, thread * span), end = std::min(n, begin + span);
        if (begin < end) body(begin, end);
    }
}

}  // namespace mp::kernels::cpu

// Measures the machine's sustainable memory read bandwidth: the roofline that decode benchmarks
// compare against (decode streams every weight once per step).
#pragma once

#include <cstddef>

namespace sy::cpu {

class ThreadPool;

// Allocates `bytes` (use much more than the last-level cache, e.g. 1 GiB), touches it, then
// sums it with vector loads on every thread of `pool` (or the caller alone when null) `reps`
// times. Returns the best repetition's rate in GB/s (1e9 bytes per second).
double measure_read_bandwidth_gbs(size_t bytes, int reps, ThreadPool* pool);

}  // namespace sy::cpu

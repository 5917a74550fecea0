// rewind's thread pool, the one its ops split work over (REWIND_NUM_THREADS; docs/threads.md), for code
// outside the library with the same kind of work: a trainer's pass over its own large state.
#pragma once

#include <cstdint>
#include <functional>

#include "rewind/autodiff/export.hpp"

namespace rwd::autodiff {

// body(begin, end) on disjoint ranges that cover [0, items) in order, each of at least min_items (one range
// when items < 2 min_items, or when called from a range the pool's threads run: splits never nest there),
// the first on the calling thread; returns when all are done. The split depends only on items, min_items and
// the number of threads. Bodies must not throw or record on a tape.
REWIND_AUTODIFF_EXPORT void parallel_for(std::int64_t items, std::int64_t min_items,
                                         const std::function<void(std::int64_t, std::int64_t)>& body);

}  // namespace rwd::autodiff

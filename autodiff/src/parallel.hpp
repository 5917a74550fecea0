// The one thread pool of the process. OpenBLAS is set to one thread and rewind splits work itself: large
// GEMMs by rows or columns, the recurrences of the *_sequence ops by batch rows (rows never interact inside
// a recurrence, so each part runs all T steps without a barrier). Two pools on two cores (OpenBLAS's and
// ours, or OpenBLAS's waking for every small per-step GEMM) cost more than they gain. See docs/threads.md.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace rwd::autodiff::parallel {

// Parts work may be split into: REWIND_NUM_THREADS if set (1 turns splitting off), else the number of
// hardware threads.
int threads();

// Splits `items` into at most threads() parts of at least `min_items` each (1 when items < 2 * min_items,
// or when called from inside a part: parts never nest).
int parts_for(std::int64_t items, std::int64_t min_items);

// [begin, end) of part `part` of `parts` over `items`, in order and as even as possible.
inline std::pair<std::int64_t, std::int64_t> range(std::int64_t items, int part, int parts) {
  return {items * part / parts, items * (part + 1) / parts};
}

void run_parts(int parts, void (*body)(void* context, int part), void* context);

// This thread's floating-point control word (MXCSR on x86, 0 elsewhere). The pool's threads run each part in
// the mode of the thread that split the work.
unsigned float_mode();
void set_float_mode(unsigned mode);
#if defined(__x86_64__) || defined(__i386__)
inline constexpr unsigned flush_denormals_bits =
    0x8040;  // flush-to-zero (bit 15), denormals-are-zero (bit 6)
#else
inline constexpr unsigned flush_denormals_bits = 0;
#endif

// Calls body(part) for part in [0, parts), part 0 on the calling thread, and returns when all are done.
// Bodies must not throw or allocate from a tape (the arena is not thread-safe): allocate first.
template <class Body>
void run(int parts, Body&& body) {
  if (parts <= 1) {
    body(0);
    return;
  }
  using F = std::remove_reference_t<Body>;
  run_parts(
      parts, [](void* context, int part) { (*static_cast<F*>(context))(part); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

}  // namespace rwd::autodiff::parallel

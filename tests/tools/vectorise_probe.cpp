// Compiled by tests/fast_math_vectorises.cmake with rewind's flags: each loop below must vectorise. One
// stray select in fast_math.hpp once left all three scalar and every float activation 3x slower, which no
// value test can see.
#include "fast_math.hpp"

namespace fast = rwd::autodiff::fast;

void probe_exp(const float* x, float* y, long n) {
  for (long i = 0; i < n; ++i) y[i] = fast::exp(x[i]);
}
void probe_tanh(const float* x, float* y, long n) {
  for (long i = 0; i < n; ++i) y[i] = fast::tanh(x[i]);
}
void probe_sigmoid(const float* x, float* y, long n) {
  for (long i = 0; i < n; ++i) y[i] = fast::sigmoid(x[i]);
}

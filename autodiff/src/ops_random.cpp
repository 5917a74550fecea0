// Random ops: masks are pure functions of the tape's RandomKey, a stream and the element's index (a
// counter-based generator, SplitMix64's finaliser), so nothing but the key is state: the same update draws
// the same mask in forward and backward, on any thread split, and after --resume. docs/ops.md.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.hpp"
#include "rewind/autodiff/ops.hpp"

namespace rwd::autodiff {
using namespace kernels;

namespace {

constexpr std::uint64_t splitmix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// What dropout keeps for its backward step: the mask's origin, not the mask.
struct MaskSource {
  std::uint64_t base;        // key and stream mixed
  std::uint64_t threshold;   // an element is dropped when its 32 random bits are below this (p * 2^32)
  std::int64_t period_rows;  // > 0: row r draws row r % period_rows's bits
};

// mask[r, c] in {0, 1}; out = in * mask * scale, or out += ... for accumulate.
template <class T>
void apply_mask(const MaskSource& m, std::int64_t rows, std::int64_t cols, T scale, const T* in, T* out,
                bool accumulate) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t source_row = m.period_rows > 0 ? r % m.period_rows : r;
    const std::uint64_t row_base = m.base + static_cast<std::uint64_t>(source_row * cols);
    const T* x = in + r * cols;
    T* y = out + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const bool keep = (splitmix(row_base + static_cast<std::uint64_t>(c)) >> 32) >= m.threshold;
      const T v = keep ? x[c] * scale : T(0);
      y[c] = accumulate ? y[c] + v : v;
    }
  }
}

}  // namespace

Var dropout(const Var& x, double p, DropoutOptions options) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(Op::dropout, inputs);
  Node* nx = x.node();
  if (!(p >= 0 && p < 1)) fail(Op::dropout, "p must be in [0, 1), got " + std::to_string(p));
  if (options.period_rows < 0 || (options.period_rows > 0 && nx->shape.rows % options.period_rows != 0))
    fail(Op::dropout, "period_rows " + std::to_string(options.period_rows) + " does not divide the " +
                          std::to_string(nx->shape.rows) + " rows of " + nx->shape.str());
  if (!training() || p == 0) return x;  // evaluation: the identity, nothing recorded
  Node* n = Recorder::record(tape, Op::dropout, nx->shape, inputs, true);
  const RandomKey& key = tape.random_key();
  const std::uint64_t stream = options.stream >= 0 ? static_cast<std::uint64_t>(options.stream)
                                                   : (std::uint64_t{1} << 63) | n->id;  // never a named one
  auto* m = static_cast<MaskSource*>(Recorder::allocate_tensor(tape, sizeof(MaskSource)));
  *m = MaskSource{splitmix(splitmix(splitmix(splitmix(key.seed) ^ key.update) ^ key.window) ^ stream),
                  static_cast<std::uint64_t>(p * 4294967296.0), options.period_rows};
  n->saved = m;
  n->scalar = 1.0 / (1.0 - p);
  dispatch(tape.dtype(), [&]<class T>() {
    apply_mask<T>(*m, nx->shape.rows, nx->shape.cols, static_cast<T>(n->scalar), value_of<T>(nx),
                  out_of<T>(n), false);
  });
  return finish(tape, n);
}

template <class T>
void backward_dropout(Tape& tape, Node* n) {
  if (T* gx = grad_in<T>(tape, n, 0))
    apply_mask<T>(*static_cast<const MaskSource*>(n->saved), n->shape.rows, n->shape.cols,
                  static_cast<T>(n->scalar), dy_of<T>(n), gx, true);
}
template <class T>
void jvp_dropout(const Tape&, Tangents& t, Node* n) {
  apply_mask<T>(*static_cast<const MaskSource*>(n->saved), n->shape.rows, n->shape.cols,
                static_cast<T>(n->scalar), t.of<T>(n->inputs[0]), t.make<T>(n), false);
}
REWIND_INSTANTIATE_RULES(dropout)

}  // namespace rwd::autodiff

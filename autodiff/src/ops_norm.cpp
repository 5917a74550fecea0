// Normalisation, forward next to backward: layer_norm over each row in one node.
#include <array>
#include <cmath>
#include <string>

#include "kernels.hpp"
#include "rewind/autodiff/ops.hpp"

namespace rwd::autodiff {
using namespace kernels;

// torch.nn.LayerNorm's definition: mean and biased variance over the row, eps inside the square root.
// Saved for backward (when a gradient is needed): each row's mean and rstd = 1 / sqrt(var + eps), 2B values;
// xhat is recomputed from x rather than kept.
Var layer_norm(const Var& x, const Var& gain, const Var& bias, double eps) {
  const std::array<Var, 3> inputs{x, gain, bias};
  Tape& tape = Recorder::tape_of(Op::layer_norm, inputs);
  const Shape s = x.node()->shape, sg = gain.node()->shape, sb = bias.node()->shape;
  if (s.rank == 0 || s.cols == 0 || sg.rows != 1 || sg.cols != s.cols || sb.rows != 1 || sb.cols != s.cols)
    fail(Op::layer_norm, "x " + s.str() + ", gain " + sg.str() + ", bias " + sb.str() +
                             " do not fit (x is [B, N] with N > 0, gain and bias [N])");
  if (!(eps >= 0)) fail(Op::layer_norm, "eps " + std::to_string(eps) + " for x " + s.str() + " is not >= 0");
  Node* n = Recorder::record(tape, Op::layer_norm, s, inputs, true);
  n->scalar = eps;
  dispatch(tape.dtype(), [&]<class T>() {
    T* stats = n->requires_grad ? allocate_saved<T>(tape, n, 2 * s.rows) : nullptr;
    const T* v = value_of<T>(n->inputs[0]);
    const T* g = value_of<T>(n->inputs[1]);
    const T* b = value_of<T>(n->inputs[2]);
    T* y = out_of<T>(n);
    const double inv_n = 1.0 / static_cast<double>(s.cols);
    over_parts(s.rows, s.cols, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t r = first; r < last; ++r) {
        const T* row = v + r * s.cols;
        // In double: the two-pass mean and variance of a long float row stay accurate.
        const double total = lane_sum<double>(s.cols, [&](std::int64_t c) { return row[c]; });
        const auto mean = static_cast<T>(total * inv_n);
        const double squares = lane_sum<double>(s.cols, [&](std::int64_t c) {
          const double d = row[c] - mean;
          return d * d;
        });
        const auto rstd = static_cast<T>(1.0 / std::sqrt(squares * inv_n + eps));
        T* out = y + r * s.cols;
        for (std::int64_t c = 0; c < s.cols; ++c) out[c] = (row[c] - mean) * rstd * g[c] + b[c];
        if (stats != nullptr) {
          stats[2 * r] = mean;
          stats[2 * r + 1] = rstd;
        }
      }
    });
  });
  return finish(tape, n);
}

// With xhat = (x - mean) rstd and g = dy gain per row: dx = rstd (g - mean(g) - xhat mean(g xhat)),
// dgain = sum over rows of dy xhat, dbias = sum over rows of dy.
template <class T>
void backward_layer_norm(Tape& tape, Node* n) {
  const Shape s = n->shape;
  const T* v = value_of<T>(n->inputs[0]);
  const T* gain = value_of<T>(n->inputs[1]);
  const T* stats = static_cast<const T*>(n->saved);
  const T* dy = dy_of<T>(n);
  T* gx = grad_in<T>(tape, n, 0);
  T* gg = grad_in<T>(tape, n, 1);
  T* gb = grad_in<T>(tape, n, 2);
  const T inv_n = T(1) / static_cast<T>(s.cols);
  // gain and bias sum over the rows: one thread; x's rows are independent: shared out.
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const T* row = v + r * s.cols;
    const T* dyr = dy + r * s.cols;
    const T mean = stats[2 * r], rstd = stats[2 * r + 1];
    if (gg != nullptr)
      for (std::int64_t c = 0; c < s.cols; ++c) gg[c] += dyr[c] * (row[c] - mean) * rstd;
    if (gb != nullptr) add_into(gb, dyr, s.cols);
  }
  if (gx == nullptr) return;
  over_parts(s.rows, s.cols, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t r = first; r < last; ++r) {
      const T* row = v + r * s.cols;
      const T* dyr = dy + r * s.cols;
      const T mean = stats[2 * r], rstd = stats[2 * r + 1];
      const T sum_g = lane_sum<T>(s.cols, [&](std::int64_t c) { return dyr[c] * gain[c]; });
      const T sum_g_xhat =
          lane_sum<T>(s.cols, [&](std::int64_t c) { return dyr[c] * gain[c] * (row[c] - mean) * rstd; });
      const T mean_g = sum_g * inv_n, mean_g_xhat = sum_g_xhat * inv_n;
      T* gr = gx + r * s.cols;
      for (std::int64_t c = 0; c < s.cols; ++c) {
        const T xhat = (row[c] - mean) * rstd;
        gr[c] += rstd * (dyr[c] * gain[c] - mean_g - xhat * mean_g_xhat);
      }
    }
  });
}

// ty = gain txhat + xhat tgain + tbias, with txhat = rstd (tx - mean(tx) - xhat mean(xhat tx)) per row.
template <class T>
void jvp_layer_norm(const Tape&, Tangents& t, Node* n) {
  const Shape s = n->shape;
  const T *v = value_of<T>(n->inputs[0]), *gain = value_of<T>(n->inputs[1]);
  const T *tx = t.of<T>(n->inputs[0]), *tg = t.of<T>(n->inputs[1]), *tb = t.of<T>(n->inputs[2]);
  const T* stats = static_cast<const T*>(n->saved);
  T* ty = t.make<T>(n);
  const T inv_n = T(1) / static_cast<T>(s.cols);
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const T* row = v + r * s.cols;
    const T mean = stats[2 * r], rstd = stats[2 * r + 1];
    T mean_t = 0, mean_xhat_t = 0;
    if (tx != nullptr) {
      mean_t = lane_sum<T>(s.cols, [&](std::int64_t c) { return tx[r * s.cols + c]; }) * inv_n;
      mean_xhat_t =
          lane_sum<T>(s.cols, [&](std::int64_t c) { return (row[c] - mean) * rstd * tx[r * s.cols + c]; }) *
          inv_n;
    }
    for (std::int64_t c = 0; c < s.cols; ++c) {
      const T xhat = (row[c] - mean) * rstd;
      T d = tb != nullptr ? tb[c] : T(0);
      if (tg != nullptr) d += xhat * tg[c];
      if (tx != nullptr) d += gain[c] * rstd * (tx[r * s.cols + c] - mean_t - xhat * mean_xhat_t);
      ty[r * s.cols + c] = d;
    }
  }
}

REWIND_INSTANTIATE_RULES(layer_norm)

}  // namespace rwd::autodiff

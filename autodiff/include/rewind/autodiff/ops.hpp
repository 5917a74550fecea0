// Differentiable primitives. Each one is a row of ops.def; formulas and saved values are listed there.
// Every op throws std::invalid_argument naming itself and the shapes involved when its inputs do not fit.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>

#include "rewind/autodiff/export.hpp"
#include "rewind/autodiff/tape.hpp"

namespace rwd::autodiff {

// Elementwise; shapes must match, or one operand may be a single row (or rank-1) broadcast over the rows
// of the other (a bias).
REWIND_AUTODIFF_EXPORT Var add(const Var& a, const Var& b);
REWIND_AUTODIFF_EXPORT Var sub(const Var& a, const Var& b);
REWIND_AUTODIFF_EXPORT Var mul(const Var& a, const Var& b);
REWIND_AUTODIFF_EXPORT Var scale(const Var& x, double c);
REWIND_AUTODIFF_EXPORT Var neg(const Var& x);

enum class Transpose : bool { no = false, yes = true };
// op(a) @ op(b) with OpenBLAS GEMM; transposition is passed to GEMM, nothing is copied.
REWIND_AUTODIFF_EXPORT Var matmul(const Var& a, const Var& b, Transpose ta = Transpose::no,
                                  Transpose tb = Transpose::no);

REWIND_AUTODIFF_EXPORT Var sigmoid(const Var& x);
REWIND_AUTODIFF_EXPORT Var tanh(const Var& x);
REWIND_AUTODIFF_EXPORT Var relu(const Var& x);
REWIND_AUTODIFF_EXPORT Var exp(const Var& x);
REWIND_AUTODIFF_EXPORT Var log(const Var& x);

// Reductions over every element, to a scalar.
REWIND_AUTODIFF_EXPORT Var sum(const Var& x);
REWIND_AUTODIFF_EXPORT Var mean(const Var& x);

// Columns [begin, end) of a matrix, and the concatenation of matrices with equal row counts: the gate
// split and join of recurrent cells.
REWIND_AUTODIFF_EXPORT Var slice_cols(const Var& x, std::int64_t begin, std::int64_t end);
REWIND_AUTODIFF_EXPORT Var concat_cols(std::span<const Var> parts);
REWIND_AUTODIFF_EXPORT Var concat_cols(std::initializer_list<Var> parts);

// Rows [begin, end) of a matrix without a copy: the value and the gradient are those rows of x's buffers.
// How a window's per-step rows are read out of one window-wide tensor.
REWIND_AUTODIFF_EXPORT Var slice_rows(const Var& x, std::int64_t begin, std::int64_t end);
// Matrices with equal column counts stacked top to bottom.
REWIND_AUTODIFF_EXPORT Var concat_rows(std::span<const Var> parts);

// Rows table[indices[i]]: an embedding lookup. Indices are copied.
REWIND_AUTODIFF_EXPORT Var gather_rows(const Var& table, std::span<const std::int32_t> indices);

struct CrossEntropyOptions {
  std::int32_t ignore_index = -1;  // rows whose target equals this carry no loss
  // The loss is sum over counted rows / normalizer; 0 means the number of counted rows (a mean). A trainer
  // passes the count over a whole window to get the mean over batch and time.
  double normalizer = 0;
  // When set, receives the number of counted rows whose largest logit is at the target (accuracy).
  std::int64_t* correct = nullptr;
};
// Softmax cross-entropy of logits [B, V] against integer targets [B], computed with the log-sum-exp shift.
// With every row ignored the loss is 0 (and so is its gradient).
REWIND_AUTODIFF_EXPORT Var softmax_cross_entropy(const Var& logits, std::span<const std::int32_t> targets,
                                                 CrossEntropyOptions options = {});
// The sum of (a - b)^2 over every element divided by `normalizer`, by default the element count (the mean);
// both operands receive gradients. A trainer passes the count over a whole update, as for cross-entropy,
// so that every window's gradient is scaled by the same factor.
REWIND_AUTODIFF_EXPORT Var mse(const Var& a, const Var& b, double normalizer = 0);

// Same value, no path back: gradients stop here, exactly.
REWIND_AUTODIFF_EXPORT Var stop_gradient(const Var& x);

// ---- the primitives custom cells need: docs/ops.md lists every op with its formula and gradient ----------
// Binary ops (add, sub, mul, div, maximum, minimum, where) broadcast by one rule: along rows and along
// columns, the sizes must match or one side must be 1, which repeats it ([1, N] or [N] over the rows of
// [B, N], [B, 1] over its columns, [] or [1, 1] everywhere). A repeated operand's gradient is summed.

// Elementwise with a constant: x + c, c - x, x / c (= scale(x, 1 / c)), c / x.
REWIND_AUTODIFF_EXPORT Var add_scalar(const Var& x, double c);
REWIND_AUTODIFF_EXPORT Var rsub_scalar(const Var& x, double c);
REWIND_AUTODIFF_EXPORT Var div_scalar(const Var& x, double c);
REWIND_AUTODIFF_EXPORT Var rdiv_scalar(const Var& x, double c);
REWIND_AUTODIFF_EXPORT Var div(const Var& a, const Var& b);
// Elementwise max / min; a tie sends half the gradient to each side (as torch.maximum / torch.minimum).
REWIND_AUTODIFF_EXPORT Var maximum(const Var& a, const Var& b);
REWIND_AUTODIFF_EXPORT Var minimum(const Var& a, const Var& b);
// mask != 0 ? a : b elementwise. The mask is a constant: a Var that does not require a gradient (from
// Tape::input(tensor) with requires_grad = false, or stop_gradient); one that does is refused.
REWIND_AUTODIFF_EXPORT Var where(const Var& mask, const Var& a, const Var& b);

REWIND_AUTODIFF_EXPORT Var square(const Var& x);
REWIND_AUTODIFF_EXPORT Var pow(const Var& x, double p);  // x^p for a constant p, as std::pow
REWIND_AUTODIFF_EXPORT Var sqrt(const Var& x);
REWIND_AUTODIFF_EXPORT Var rsqrt(const Var& x);  // 1 / sqrt(x)
REWIND_AUTODIFF_EXPORT Var abs(const Var& x);
REWIND_AUTODIFF_EXPORT Var softplus(const Var& x);     // log(1 + e^x), without overflow
REWIND_AUTODIFF_EXPORT Var log_sigmoid(const Var& x);  // log(sigmoid(x)) = -softplus(-x), without overflow
enum class GeluApproximation : bool {
  none = false,
  tanh = true
};  // torch.nn.functional.gelu's `approximate`
REWIND_AUTODIFF_EXPORT Var gelu(const Var& x, GeluApproximation approximate = GeluApproximation::none);
REWIND_AUTODIFF_EXPORT Var elu(const Var& x, double alpha = 1.0);
REWIND_AUTODIFF_EXPORT Var leaky_relu(const Var& x, double slope = 0.01);
// min(max(x, lo), hi); the gradient passes where lo <= x <= hi and is 0 outside (as torch.clamp).
REWIND_AUTODIFF_EXPORT Var clamp(const Var& x, double lo, double hi);

// Reductions along one axis: over the columns of each row to [B, 1], over the rows of each column to [1, N].
REWIND_AUTODIFF_EXPORT Var sum_cols(const Var& x);
REWIND_AUTODIFF_EXPORT Var mean_cols(const Var& x);
REWIND_AUTODIFF_EXPORT Var max_cols(const Var& x);  // the gradient goes to the first maximum of each row
REWIND_AUTODIFF_EXPORT Var logsumexp_cols(const Var& x);
REWIND_AUTODIFF_EXPORT Var sum_rows(const Var& x);
REWIND_AUTODIFF_EXPORT Var mean_rows(const Var& x);
// Row-wise softmax and log-softmax, shifted by each row's maximum.
REWIND_AUTODIFF_EXPORT Var softmax(const Var& x);
REWIND_AUTODIFF_EXPORT Var log_softmax(const Var& x);

// [B, N] -> [N, B], copied.
REWIND_AUTODIFF_EXPORT Var transpose(const Var& x);
// The same elements (row-major) in another shape of the same element count, without a copy: a view like
// slice_rows.
REWIND_AUTODIFF_EXPORT Var reshape(const Var& x, Shape shape);

// torch.nn.LayerNorm over each row of x [B, N] in one node: (x - mean) / sqrt(var + eps) * gain + bias with
// the biased variance; gain and bias are [N].
REWIND_AUTODIFF_EXPORT Var layer_norm(const Var& x, const Var& gain, const Var& bias, double eps = 1e-5);

// Fused kernels for recurrent cells: the same values and gradients as their primitive formulas (in ops.def),
// in one pass over memory with a hand-written backward.
// x [B, K] @ w[N, K]^T + b [N]: a PyTorch nn.Linear / the input or hidden projection of a cell.
REWIND_AUTODIFF_EXPORT Var linear(const Var& x, const Var& w, const Var& b);
// softmax_cross_entropy(linear(x, w, b), targets): a classifier head and its loss in one node that keeps
// neither logits nor probabilities: it works 512 rows at a time and backward recomputes them.
REWIND_AUTODIFF_EXPORT Var linear_cross_entropy(const Var& x, const Var& w, const Var& b,
                                                std::span<const std::int32_t> targets,
                                                CrossEntropyOptions options = {});
// tanh(a + b) for equal shapes: the tanh RNN update from its two projections.
REWIND_AUTODIFF_EXPORT Var rnn_pointwise(const Var& a, const Var& b);
// gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, both [B, 4H] in PyTorch's gate order i, f, g, o, and c_prev
// [B, H]
// -> [h | c] as [B, 2H].
REWIND_AUTODIFF_EXPORT Var lstm_pointwise(const Var& gi, const Var& gh, const Var& c_prev);
// gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, both [B, 3H] in order r, z, n, and h_prev [B, H] -> h [B,
// H].
REWIND_AUTODIFF_EXPORT Var gru_pointwise(const Var& gi, const Var& gh, const Var& h_prev);

// Whole windows of the built-in cells in one op each (PyTorch's equations and gate orders, as the pointwise
// kernels above): x is [T*B, I], step-major (rows t*B ... t*B + B - 1 are step t), h0 and c0 [B, H], the
// weights and biases as in torch.nn.RNN/LSTM/GRU. resets is empty or holds T*B flags in the same order: 1
// restarts that row from a zero state before that step, and no gradient flows back across it.
// tanh RNN -> h_t of every step, [T*B, H].
REWIND_AUTODIFF_EXPORT Var rnn_sequence(const Var& x, const Var& h0, const Var& w_ih, const Var& w_hh,
                                        const Var& b_ih, const Var& b_hh,
                                        std::span<const std::uint8_t> resets = {});
// LSTM -> h_t of every step, then c_T: [(T+1)*B, H]. Read them with slice_rows.
REWIND_AUTODIFF_EXPORT Var lstm_sequence(const Var& x, const Var& h0, const Var& c0, const Var& w_ih,
                                         const Var& w_hh, const Var& b_ih, const Var& b_hh,
                                         std::span<const std::uint8_t> resets = {});
// GRU -> h_t of every step, [T*B, H].
REWIND_AUTODIFF_EXPORT Var gru_sequence(const Var& x, const Var& h0, const Var& w_ih, const Var& w_hh,
                                        const Var& b_ih, const Var& b_hh,
                                        std::span<const std::uint8_t> resets = {});

inline Var operator+(const Var& a, const Var& b) {
  return add(a, b);
}
inline Var operator-(const Var& a, const Var& b) {
  return sub(a, b);
}
inline Var operator*(const Var& a, const Var& b) {
  return mul(a, b);
}
inline Var operator/(const Var& a, const Var& b) {
  return div(a, b);
}
inline Var operator+(const Var& x, double c) {
  return add_scalar(x, c);
}
inline Var operator+(double c, const Var& x) {
  return add_scalar(x, c);
}
inline Var operator-(const Var& x, double c) {
  return add_scalar(x, -c);
}
inline Var operator-(double c, const Var& x) {
  return rsub_scalar(x, c);
}
inline Var operator/(const Var& x, double c) {
  return div_scalar(x, c);
}
inline Var operator/(double c, const Var& x) {
  return rdiv_scalar(x, c);
}
inline Var operator*(const Var& x, double c) {
  return scale(x, c);
}
inline Var operator*(double c, const Var& x) {
  return scale(x, c);
}
inline Var operator-(const Var& x) {
  return neg(x);
}

// Inverted dropout: each element is zeroed with probability p, the rest scaled by 1 / (1 - p); the identity
// in evaluation mode (EvalModeGuard) and for p = 0. The mask is a pure function of the tape's RandomKey, the
// stream and the element: see RandomKey.
struct DropoutOptions {
  // > 0: one mask of this many rows repeated down x. With rows = batch over a window's [T * B, N] rows, every
  // step of a row shares its mask: "locked" (variational) dropout (Gal & Ghahramani 2016).
  std::int64_t period_rows = 0;
  // Which mask: -1 draws the op's own (from its position on the tape); a number >= 0 names a stream, and
  // every dropout of the same shape and stream in the same window draws the same mask (locked across step
  // calls).
  std::int64_t stream = -1;
};
REWIND_AUTODIFF_EXPORT Var dropout(const Var& x, double p, DropoutOptions options = {});

}  // namespace rwd::autodiff

// Reductions, each forward next to its backward: over every element (sum, mean), over the columns of each
// row to [B, 1] (sum_cols, mean_cols, max_cols, logsumexp_cols), over the rows of each column to [1, N]
// (sum_rows, mean_rows), and the row-wise softmax and log_softmax.
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "kernels.hpp"
#include "rewind/autodiff/ops.hpp"

namespace rwd::autodiff {
using namespace kernels;

namespace {
Var reduce(Op op, const Var& x) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(op, inputs);
  Node* nx = x.node();
  Node* n = Recorder::record(tape, op, Shape::scalar(), inputs, true);
  const std::int64_t count = nx->shape.numel();
  n->scalar = op == Op::mean ? 1.0 / static_cast<double>(count) : 1.0;
  dispatch(tape.dtype(), [&]<class T>() {
    const T* v = value_of<T>(nx);
    // Accumulated in double so a long float sum stays accurate.
    const double total = lane_sum<double>(count, [&](std::int64_t i) { return v[i]; });
    *out_of<T>(n) = static_cast<T>(total * n->scalar);
  });
  return finish(tape, n);
}

template <class T>
void backward_reduce(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T g = static_cast<T>(*dy_of<T>(n) * n->scalar);
  const std::int64_t count = n->inputs[0]->shape.numel();
  for (std::int64_t i = 0; i < count; ++i) gx[i] += g;
}
}  // namespace

Var sum(const Var& x) {
  return reduce(Op::sum, x);
}
Var mean(const Var& x) {
  return reduce(Op::mean, x);
}
// ty = the same reduction of tx (scalar 1, or 1 / n for a mean).
template <class T>
void jvp_reduce(Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  const double total = lane_sum<double>(n->inputs[0]->shape.numel(), [&](std::int64_t i) { return tx[i]; });
  *t.make<T>(n) = static_cast<T>(total * n->scalar);
}
template <class T>
void jvp_sum(const Tape&, Tangents& t, Node* n) {
  jvp_reduce<T>(t, n);
}
template <class T>
void jvp_mean(const Tape&, Tangents& t, Node* n) {
  jvp_reduce<T>(t, n);
}
template <class T>
void backward_sum(Tape& tape, Node* n) {
  backward_reduce<T>(tape, n);
}
template <class T>
void backward_mean(Tape& tape, Node* n) {
  backward_reduce<T>(tape, n);
}

// ---- along one axis ------------------------------------------------------------------------------------

namespace {

enum class Axis : bool { cols, rows };

// Records op reducing x over its columns (to [B, 1]) or its rows (to [1, N]; a rank-1 x keeps its shape),
// with n->scalar = 1, or 1 / the reduced count for a mean. Only sums accept an empty axis.
Node* record_reduction(Op op, const Var& x, Axis axis, Tape*& tape) {
  const std::span<const Var> inputs(&x, 1);
  tape = &Recorder::tape_of(op, inputs);
  const Shape s = x.node()->shape;
  const std::int64_t count = axis == Axis::cols ? s.cols : s.rows;
  const bool is_sum = op == Op::sum_cols || op == Op::sum_rows;
  if (count == 0 && !is_sum)
    fail(op, "x " + s.str() + " has no " + (axis == Axis::cols ? "columns" : "rows") + " to reduce");
  const Shape out = axis == Axis::cols ? Shape::matrix(s.rows, 1)
                    : s.rank == 2      ? Shape::matrix(1, s.cols)
                                       : s;
  Node* n = Recorder::record(*tape, op, out, inputs, true);
  const bool is_mean = op == Op::mean_cols || op == Op::mean_rows;
  n->scalar = is_mean ? 1.0 / static_cast<double>(count) : 1.0;
  return n;
}

// The largest element of a row of count >= 1 elements (NaN, if any, makes the callers' results NaN anyway).
template <class T>
T row_max(const T* x, std::int64_t count) {
  T top = x[0];
  for (std::int64_t c = 1; c < count; ++c) top = x[c] > top ? x[c] : top;
  return top;
}
// What logsumexp subtracts: the row maximum, or 0 when it is infinite, as torch.logsumexp (a row of -inf
// gives -inf, a row holding +inf gives +inf, not NaN from inf - inf). softmax and log_softmax subtract the
// maximum whatever it is, as torch: a row holding +inf is NaN throughout.
template <class T>
T logsumexp_shift(const T* x, std::int64_t count) {
  const T top = row_max(x, count);
  return std::isfinite(top) ? top : T(0);
}

Var reduce_cols(Op op, const Var& x) {
  Tape* tape = nullptr;
  Node* n = record_reduction(op, x, Axis::cols, tape);
  const Shape s = n->inputs[0]->shape;
  dispatch(tape->dtype(), [&]<class T>() {
    const T* v = value_of<T>(n->inputs[0]);
    T* y = out_of<T>(n);
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const double total =
          lane_sum<double>(s.cols, [&](std::int64_t c) { return v[r * s.cols + c]; });  // as sum
      y[r] = static_cast<T>(total * n->scalar);
    }
  });
  return finish(*tape, n);
}

template <class T>
void jvp_reduce_cols(Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  const std::int64_t cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r)
    ty[r] =
        static_cast<T>(lane_sum<double>(cols, [&](std::int64_t c) { return tx[r * cols + c]; }) * n->scalar);
}
template <class T>
void jvp_reduce_rows(Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  const std::int64_t rows = n->inputs[0]->shape.rows, cols = n->shape.cols;
  add_column_sums(ty, tx, rows, cols, cols);
  for (std::int64_t c = 0; c < cols; ++c) ty[c] *= static_cast<T>(n->scalar);
}
template <class T>
void backward_reduce_cols(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const std::int64_t rows = n->shape.rows, cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < rows; ++r) {
    const T g = static_cast<T>(dy[r] * n->scalar);
    for (std::int64_t c = 0; c < cols; ++c) gx[r * cols + c] += g;
  }
}

Var reduce_rows(Op op, const Var& x) {
  Tape* tape = nullptr;
  Node* n = record_reduction(op, x, Axis::rows, tape);
  const Shape s = n->inputs[0]->shape;
  dispatch(tape->dtype(), [&]<class T>() {
    const T* v = value_of<T>(n->inputs[0]);
    T* y = out_of<T>(n);
    std::fill_n(y, s.cols, T(0));
    add_column_sums(y, v, s.rows, s.cols, s.cols);
    const T factor = static_cast<T>(n->scalar);
    for (std::int64_t c = 0; c < s.cols; ++c) y[c] *= factor;
  });
  return finish(*tape, n);
}

template <class T>
void backward_reduce_rows(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const T factor = static_cast<T>(n->scalar);
  const std::int64_t rows = n->inputs[0]->shape.rows, cols = n->shape.cols;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) gx[r * cols + c] += dy[c] * factor;
}

}  // namespace

Var sum_cols(const Var& x) {
  return reduce_cols(Op::sum_cols, x);
}
template <class T>
void jvp_sum_cols(const Tape&, Tangents& t, Node* n) {
  jvp_reduce_cols<T>(t, n);
}
template <class T>
void backward_sum_cols(Tape& tape, Node* n) {
  backward_reduce_cols<T>(tape, n);
}

Var mean_cols(const Var& x) {
  return reduce_cols(Op::mean_cols, x);
}
template <class T>
void jvp_mean_cols(const Tape&, Tangents& t, Node* n) {
  jvp_reduce_cols<T>(t, n);
}
template <class T>
void backward_mean_cols(Tape& tape, Node* n) {
  backward_reduce_cols<T>(tape, n);
}

Var sum_rows(const Var& x) {
  return reduce_rows(Op::sum_rows, x);
}
template <class T>
void jvp_sum_rows(const Tape&, Tangents& t, Node* n) {
  jvp_reduce_rows<T>(t, n);
}
template <class T>
void backward_sum_rows(Tape& tape, Node* n) {
  backward_reduce_rows<T>(tape, n);
}

Var mean_rows(const Var& x) {
  return reduce_rows(Op::mean_rows, x);
}
template <class T>
void jvp_mean_rows(const Tape&, Tangents& t, Node* n) {
  jvp_reduce_rows<T>(t, n);
}
template <class T>
void backward_mean_rows(Tape& tape, Node* n) {
  backward_reduce_rows<T>(tape, n);
}

// The first maximum of each row (a NaN counts as the maximum, as torch.max), kept for backward.
Var max_cols(const Var& x) {
  Tape* tape = nullptr;
  Node* n = record_reduction(Op::max_cols, x, Axis::cols, tape);
  const Shape s = n->inputs[0]->shape;
  if (s.cols > std::numeric_limits<std::int32_t>::max())
    fail(Op::max_cols, "x " + s.str() + " has more columns than its saved indices can hold");
  std::int32_t* argmax = nullptr;
  if (n->requires_grad) {
    argmax = static_cast<std::int32_t*>(
        Recorder::allocate_tensor(*tape, sizeof(std::int32_t) * static_cast<std::size_t>(s.rows)));
    n->indices = argmax;
  }
  dispatch(tape->dtype(), [&]<class T>() {
    const T* v = value_of<T>(n->inputs[0]);
    T* y = out_of<T>(n);
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const T* row = v + r * s.cols;
      std::int64_t best = 0;
      for (std::int64_t c = 1; c < s.cols && !std::isnan(row[best]); ++c)
        if (row[c] > row[best] || std::isnan(row[c])) best = c;
      y[r] = row[best];
      if (argmax != nullptr) argmax[r] = static_cast<std::int32_t>(best);
    }
  });
  return finish(*tape, n);
}
template <class T>
void jvp_max_cols(const Tape&, Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  const std::int64_t cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r) ty[r] = tx[r * cols + n->indices[r]];
}
template <class T>
void backward_max_cols(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const std::int64_t cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r) gx[r * cols + n->indices[r]] += dy[r];
}

Var logsumexp_cols(const Var& x) {
  Tape* tape = nullptr;
  Node* n = record_reduction(Op::logsumexp_cols, x, Axis::cols, tape);
  const Shape s = n->inputs[0]->shape;
  dispatch(tape->dtype(), [&]<class T>() {
    const T* v = value_of<T>(n->inputs[0]);
    T* y = out_of<T>(n);
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const T* row = v + r * s.cols;
      const T shift = logsumexp_shift(row, s.cols);
      // Terms in (0, 1], one of them 1: summing in T loses nothing that matters.
      const T total = lane_sum<T>(s.cols, [&](std::int64_t c) { return kernels::exp<T>(row[c] - shift); });
      y[r] = shift + std::log(total);
    }
  });
  return finish(*tape, n);
}
// ty = sum_c softmax(x)_c tx_c per row.
template <class T>
void jvp_logsumexp_cols(const Tape&, Tangents& t, Node* n) {
  const T *tx = t.of<T>(n->inputs[0]), *x = value_of<T>(n->inputs[0]), *y = value_of<T>(n);
  T* ty = t.make<T>(n);
  const std::int64_t cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r)
    ty[r] = lane_sum<T>(
        cols, [&](std::int64_t c) { return kernels::exp<T>(x[r * cols + c] - y[r]) * tx[r * cols + c]; });
}
template <class T>
void backward_logsumexp_cols(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const T* x = value_of<T>(n->inputs[0]);
  const T* y = value_of<T>(n);
  const std::int64_t cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r) {
    const T g = dy[r], top = y[r];
    for (std::int64_t c = 0; c < cols; ++c) gx[r * cols + c] += g * kernels::exp<T>(x[r * cols + c] - top);
  }
}

// ---- softmax and log_softmax over each row -------------------------------------------------------------

namespace {
Node* record_row_wise(Op op, const Var& x, Tape*& tape) {
  const std::span<const Var> inputs(&x, 1);
  tape = &Recorder::tape_of(op, inputs);
  const Shape s = x.node()->shape;
  if (s.cols == 0) fail(op, "x " + s.str() + " has no columns");
  return Recorder::record(*tape, op, s, inputs, true);
}
}  // namespace

Var softmax(const Var& x) {
  Tape* tape = nullptr;
  Node* n = record_row_wise(Op::softmax, x, tape);
  const Shape s = n->shape;
  dispatch(tape->dtype(), [&]<class T>() {
    const T* v = value_of<T>(n->inputs[0]);
    T* y = out_of<T>(n);
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const T* row = v + r * s.cols;
      T* out = y + r * s.cols;
      const T shift = row_max(row, s.cols);
      for (std::int64_t c = 0; c < s.cols; ++c) out[c] = kernels::exp<T>(row[c] - shift);
      const T inverse = T(1) / lane_sum<T>(s.cols, [&](std::int64_t c) { return out[c]; });
      for (std::int64_t c = 0; c < s.cols; ++c) out[c] *= inverse;
    }
  });
  return finish(*tape, n);
}
namespace {
// ty = combine(y, tx, dot) elementwise with dot = sum_c weight(y_c) tx_c per row: the tangent rules of
// softmax and log_softmax.
template <class T, class Weight, class Combine>
void jvp_row_wise(Tangents& t, Node* n, Weight weight, Combine combine) {
  const T *tx = t.of<T>(n->inputs[0]), *y = value_of<T>(n);
  T* ty = t.make<T>(n);
  const std::int64_t cols = n->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r) {
    const T* yr = y + r * cols;
    const T* txr = tx + r * cols;
    const T dot = lane_sum<T>(cols, [&](std::int64_t c) { return weight(yr[c]) * txr[c]; });
    for (std::int64_t c = 0; c < cols; ++c) ty[r * cols + c] = combine(yr[c], txr[c], dot);
  }
}
}  // namespace

// ty = y (tx - sum_c y_c tx_c) per row.
template <class T>
void jvp_softmax(const Tape&, Tangents& t, Node* n) {
  jvp_row_wise<T>(
      t, n, [](T y) { return y; }, [](T y, T tx, T dot) { return y * (tx - dot); });
}
template <class T>
void backward_softmax(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const T* y = value_of<T>(n);
  const std::int64_t cols = n->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    const T dot = lane_sum<T>(cols, [&](std::int64_t c) { return dyr[c] * yr[c]; });
    T* gr = gx + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) gr[c] += yr[c] * (dyr[c] - dot);
  }
}

Var log_softmax(const Var& x) {
  Tape* tape = nullptr;
  Node* n = record_row_wise(Op::log_softmax, x, tape);
  const Shape s = n->shape;
  dispatch(tape->dtype(), [&]<class T>() {
    const T* v = value_of<T>(n->inputs[0]);
    T* y = out_of<T>(n);
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const T* row = v + r * s.cols;
      T* out = y + r * s.cols;
      const T shift = row_max(row, s.cols);
      const T total = lane_sum<T>(s.cols, [&](std::int64_t c) { return kernels::exp<T>(row[c] - shift); });
      const T log_total = std::log(total);  // subtracted after the shift: shift + log_total would round
      for (std::int64_t c = 0; c < s.cols; ++c) out[c] = (row[c] - shift) - log_total;
    }
  });
  return finish(*tape, n);
}
// ty = tx - sum_c e^(y_c) tx_c per row.
template <class T>
void jvp_log_softmax(const Tape&, Tangents& t, Node* n) {
  jvp_row_wise<T>(
      t, n, [](T y) { return kernels::exp<T>(y); }, [](T, T tx, T dot) { return tx - dot; });
}
template <class T>
void backward_log_softmax(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const T* y = value_of<T>(n);
  const std::int64_t cols = n->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    const T total = lane_sum<T>(cols, [&](std::int64_t c) { return dyr[c]; });
    T* gr = gx + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) gr[c] += dyr[c] - kernels::exp<T>(yr[c]) * total;
  }
}

REWIND_INSTANTIATE_RULES(sum)
REWIND_INSTANTIATE_RULES(mean)
REWIND_INSTANTIATE_RULES(sum_cols)
REWIND_INSTANTIATE_RULES(mean_cols)
REWIND_INSTANTIATE_RULES(max_cols)
REWIND_INSTANTIATE_RULES(logsumexp_cols)
REWIND_INSTANTIATE_RULES(sum_rows)
REWIND_INSTANTIATE_RULES(mean_rows)
REWIND_INSTANTIATE_RULES(softmax)
REWIND_INSTANTIATE_RULES(log_softmax)

}  // namespace rwd::autodiff

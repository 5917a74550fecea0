// Helpers of the elementwise ops (ops_elementwise.cpp): the one broadcasting rule of every binary op, loops
// over broadcast operands forward and backward, and the unary op pattern.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "kernels.hpp"

namespace rwd::autodiff::kernels {

// The broadcasting rule of every binary op (and of where): along rows and along columns, the sizes must
// match or one side must be 1, which is repeated. So [1, N] (or rank-1 [N]) goes over the rows of [B, N],
// [B, 1] over its columns, [1, 1] (or a scalar) everywhere, and [B, 1] with [1, N] gives [B, N]. The result
// has the larger rank, and rank 2 when it has more than one row.
inline Shape broadcast_shape(Op op, Shape a, Shape b) {
  if (a == b) return a;
  auto size = [](std::int64_t x, std::int64_t y) -> std::int64_t {
    return x == y || y == 1 ? x : x == 1 ? y : -1;
  };
  const std::int64_t rows = size(a.rows, b.rows), cols = size(a.cols, b.cols);
  if (rows < 0 || cols < 0)
    fail(op, "shapes " + a.str() + " and " + b.str() +
                 " do not broadcast (rows must match or one side must have 1 row, and the same for columns)");
  int rank = std::max(a.rank, b.rank);
  if (rows != 1) rank = 2;
  if (cols != 1) rank = std::max(rank, 1);
  return Shape{rows, cols, rank};
}

// How an operand of shape s is read for element (r, c) of a broadcast result `out`: at r * row + c * col.
// row is 0 when s has one row repeated over out's rows; col is 0 when s has one column repeated over out's
// columns, else 1.
struct Operand {
  std::int64_t row = 0, col = 1;
};
inline Operand operand_in(Shape s, Shape out) {
  return {s.rows == out.rows ? s.cols : 0, s.cols == out.cols ? 1 : 0};
}

// z[r, c] = f(a[r, c], b[r, c]) with a and b read as broadcast operands; the column strides are compile-time
// constants so that the inner loop vectorises.
template <int CA, int CB, class T, class F>
void broadcast_rows(Shape out, const T* a, Operand oa, const T* b, Operand ob, T* z, F& f) {
  const std::int64_t cols = out.cols;
  over_parts(out.rows, cols, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t r = first; r < last; ++r) {
      const T* ar = a + r * oa.row;
      const T* br = b + r * ob.row;
      T* zr = z + r * cols;
      for (std::int64_t c = 0; c < cols; ++c) zr[c] = f(ar[c * CA], br[c * CB]);
    }
  });
}
template <class T, class F>
void broadcast_apply(Shape out, const T* a, Operand oa, const T* b, Operand ob, T* z, F f) {
  if (oa.col == 1 && ob.col == 1) {
    broadcast_rows<1, 1>(out, a, oa, b, ob, z, f);
  } else if (oa.col == 1) {
    broadcast_rows<1, 0>(out, a, oa, b, ob, z, f);
  } else if (ob.col == 1) {
    broadcast_rows<0, 1>(out, a, oa, b, ob, z, f);
  } else {
    broadcast_rows<0, 0>(out, a, oa, b, ob, z, f);
  }
}

// g[operand `which` at (r, c)] += dy[r, c] * d(a[r, c], b[r, c]): the gradient of one operand of a broadcast
// op, summed over the rows and columns it was repeated along. d is dz/d(that operand).
template <int Which, int CA, int CB, class T, class D>
void broadcast_grad_rows(Shape out, T* g, const T* dy, const T* a, Operand oa, const T* b, Operand ob, D& d) {
  constexpr int CG = Which == 0 ? CA : CB;
  const std::int64_t g_row = Which == 0 ? oa.row : ob.row, cols = out.cols;
  auto rows = [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t r = first; r < last; ++r) {
      const T* ar = a + r * oa.row;
      const T* br = b + r * ob.row;
      const T* dyr = dy + r * cols;
      T* gr = g + r * g_row;
      if constexpr (CG == 1) {
        for (std::int64_t c = 0; c < cols; ++c) gr[c] += dyr[c] * d(ar[c * CA], br[c * CB]);
      } else {
        gr[0] += lane_sum<T>(cols, [&](std::int64_t c) { return dyr[c] * d(ar[c * CA], br[c * CB]); });
      }
    }
  };
  // An operand repeated over the rows sums every row into the same place: that stays on one thread.
  if (g_row == 0) return rows(0, out.rows);
  over_parts(out.rows, cols, rows);
}
template <int Which, class T, class D>
void broadcast_grad(Shape out, T* g, const T* dy, const T* a, Operand oa, const T* b, Operand ob, D d) {
  if (oa.col == 1 && ob.col == 1) {
    broadcast_grad_rows<Which, 1, 1>(out, g, dy, a, oa, b, ob, d);
  } else if (oa.col == 1) {
    broadcast_grad_rows<Which, 1, 0>(out, g, dy, a, oa, b, ob, d);
  } else if (ob.col == 1) {
    broadcast_grad_rows<Which, 0, 1>(out, g, dy, a, oa, b, ob, d);
  } else {
    broadcast_grad_rows<Which, 0, 0>(out, g, dy, a, oa, b, ob, d);
  }
}

// Records op on x with n->scalar = constant and fills the output with f(x) elementwise.
template <class F>
Var unary(Op op, const Var& x, double constant, F&& f) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(op, inputs);
  Node* nx = x.node();
  Node* n = Recorder::record(tape, op, nx->shape, inputs, true);
  n->scalar = constant;
  const std::int64_t count = nx->shape.numel();
  dispatch(tape.dtype(), [&]<class T>() {
    const T* in = value_of<T>(nx);
    T* y = out_of<T>(n);
    over_parts(count, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t i = first; i < last; ++i) y[i] = f(in[i]);
    });
  });
  return finish(tape, n);
}

// dx += dy * g(x, y) elementwise.
template <class T, class G>
void backward_unary(Tape& tape, Node* n, G&& g) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const T* x = value_of<T>(n->inputs[0]);
  const T* y = value_of<T>(n);
  over_parts(n->shape.numel(), 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t i = first; i < last; ++i) gx[i] += dy[i] * g(x[i], y[i]);
  });
}

// ty = tx * g(x, y) elementwise: the same derivative, applied forward.
template <class T, class G>
void jvp_unary(Tangents& t, Node* n, G&& g) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  const T* x = value_of<T>(n->inputs[0]);
  const T* y = value_of<T>(n);
  for (std::int64_t i = 0; i < n->shape.numel(); ++i) ty[i] = tx[i] * g(x[i], y[i]);
}

}  // namespace rwd::autodiff::kernels

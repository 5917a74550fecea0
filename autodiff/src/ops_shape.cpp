// Shape ops, each forward next to its backward: transpose (a copy) and reshape (a view, like slice_rows).
#include <span>
#include <string>

#include "kernels.hpp"
#include "rewind/autodiff/ops.hpp"

namespace rwd::autodiff {
using namespace kernels;

Var transpose(const Var& x) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(Op::transpose, inputs);
  Node* nx = x.node();
  const Shape s = nx->shape;
  if (s.rank != 2) fail(Op::transpose, "needs a matrix, got " + s.str() + " (reshape a vector instead)");
  Node* n = Recorder::record(tape, Op::transpose, Shape::matrix(s.cols, s.rows), inputs, true);
  dispatch(tape.dtype(), [&]<class T>() {
    const T* v = value_of<T>(nx);
    T* y = out_of<T>(n);
    for (std::int64_t r = 0; r < s.rows; ++r)
      for (std::int64_t c = 0; c < s.cols; ++c) y[c * s.rows + r] = v[r * s.cols + c];
  });
  return finish(tape, n);
}
template <class T>
void backward_transpose(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const T* dy = dy_of<T>(n);
  const std::int64_t rows = n->inputs[0]->shape.rows, cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) gx[r * cols + c] += dy[c * rows + r];
}

template <class T>
void jvp_transpose(const Tape&, Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  const std::int64_t rows = n->inputs[0]->shape.rows, cols = n->inputs[0]->shape.cols;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) ty[c * rows + r] = tx[r * cols + c];
}

// The node shares x's value buffer; Recorder::ensure_grad gives it x's gradient buffer the same way.
Var reshape(const Var& x, Shape shape) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(Op::reshape, inputs);
  Node* nx = x.node();
  const Shape s = nx->shape;
  const bool well_formed = shape.rows >= 0 && shape.cols >= 0 && shape.rank >= 0 && shape.rank <= 2 &&
                           (shape.rank == 2 || shape.rows == 1) && (shape.rank != 0 || shape.cols == 1);
  if (!well_formed)
    fail(Op::reshape, "target shape {rows " + std::to_string(shape.rows) + ", cols " +
                          std::to_string(shape.cols) + ", rank " + std::to_string(shape.rank) +
                          "} is not a valid shape (use Shape::matrix, Shape::vector or Shape::scalar)");
  if (shape.numel() != s.numel())
    fail(Op::reshape, "x " + s.str() + " has " + std::to_string(s.numel()) + " elements but " + shape.str() +
                          " has " + std::to_string(shape.numel()));
  Node* n = Recorder::record(tape, Op::reshape, shape, inputs, true, nx->value);
  return finish(tape, n);
}
// Nothing to do: the view's gradient is x's gradient buffer, so dy is already there.
template <class T>
void backward_reshape(Tape&, Node*) {}
// Likewise its tangent is x's.
template <class T>
void jvp_reshape(const Tape&, Tangents& t, Node* n) {
  t.view<T>(n, n->inputs[0], 0);
}

REWIND_INSTANTIATE_RULES(transpose)
REWIND_INSTANTIATE_RULES(reshape)

}  // namespace rwd::autodiff

// Fused kernels for the built-in recurrent cells. Each computes what its formula in ops.def computes with
// primitives, in one pass and with a hand-written backward; tests check both against the primitive versions.
#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>
#include <string>

#include "kernels.hpp"
#include "rewind/autodiff/inference.hpp"
#include "rewind/autodiff/ops.hpp"
#include "row_kernels.hpp"

namespace rwd::autodiff {
using namespace kernels;

namespace {
// Checks that every shape is a matrix with `rows` rows and the given column count.
void expect_matrix(Op op, const char* what, Shape s, std::int64_t rows, std::int64_t cols) {
  if (s.rank != 2 || s.rows != rows || s.cols != cols)
    fail(op, std::string(what) + " is " + s.str() + ", expected [" + std::to_string(rows) + ", " +
                 std::to_string(cols) + "]");
}

template <class T>
void linear_forward(std::int64_t rows, std::int64_t in, std::int64_t out, const T* x, const T* w,
                    const T* bias, T* y) {
  for (std::int64_t r = 0; r < rows; ++r) std::memcpy(y + r * out, bias, sizeof(T) * out);
  gemm<T>(false, true, rows, out, in, x, in, w, in, T(1), y);
}

}  // namespace

// ---- linear --------------------------------------------------------------------------------------------

Var linear(const Var& x, const Var& w, const Var& b) {
  const std::array<Var, 3> inputs{x, w, b};
  Tape& tape = Recorder::tape_of(Op::linear, inputs);
  const Shape sx = x.node()->shape, sw = w.node()->shape, sb = b.node()->shape;
  if (sx.rank != 2 || sw.rank != 2 || sx.cols != sw.cols || sb.numel() != sw.rows || sb.rows != 1)
    fail(Op::linear, "x " + sx.str() + ", weight " + sw.str() + ", bias " + sb.str() +
                         " do not fit x @ weight^T + bias (weight is [out, in], bias [out])");
  Node* n = Recorder::record(tape, Op::linear, Shape::matrix(sx.rows, sw.rows), inputs, true);
  dispatch(tape.dtype(), [&]<class T>() {
    linear_forward(sx.rows, sx.cols, sw.rows, value_of<T>(n->inputs[0]), value_of<T>(n->inputs[1]),
                   value_of<T>(n->inputs[2]), out_of<T>(n));
  });
  return finish(tape, n);
}

template <class T>
void backward_linear(Tape& tape, Node* n) {
  const std::int64_t rows = n->shape.rows, out = n->shape.cols, in = n->inputs[0]->shape.cols;
  const T* dy = dy_of<T>(n);
  if (T* gx = grad_in<T>(tape, n, 0))
    gemm<T>(false, false, rows, in, out, dy, out, value_of<T>(n->inputs[1]), in, T(1), gx);
  if (T* gw = grad_in<T>(tape, n, 1))
    add_products_over_rows<T>(out, in, rows, dy, out, value_of<T>(n->inputs[0]), in, gw);
  if (T* gb = grad_in<T>(tape, n, 2)) add_column_sums(gb, dy, rows, out, out);
}

template <class T>
void jvp_linear(const Tape&, Tangents& t, Node* n) {
  const std::int64_t rows = n->shape.rows, out = n->shape.cols, in = n->inputs[0]->shape.cols;
  linear_tangent<T>(rows, in, out, value_of<T>(n->inputs[0]), value_of<T>(n->inputs[1]),
                    t.of<T>(n->inputs[0]), t.of<T>(n->inputs[1]), t.of<T>(n->inputs[2]), t.make<T>(n), out);
}

// ---- rnn_pointwise -------------------------------------------------------------------------------------

Var rnn_pointwise(const Var& a, const Var& b) {
  const std::array<Var, 2> inputs{a, b};
  Tape& tape = Recorder::tape_of(Op::rnn_pointwise, inputs);
  const Shape s = a.node()->shape;
  if (b.node()->shape != s)
    fail(Op::rnn_pointwise, "shapes " + s.str() + " and " + b.node()->shape.str() + " differ");
  Node* n = Recorder::record(tape, Op::rnn_pointwise, s, inputs, true);
  dispatch(tape.dtype(), [&]<class T>() {
    const T* x = value_of<T>(n->inputs[0]);
    const T* y = value_of<T>(n->inputs[1]);
    T* h = out_of<T>(n);
    for (std::int64_t i = 0; i < s.numel(); ++i) h[i] = kernels::tanh(x[i] + y[i]);
  });
  return finish(tape, n);
}

template <class T>
void jvp_rnn_pointwise(const Tape&, Tangents& t, Node* n) {
  const T *h = value_of<T>(n), *ta = t.of<T>(n->inputs[0]), *tb = t.of<T>(n->inputs[1]);
  T* th = t.make<T>(n);
  for (std::int64_t i = 0; i < n->shape.numel(); ++i)
    th[i] = (T(1) - h[i] * h[i]) * ((ta ? ta[i] : T(0)) + (tb ? tb[i] : T(0)));
}

template <class T>
void backward_rnn_pointwise(Tape& tape, Node* n) {
  const T* h = value_of<T>(n);
  const T* dh = dy_of<T>(n);
  T* ga = grad_in<T>(tape, n, 0);
  T* gb = grad_in<T>(tape, n, 1);
  for (std::int64_t i = 0; i < n->shape.numel(); ++i) {
    const T d = dh[i] * (T(1) - h[i] * h[i]);
    if (ga != nullptr) ga[i] += d;
    if (gb != nullptr) gb[i] += d;
  }
}

// ---- lstm_pointwise ------------------------------------------------------------------------------------
// Saved per row: the activated gates i, f, g, o (4H). c_prev is the input's own value and c the op's own
// output, so tanh(c) is recomputed in backward. The arithmetic is the whole-window op's (row_kernels.hpp).

Var lstm_pointwise(const Var& gi, const Var& gh, const Var& c_prev) {
  const std::array<Var, 3> inputs{gi, gh, c_prev};
  Tape& tape = Recorder::tape_of(Op::lstm_pointwise, inputs);
  const Shape sc = c_prev.node()->shape;
  if (sc.rank != 2) fail(Op::lstm_pointwise, "c_prev must be [batch, hidden], got " + sc.str());
  const std::int64_t batch = sc.rows, hidden = sc.cols;
  expect_matrix(Op::lstm_pointwise, "gi", gi.node()->shape, batch, 4 * hidden);
  expect_matrix(Op::lstm_pointwise, "gh", gh.node()->shape, batch, 4 * hidden);
  Node* n = Recorder::record(tape, Op::lstm_pointwise, Shape::matrix(batch, 2 * hidden), inputs, true);
  dispatch(tape.dtype(), [&]<class T>() {
    const T* a = value_of<T>(n->inputs[0]);
    const T* b = value_of<T>(n->inputs[1]);
    const T* c0 = value_of<T>(n->inputs[2]);
    T* out = out_of<T>(n);
    T* gates = n->requires_grad
                   ? allocate_saved<T>(tape, n, batch * 4 * hidden)
                   : static_cast<T*>(Recorder::allocate_tensor(tape, sizeof(T) * batch * 4 * hidden));
    for (std::int64_t i = 0; i < batch * 4 * hidden; ++i) gates[i] = a[i] + b[i];
    for (std::int64_t r = 0; r < batch; ++r) {
      T* g = gates + r * 4 * hidden;
      T* hr = out + r * 2 * hidden;
      lstm_forward_row(hidden, g, g + hidden, g + 2 * hidden, g + 3 * hidden, c0 + r * hidden, hr + hidden,
                       hr);
    }
  });
  return finish(tape, n);
}

template <class T>
void jvp_lstm_pointwise(const Tape&, Tangents& t, Node* n) {
  const std::int64_t batch = n->shape.rows, hidden = n->shape.cols / 2;
  const T *gates = static_cast<const T*>(n->saved), *out = value_of<T>(n), *c0 = value_of<T>(n->inputs[2]);
  const T *ta = t.of<T>(n->inputs[0]), *tb = t.of<T>(n->inputs[1]), *tc0 = t.of<T>(n->inputs[2]);
  T* ty = t.make<T>(n);
  std::vector<T> tp(static_cast<std::size_t>(4 * hidden));
  for (std::int64_t r = 0; r < batch; ++r) {
    for (std::int64_t j = 0; j < 4 * hidden; ++j)
      tp[static_cast<std::size_t>(j)] =
          (ta ? ta[r * 4 * hidden + j] : T(0)) + (tb ? tb[r * 4 * hidden + j] : T(0));
    const T* g = gates + r * 4 * hidden;
    lstm_tangent_row(hidden, g, g + hidden, g + 2 * hidden, g + 3 * hidden, out + r * 2 * hidden + hidden,
                     c0 + r * hidden, tp.data(), tc0 ? tc0 + r * hidden : nullptr,
                     ty + r * 2 * hidden + hidden, ty + r * 2 * hidden);
  }
}

template <class T>
void backward_lstm_pointwise(Tape& tape, Node* n) {
  const std::int64_t batch = n->shape.rows, hidden = n->shape.cols / 2;
  T* gates = static_cast<T*>(n->saved);  // becomes the pre-activations' gradient
  const T* out = value_of<T>(n);
  const T* c0 = value_of<T>(n->inputs[2]);
  const T* dy = dy_of<T>(n);
  T* scratch = static_cast<T*>(Recorder::allocate_tensor(tape, sizeof(T) * 3 * hidden));
  T *zeros = scratch, *dc = scratch + hidden, *h_rebuilt = scratch + 2 * hidden;
  std::fill_n(zeros, hidden, T(0));
  T* dgi = grad_in<T>(tape, n, 0);
  T* dgh = grad_in<T>(tape, n, 1);
  T* dc0 = grad_in<T>(tape, n, 2);
  for (std::int64_t r = 0; r < batch; ++r) {
    T* g = gates + r * 4 * hidden;
    const T* dyr = dy + r * 2 * hidden;
    std::copy_n(dyr + hidden, hidden, dc);
    lstm_backward_row(hidden, g, g + hidden, g + 2 * hidden, g + 3 * hidden, out + r * 2 * hidden + hidden,
                      c0 + r * hidden, dyr, zeros, dc, h_rebuilt);
    // Both projections feed the same pre-activation, so both receive its gradient.
    for (T* grad : {dgi, dgh})
      if (grad != nullptr) add_into(grad + r * 4 * hidden, g, 4 * hidden);
    if (dc0 != nullptr) add_into(dc0 + r * hidden, dc, hidden);
  }
}

// ---- gru_pointwise -------------------------------------------------------------------------------------
// Saved per row: r, z, n (3H). gh and h_prev are the inputs' own values. The arithmetic is the whole-window
// op's (row_kernels.hpp).

Var gru_pointwise(const Var& gi, const Var& gh, const Var& h_prev) {
  const std::array<Var, 3> inputs{gi, gh, h_prev};
  Tape& tape = Recorder::tape_of(Op::gru_pointwise, inputs);
  const Shape sh = h_prev.node()->shape;
  if (sh.rank != 2) fail(Op::gru_pointwise, "h_prev must be [batch, hidden], got " + sh.str());
  const std::int64_t batch = sh.rows, hidden = sh.cols;
  expect_matrix(Op::gru_pointwise, "gi", gi.node()->shape, batch, 3 * hidden);
  expect_matrix(Op::gru_pointwise, "gh", gh.node()->shape, batch, 3 * hidden);
  Node* n = Recorder::record(tape, Op::gru_pointwise, sh, inputs, true);
  dispatch(tape.dtype(), [&]<class T>() {
    const T* a = value_of<T>(n->inputs[0]);
    const T* b = value_of<T>(n->inputs[1]);
    const T* h0 = value_of<T>(n->inputs[2]);
    T* h = out_of<T>(n);
    const std::int64_t count = batch * 3 * hidden;
    T* act = n->requires_grad ? allocate_saved<T>(tape, n, count)
                              : static_cast<T*>(Recorder::allocate_tensor(tape, sizeof(T) * count));
    T* gh_n_copy = static_cast<T*>(Recorder::allocate_tensor(tape, sizeof(T) * hidden));
    std::copy_n(a, count, act);
    for (std::int64_t r = 0; r < batch; ++r) {
      T* s = act + r * 3 * hidden;
      const T* br = b + r * 3 * hidden;
      gru_forward_row(hidden, s, s + hidden, s + 2 * hidden, br, br + hidden, br + 2 * hidden,
                      h0 + r * hidden, h + r * hidden);
      std::copy_n(br + 2 * hidden, hidden, gh_n_copy);
    }
  });
  return finish(tape, n);
}

template <class T>
void jvp_gru_pointwise(const Tape&, Tangents& t, Node* n) {
  const std::int64_t batch = n->shape.rows, hidden = n->shape.cols;
  const T *act = static_cast<const T*>(n->saved), *gh = value_of<T>(n->inputs[1]),
          *h0 = value_of<T>(n->inputs[2]);
  const T *ta = t.of<T>(n->inputs[0]), *tb = t.of<T>(n->inputs[1]), *th0 = t.of<T>(n->inputs[2]);
  T* th = t.make<T>(n);
  const std::vector<T> zeros(static_cast<std::size_t>(3 * hidden), T(0));
  for (std::int64_t r = 0; r < batch; ++r) {
    const T* s = act + r * 3 * hidden;
    gru_tangent_row(hidden, s, s + hidden, s + 2 * hidden, gh + r * 3 * hidden + 2 * hidden, h0 + r * hidden,
                    ta ? ta + r * 3 * hidden : zeros.data(), tb ? tb + r * 3 * hidden : zeros.data(),
                    th0 ? th0 + r * hidden : nullptr, th + r * hidden);
  }
}

template <class T>
void backward_gru_pointwise(Tape& tape, Node* n) {
  const std::int64_t batch = n->shape.rows, hidden = n->shape.cols;
  T* act = static_cast<T*>(n->saved);  // becomes d_r, d_z, d_n
  const T* gh = value_of<T>(n->inputs[1]);
  const T* h0 = value_of<T>(n->inputs[2]);
  const T* dy = dy_of<T>(n);
  T* scratch = static_cast<T*>(Recorder::allocate_tensor(tape, sizeof(T) * 5 * hidden));
  T *dgh_row = scratch, *gh_n = scratch + 3 * hidden, *dh_direct = scratch + 4 * hidden;
  T* dgi = grad_in<T>(tape, n, 0);
  T* dgh = grad_in<T>(tape, n, 1);
  T* dh0 = grad_in<T>(tape, n, 2);
  for (std::int64_t r = 0; r < batch; ++r) {
    T* s = act + r * 3 * hidden;
    std::copy_n(gh + r * 3 * hidden + 2 * hidden, hidden, gh_n);
    std::fill_n(dh_direct, hidden, T(0));
    gru_backward_row(hidden, s, s + hidden, s + 2 * hidden, gh_n, dgh_row, dgh_row + hidden,
                     dgh_row + 2 * hidden, h0 + r * hidden, dy + r * hidden, dh_direct);
    if (dgi != nullptr) add_into(dgi + r * 3 * hidden, s, 3 * hidden);
    if (dgh != nullptr) add_into(dgh + r * 3 * hidden, dgh_row, 3 * hidden);
    if (dh0 != nullptr) add_into(dh0 + r * hidden, dh_direct, hidden);
  }
}

REWIND_INSTANTIATE_RULES(linear)
REWIND_INSTANTIATE_RULES(rnn_pointwise)
REWIND_INSTANTIATE_RULES(lstm_pointwise)
REWIND_INSTANTIATE_RULES(gru_pointwise)

}  // namespace rwd::autodiff

// ---- inference without a tape (inference.hpp) ------------------------------------------------------------
// The recorded ops' arithmetic on the caller's tensors: the same kernels in the same order, so the values are
// the same bits.

namespace rwd::autodiff::infer {
namespace {

[[noreturn]] void infer_fail(const char* op, const std::string& why) {
  throw std::invalid_argument(std::string("infer::") + op + ": " + why);
}

void expect_dtype(const char* op, DType dtype, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (!t->has_storage() || t->dtype() != dtype)
      infer_fail(op, std::string("every tensor must be a ") + name_of(dtype) + " tensor with storage");
}

void expect_shape(const char* op, const char* what, Shape s, std::int64_t rows, std::int64_t cols) {
  if (s.rank != 2 || s.rows != rows || s.cols != cols)
    infer_fail(op, std::string(what) + " is " + s.str() + ", expected [" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "]");
}

// c_prev [B, H] and the gates' [B, gates * H] of a cell's step; returns H.
std::int64_t cell_shapes(const char* op, const Tensor& gi, const Tensor& gh, const Tensor& prev,
                         std::int64_t gates) {
  const Shape s = prev.shape();
  if (s.rank != 2) infer_fail(op, "the previous state must be [batch, hidden], got " + s.str());
  expect_shape(op, "gi", gi.shape(), s.rows, gates * s.cols);
  expect_shape(op, "gh", gh.shape(), s.rows, gates * s.cols);
  expect_dtype(op, prev.dtype(), {&gi, &gh, &prev});
  return s.cols;
}

}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) {
  const Shape sx = x.shape(), sw = w.shape(), sb = b.shape();
  if (sx.rank != 2 || sw.rank != 2 || sx.cols != sw.cols || sb.numel() != sw.rows || sb.rows != 1)
    infer_fail("linear", "x " + sx.str() + ", weight " + sw.str() + ", bias " + sb.str() +
                             " do not fit x @ weight^T + bias (weight is [out, in], bias [out])");
  expect_dtype("linear", x.dtype(), {&x, &w, &b});
  if (&y == &x || &y == &w || &y == &b) infer_fail("linear", "y must be another tensor than its inputs");
  y.resize(Shape::matrix(sx.rows, sw.rows), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    linear_forward(sx.rows, sx.cols, sw.rows, x.data<T>(), w.data<T>(), b.data<T>(), y.data<T>());
  });
}

void matmul(const Tensor& a, const Tensor& b, Tensor& y) {
  const Shape sa = a.shape(), sb = b.shape();
  if (sa.rank != 2 || sb.rank != 2 || sa.cols != sb.rows)
    infer_fail("matmul", "a " + sa.str() + " and b " + sb.str() + " do not fit a @ b");
  expect_dtype("matmul", a.dtype(), {&a, &b});
  if (&y == &a || &y == &b) infer_fail("matmul", "y must be another tensor than its inputs");
  y.resize(Shape::matrix(sa.rows, sb.cols), a.dtype());
  dispatch(a.dtype(), [&]<class T>() {
    gemm<T>(false, false, sa.rows, sb.cols, sa.cols, a.data<T>(), sa.cols, b.data<T>(), sb.cols, T(0),
            y.data<T>());
  });
}

void rnn_pointwise(const Tensor& a, const Tensor& b, Tensor& h) {
  if (a.shape() != b.shape())
    infer_fail("rnn_pointwise", "shapes " + a.shape().str() + " and " + b.shape().str() + " differ");
  expect_dtype("rnn_pointwise", a.dtype(), {&a, &b});
  if (&h != &a && &h != &b) h.resize(a.shape(), a.dtype());
  dispatch(a.dtype(), [&]<class T>() {
    const T *x = a.data<T>(), *y = b.data<T>();
    T* out = h.data<T>();
    for (std::int64_t i = 0; i < a.numel(); ++i) out[i] = kernels::tanh(x[i] + y[i]);
  });
}

void lstm_pointwise(Tensor& gi, const Tensor& gh, const Tensor& c_prev, Tensor& h, Tensor& c) {
  const std::int64_t hidden = cell_shapes("lstm_pointwise", gi, gh, c_prev, 4);
  if (&c == &c_prev || &h == &c_prev || &h == &c || &h == &gi || &c == &gi)
    infer_fail("lstm_pointwise", "h and c must be two tensors other than c_prev and gi");
  const std::int64_t batch = c_prev.shape().rows;
  h.resize(c_prev.shape(), c_prev.dtype());
  c.resize(c_prev.shape(), c_prev.dtype());
  dispatch(c_prev.dtype(), [&]<class T>() {
    T* gates = gi.data<T>();
    const T* b = gh.data<T>();
    for (std::int64_t i = 0; i < batch * 4 * hidden; ++i) gates[i] += b[i];
    for (std::int64_t r = 0; r < batch; ++r) {
      T* g = gates + r * 4 * hidden;
      lstm_forward_row(hidden, g, g + hidden, g + 2 * hidden, g + 3 * hidden, c_prev.data<T>() + r * hidden,
                       c.data<T>() + r * hidden, h.data<T>() + r * hidden);
    }
  });
}

void gru_pointwise(Tensor& gi, const Tensor& gh, const Tensor& h_prev, Tensor& h) {
  const std::int64_t hidden = cell_shapes("gru_pointwise", gi, gh, h_prev, 3);
  if (&h == &h_prev || &h == &gi) infer_fail("gru_pointwise", "h must be another tensor than h_prev and gi");
  const std::int64_t batch = h_prev.shape().rows;
  h.resize(h_prev.shape(), h_prev.dtype());
  dispatch(h_prev.dtype(), [&]<class T>() {
    for (std::int64_t r = 0; r < batch; ++r) {
      T* s = gi.data<T>() + r * 3 * hidden;
      const T* br = gh.data<T>() + r * 3 * hidden;
      gru_forward_row(hidden, s, s + hidden, s + 2 * hidden, br, br + hidden, br + 2 * hidden,
                      h_prev.data<T>() + r * hidden, h.data<T>() + r * hidden);
    }
  });
}

}  // namespace rwd::autodiff::infer

// Whole-window recurrences: rnn_sequence, lstm_sequence, gru_sequence. One node per layer and window, laid
// out as cuDNN lays out its RNNs: the input projections of all T steps are one GEMM before the recurrence,
// and after the reverse recurrence the gate gradients of all steps sit in one buffer, so dx, dW_ih and dW_hh
// are one GEMM each. Only the h_{t-1} W_hh^T product (and its transpose in backward) runs per step. What
// stays on the tape is the minimum backward needs: the activated gates, the cell states (LSTM), every h_t
// (the output), and x (the input's own value). See docs/tape.md, "Whole-window ops".
#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "kernels.hpp"
#include "packed_gemm.hpp"
#include "parallel.hpp"
#include "rewind/autodiff/ops.hpp"
#include "row_kernels.hpp"

namespace rwd::autodiff {
using namespace kernels;

namespace {

struct Dims {
  std::int64_t steps, batch, input, hidden;
};

// Validates x [T*B, I], the states [B, H] and the weights of a cell with `gates` blocks; returns the sizes.
Dims check_sequence(Op op, std::span<const Var> inputs, int states, std::int64_t gates,
                    std::span<const std::uint8_t> resets) {
  const Shape sx = inputs[0].node()->shape, sh = inputs[1].node()->shape;
  if (sx.rank != 2 || sh.rank != 2 || sh.rows < 1 || sx.rows % sh.rows != 0 || sx.rows == 0)
    fail(op, "x " + sx.str() + " must be [T * batch, input] for h0 " + sh.str() + " [batch, hidden]");
  const Dims d{sx.rows / sh.rows, sh.rows, sx.cols, sh.cols};
  for (int i = 1; i < states; ++i)
    if (inputs[1 + i].node()->shape != sh)
      fail(op,
           "state " + std::to_string(i) + " is " + inputs[1 + i].node()->shape.str() + ", h0 is " + sh.str());
  const Shape w_ih = inputs[1 + states].node()->shape, w_hh = inputs[2 + states].node()->shape;
  const Shape b_ih = inputs[3 + states].node()->shape, b_hh = inputs[4 + states].node()->shape;
  const std::int64_t g = gates * d.hidden;
  if (w_ih != Shape::matrix(g, d.input) || w_hh != Shape::matrix(g, d.hidden) || b_ih.numel() != g ||
      b_hh.numel() != g || b_ih.rows != 1 || b_hh.rows != 1)
    fail(op, "weights w_ih " + w_ih.str() + ", w_hh " + w_hh.str() + ", biases " + b_ih.str() + ", " +
                 b_hh.str() + " do not fit input " + std::to_string(d.input) + ", hidden " +
                 std::to_string(d.hidden) + " (expected [" + std::to_string(g) + ", input], [" +
                 std::to_string(g) + ", hidden], [" + std::to_string(g) + "])");
  if (!resets.empty() && static_cast<std::int64_t>(resets.size()) != sx.rows)
    fail(op, std::to_string(resets.size()) + " reset flags for " + std::to_string(sx.rows) +
                 " rows (give none or one per row of x)");
  return d;
}

// Resets are kept as flags per (step, row), or not at all when no row restarts in this window.
const std::uint8_t* save_resets(Tape& tape, std::span<const std::uint8_t> resets) {
  if (std::none_of(resets.begin(), resets.end(), [](std::uint8_t r) { return r != 0; })) return nullptr;
  auto* saved = static_cast<std::uint8_t*>(Recorder::allocate_tensor(tape, resets.size()));
  std::copy(resets.begin(), resets.end(), saved);
  return saved;
}

// A range of batch rows. Rows never interact inside a recurrence, so the pool runs all steps of each range
// without a barrier between steps (see parallel.hpp).
struct Rows {
  std::int64_t begin, end;
  std::int64_t count() const { return end - begin; }
};

template <class Body>
void over_batch_rows(std::int64_t batch, Body&& body) {
  const int parts = parallel::parts_for(batch, 1);
  parallel::run(parts, [&](int part) {
    const auto [begin, end] = parallel::range(batch, part, parts);
    body(Rows{begin, end});
  });
}

bool any_reset(const std::uint8_t* resets, std::int64_t step, std::int64_t batch, Rows rows) {
  if (resets == nullptr) return false;
  for (std::int64_t b = rows.begin; b < rows.end; ++b)
    if (resets[step * batch + b] != 0) return true;
  return false;
}

// Rows `rows` of the state a step reads, [B, hidden] at prev: prev's own rows, or a copy in the same rows of
// scratch with the restarting ones zeroed. Points at the first of those rows.
template <class T>
const T* step_state(const T* prev, const std::uint8_t* resets, std::int64_t step, std::int64_t batch,
                    Rows rows, std::int64_t hidden, T* scratch) {
  if (!any_reset(resets, step, batch, rows)) return prev + rows.begin * hidden;
  for (std::int64_t b = rows.begin; b < rows.end; ++b) {
    if (resets[step * batch + b] != 0) {
      std::fill_n(scratch + b * hidden, hidden, T(0));
    } else {
      std::copy_n(prev + b * hidden, hidden, scratch + b * hidden);
    }
  }
  return scratch + rows.begin * hidden;
}

template <class T>
T* scratch(Tape& tape, std::int64_t count) {
  return static_cast<T*>(Recorder::allocate_tensor(tape, sizeof(T) * static_cast<std::size_t>(count)));
}

// W_hh [gates * H, H] packed once per window for the per-step products: h_{t-1} W_hh^T in forward,
// d(gates)_t W_hh in backward. In bf16 when f32 products are (MatmulPrecision::bf16). A window of a few
// rows in all (the online trainers record a step at a time) reads it a few times, and packing would cost as
// much as the products: there it stays unpacked, except in f64, whose gradients must not depend on the
// window's length (kernels::window_invariant).
template <class T>
struct RecurrentWeight {
  PackedB<T> f32;
  std::optional<bf16::PackedB> rounded;
  const T* unpacked = nullptr;  // W_hh itself, [gates * H, H]
  std::int64_t k = 0, n = 0;
  bool forward = false;  // the product is by W_hh^T (forward) or W_hh (backward)

  // C [rows, n] = A [rows, k] W (+ C when add).
  void multiply(std::int64_t rows, const T* a, std::int64_t lda, bool add, T* c, std::int64_t ldc) const {
    if (unpacked) {  // a row at a time, so that a row's result does not depend on how the batch is shared out
      for (std::int64_t r = 0; r < rows; ++r)
        kernels::row_gemm(forward, n, k, a + r * lda, unpacked, forward ? k : n, add ? T(1) : T(0),
                          c + r * ldc);
      return;
    }
    if constexpr (std::is_same_v<T, float>)
      if (rounded) return bf16::packed_gemm(rows, a, lda, *rounded, add, c, ldc);
    packed_gemm(rows, a, lda, f32, add, c, ldc);
  }
};

constexpr std::int64_t unpacked_recurrent_rows = 4;  // steps x batch of a window that reads W_hh unpacked

template <class T>
RecurrentWeight<T> pack_w_hh(Tape& tape, const Node* w_hh, bool for_backward, std::int64_t rows) {
  const std::int64_t g = w_hh->shape.rows, h = w_hh->shape.cols;
  const std::int64_t k = for_backward ? g : h, n = for_backward ? h : g;
  if (rows <= unpacked_recurrent_rows && !kernels::window_invariant<T> && !bf16_products())
    return {PackedB<T>(static_cast<const T*>(nullptr), k, n), {}, value_of<T>(w_hh), k, n, !for_backward};
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_products()) {
      auto* storage = static_cast<std::uint16_t*>(Recorder::allocate_tensor(
          tape, sizeof(std::uint16_t) * static_cast<std::size_t>(bf16::PackedB::size(k, n))));
      return {PackedB<T>(static_cast<const T*>(nullptr), k, n),
              bf16::pack(value_of<T>(w_hh), h, !for_backward, k, n, storage)};
    }
  }
  return {pack(value_of<T>(w_hh), h, !for_backward, k, n, scratch<T>(tape, PackedB<T>::size(k, n))), {}};
}

// rows x cols of `bias` (a sum of two biases when `second` is given) into dst with row stride ld.
template <class T>
void fill_bias_rows(T* dst, std::int64_t rows, std::int64_t cols, std::int64_t ld, const T* bias,
                    const T* second = nullptr) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = dst + r * ld;
    for (std::int64_t c = 0; c < cols; ++c) row[c] = bias[c] + (second != nullptr ? second[c] : T(0));
  }
}

// Gradient of the input x, W_ih, and the biases from the gate gradients of every step, dg [T*B, G] with
// row stride ldg: one GEMM each.
template <class T>
void input_side_grads(Tape& tape, Node* n, const Dims& d, std::int64_t g, const T* dg, std::int64_t ldg,
                      int x_index, int w_ih_index, int b_ih_index) {
  const std::int64_t rows = d.steps * d.batch;
  if (T* dw = grad_in<T>(tape, n, w_ih_index))
    add_products_over_rows<T>(g, d.input, rows, dg, ldg, value_of<T>(n->inputs[x_index]), d.input, dw,
                              d.batch);
  if (T* db = grad_in<T>(tape, n, b_ih_index)) add_column_sums(db, dg, rows, g, ldg);
  // Last: dx may take over x's buffer (an embedding's rows, a lower layer's h_t) once dW_ih has read x.
  if (T* dx = grad_in_over_value<T>(tape, n, x_index))
    gemm<T>(false, false, rows, d.input, g, dg, ldg, value_of<T>(n->inputs[w_ih_index]), d.input, T(1), dx);
}

// dW += sum over t of dg_t^T h_{t-1} for `cols` gate columns of dg (row stride ldg) into rows of dW (row
// stride hidden): h_{-1} = h0, h_t are rows of hs. Runs of steps without a restart are one GEMM (in f64 one
// step at a time, last first: window_invariant); a step where rows restart reads their state as zero from a
// masked copy, so nothing before it leaks in.
template <class T>
void recurrent_weight_grad(Tape& tape, const Dims& d, std::int64_t cols, const T* dg, std::int64_t ldg,
                           const T* h0, const T* hs, const std::uint8_t* resets, T* dw) {
  const std::int64_t b = d.batch, h = d.hidden;
  T* masked = resets != nullptr ? scratch<T>(tape, b * h) : nullptr;
  if constexpr (window_invariant<T>) {
    for (std::int64_t t = d.steps - 1; t >= 0; --t) {
      const T* prev = step_state(t == 0 ? h0 : hs + (t - 1) * b * h, resets, t, b, Rows{0, b}, h, masked);
      gemm<T>(true, false, cols, h, b, dg + t * b * ldg, ldg, prev, h, T(1), dw);
    }
    return;
  }
  std::int64_t run = 1;  // the first step of the pending run of restart-free steps (step 0 reads h0 alone)
  auto flush = [&](std::int64_t end) {
    if (end > run)
      gemm<T>(true, false, cols, h, (end - run) * b, dg + run * b * ldg, ldg, hs + (run - 1) * b * h, h, T(1),
              dw);
  };
  for (std::int64_t t = 0; t < d.steps; ++t) {
    if (t > 0 && !any_reset(resets, t, b, Rows{0, b})) continue;
    flush(t);
    const T* prev = step_state(t == 0 ? h0 : hs + (t - 1) * b * h, resets, t, b, Rows{0, b}, h, masked);
    gemm<T>(true, false, cols, h, b, dg + t * b * ldg, ldg, prev, h, T(1), dw);
    run = t + 1;
  }
  flush(d.steps);
}

// Rows of a [B, H] recurrent gradient that restarted at this step pass nothing further back.
template <class T>
void cut_at_resets(T* grad, const std::uint8_t* resets, std::int64_t step, std::int64_t batch, Rows rows,
                   std::int64_t hidden) {
  if (resets == nullptr) return;
  for (std::int64_t b = rows.begin; b < rows.end; ++b)
    if (resets[step * batch + b] != 0) std::fill_n(grad + b * hidden, hidden, T(0));
}

// Forward mode through a window: what the three ops' tangent rules share. The input side's tangent of every
// step at once, then step by step the hidden side's from the previous state and its tangent (rows that
// restart read both as zero).
template <class T>
struct SequenceTangent {
  const Dims d;
  const Tangents& t;
  Node* n;
  std::int64_t gates;  // columns of the projections: 1, 4 or 3 blocks of hidden
  // Copies of the two states (h, and c for an LSTM) and of their tangents with restarting rows zeroed.
  std::vector<T> masked = std::vector<T>(static_cast<std::size_t>(2 * d.batch * d.hidden));
  std::vector<T> tangent_masked = std::vector<T>(static_cast<std::size_t>(2 * d.batch * d.hidden));

  // [T*B, gates]: tx W_ih^T + x tW_ih^T + tb_ih, plus tb_hh when it adds to the same pre-activation.
  std::vector<T> input_side(int w_ih, int b_ih, int b_hh) const {
    std::vector<T> out(static_cast<std::size_t>(d.steps * d.batch * gates));
    linear_tangent<T>(d.steps * d.batch, d.input, gates, value_of<T>(n->inputs[0]),
                      value_of<T>(n->inputs[w_ih]), t.of<T>(n->inputs[0]), t.of<T>(n->inputs[w_ih]),
                      t.of<T>(n->inputs[b_ih]), out.data(), gates);
    if (const T* tb = b_hh >= 0 ? t.of<T>(n->inputs[b_hh]) : nullptr)
      for (std::int64_t r = 0; r < d.steps * d.batch; ++r) add_into(out.data() + r * gates, tb, gates);
    return out;
  }
  // State `which` (0 or 1) of step t's previous state, with restarting rows zeroed: prev and its tangent
  // tprev (null: zero) as step t reads them.
  std::pair<const T*, const T*> previous(std::int64_t step, int which, const T* prev, const T* tprev) {
    const std::int64_t b = d.batch, h = d.hidden;
    const T* p = step_state(prev, n->resets, step, b, Rows{0, b}, h, masked.data() + which * b * h);
    if (tprev == nullptr) return {p, nullptr};
    return {p, step_state(tprev, n->resets, step, b, Rows{0, b}, h, tangent_masked.data() + which * b * h)};
  }
  // out [B, gates] += tprev W_hh^T + prev tW_hh^T (+ tb_hh when given).
  void hidden_side(const T* prev, const T* tprev, int w_hh, int b_hh, T* out) const {
    const std::int64_t b = d.batch, h = d.hidden;
    if (tprev != nullptr)
      gemm<T>(false, true, b, gates, h, tprev, h, value_of<T>(n->inputs[w_hh]), h, T(1), out);
    if (const T* tw = t.of<T>(n->inputs[w_hh])) gemm<T>(false, true, b, gates, h, prev, h, tw, h, T(1), out);
    if (const T* tb = b_hh >= 0 ? t.of<T>(n->inputs[b_hh]) : nullptr)
      for (std::int64_t r = 0; r < b; ++r) add_into(out + r * gates, tb, gates);
  }
};

}  // namespace

// ---- rnn_sequence --------------------------------------------------------------------------------------
// The output doubles as the pre-activation buffer in forward; backward turns the incoming gradient into the
// pre-activation gradient in place (nothing reads dy after this node), so the op saves nothing beyond h_t.

Var rnn_sequence(const Var& x, const Var& h0, const Var& w_ih, const Var& w_hh, const Var& b_ih,
                 const Var& b_hh, std::span<const std::uint8_t> resets) {
  const std::array<Var, 6> inputs{x, h0, w_ih, w_hh, b_ih, b_hh};
  Tape& tape = Recorder::tape_of(Op::rnn_sequence, inputs);
  const Dims d = check_sequence(Op::rnn_sequence, inputs, 1, 1, resets);
  Node* n =
      Recorder::record(tape, Op::rnn_sequence, Shape::matrix(d.steps * d.batch, d.hidden), inputs, true);
  n->resets = save_resets(tape, resets);
  dispatch(tape.dtype(), [&]<class T>() {
    const std::int64_t b = d.batch, h = d.hidden;
    T* y = out_of<T>(n);
    T* masked = n->resets != nullptr ? scratch<T>(tape, b * h) : nullptr;
    fill_bias_rows(y, d.steps * b, h, h, value_of<T>(n->inputs[4]), value_of<T>(n->inputs[5]));
    gemm<T>(false, true, d.steps * b, h, d.input, value_of<T>(n->inputs[0]), d.input,
            value_of<T>(n->inputs[2]), d.input, T(1), y);
    const RecurrentWeight<T> w_hh = pack_w_hh<T>(tape, n->inputs[3], false, d.steps * d.batch);
    over_batch_rows(b, [&](Rows rows) {
      for (std::int64_t t = 0; t < d.steps; ++t) {
        const T* prev = t == 0 ? value_of<T>(n->inputs[1]) : y + (t - 1) * b * h;
        T* yt = y + (t * b + rows.begin) * h;
        w_hh.multiply(rows.count(), step_state(prev, n->resets, t, b, rows, h, masked), h, true, yt, h);
        for (std::int64_t i = 0; i < rows.count() * h; ++i) yt[i] = kernels::tanh(yt[i]);
      }
    });
  });
  return finish(tape, n);
}

template <class T>
void backward_rnn_sequence(Tape& tape, Node* n) {
  const Dims d{n->shape.rows / n->inputs[1]->shape.rows, n->inputs[1]->shape.rows, n->inputs[0]->shape.cols,
               n->shape.cols};
  const std::int64_t b = d.batch, h = d.hidden;
  const T* y = value_of<T>(n);
  T* dpre = static_cast<T*>(n->grad);  // dy, turned into the pre-activation gradient step by step
  T* dh = scratch<T>(tape, b * h);
  std::fill_n(dh, b * h, T(0));
  const RecurrentWeight<T> w_hh = pack_w_hh<T>(tape, n->inputs[3], true, d.steps * d.batch);
  over_batch_rows(b, [&](Rows rows) {
    T* dhr = dh + rows.begin * h;
    for (std::int64_t t = d.steps - 1; t >= 0; --t) {
      T* dt = dpre + (t * b + rows.begin) * h;
      const T* yt = y + (t * b + rows.begin) * h;
      for (std::int64_t i = 0; i < rows.count() * h; ++i) dt[i] = (dt[i] + dhr[i]) * (T(1) - yt[i] * yt[i]);
      w_hh.multiply(rows.count(), dt, h, false, dhr, h);
      cut_at_resets(dh, n->resets, t, b, rows, h);
    }
  });
  if (T* dh0 = grad_in<T>(tape, n, 1)) add_into(dh0, dh, b * h);
  input_side_grads<T>(tape, n, d, h, dpre, h, 0, 2, 4);
  if (T* dw = grad_in<T>(tape, n, 3))
    recurrent_weight_grad<T>(tape, d, h, dpre, h, value_of<T>(n->inputs[1]), y, n->resets, dw);
  if (T* db = grad_in<T>(tape, n, 5)) add_column_sums(db, dpre, d.steps * b, h, h);
}

template <class T>
void jvp_rnn_sequence(const Tape&, Tangents& t, Node* n) {
  const Dims d{n->shape.rows / n->inputs[1]->shape.rows, n->inputs[1]->shape.rows, n->inputs[0]->shape.cols,
               n->shape.cols};
  const std::int64_t b = d.batch, h = d.hidden;
  SequenceTangent<T> s{d, t, n, h};
  const T* y = value_of<T>(n);
  T* ty = t.make<T>(n);
  const std::vector<T> tgi = s.input_side(2, 4, 5);
  std::copy(tgi.begin(), tgi.end(), ty);
  for (std::int64_t step = 0; step < d.steps; ++step) {
    const auto [prev, tprev] =
        s.previous(step, 0, step == 0 ? value_of<T>(n->inputs[1]) : y + (step - 1) * b * h,
                   step == 0 ? t.of<T>(n->inputs[1]) : ty + (step - 1) * b * h);
    T* tt = ty + step * b * h;
    s.hidden_side(prev, tprev, 3, -1, tt);
    const T* yt = y + step * b * h;
    for (std::int64_t i = 0; i < b * h; ++i) tt[i] *= T(1) - yt[i] * yt[i];
  }
}

// ---- lstm_sequence -------------------------------------------------------------------------------------
// Saved: the activated gates [T*B, 4H] (i, f, g, o), and c_t [T*B, H]; tanh(c_t) and h_t are recomputed in
// backward. Backward overwrites the gates of step t with their gradients once step t is done.

Var lstm_sequence(const Var& x, const Var& h0, const Var& c0, const Var& w_ih, const Var& w_hh,
                  const Var& b_ih, const Var& b_hh, std::span<const std::uint8_t> resets) {
  const std::array<Var, 7> inputs{x, h0, c0, w_ih, w_hh, b_ih, b_hh};
  Tape& tape = Recorder::tape_of(Op::lstm_sequence, inputs);
  const Dims d = check_sequence(Op::lstm_sequence, inputs, 2, 4, resets);
  Node* n = Recorder::record(tape, Op::lstm_sequence, Shape::matrix((d.steps + 1) * d.batch, d.hidden),
                             inputs, true);
  n->resets = save_resets(tape, resets);
  dispatch(tape.dtype(), [&]<class T>() {
    const std::int64_t b = d.batch, h = d.hidden, rows = d.steps * b;
    // gates, then c_t of every step: one buffer, so backward finds both from n->saved.
    T* gates = scratch<T>(tape, rows * 5 * h);
    n->saved = gates;
    T* cs = gates + rows * 4 * h;
    T* y = out_of<T>(n);
    T* masked = n->resets != nullptr ? scratch<T>(tape, 2 * b * h) : nullptr;
    fill_bias_rows(gates, rows, 4 * h, 4 * h, value_of<T>(n->inputs[5]), value_of<T>(n->inputs[6]));
    gemm<T>(false, true, rows, 4 * h, d.input, value_of<T>(n->inputs[0]), d.input, value_of<T>(n->inputs[3]),
            d.input, T(1), gates);
    const RecurrentWeight<T> w_hh = pack_w_hh<T>(tape, n->inputs[4], false, d.steps * d.batch);
    over_batch_rows(b, [&](Rows rows) {
      for (std::int64_t t = 0; t < d.steps; ++t) {
        const T* h_prev = step_state(t == 0 ? value_of<T>(n->inputs[1]) : y + (t - 1) * b * h, n->resets, t,
                                     b, rows, h, masked);
        const T* c_prev = step_state(t == 0 ? value_of<T>(n->inputs[2]) : cs + (t - 1) * b * h, n->resets, t,
                                     b, rows, h, masked + (masked != nullptr ? b * h : 0));
        w_hh.multiply(rows.count(), h_prev, h, true, gates + (t * b + rows.begin) * 4 * h, 4 * h);
        for (std::int64_t r = rows.begin; r < rows.end; ++r) {
          T* g = gates + (t * b + r) * 4 * h;
          lstm_forward_row(h, g, g + h, g + 2 * h, g + 3 * h, c_prev + (r - rows.begin) * h,
                           cs + (t * b + r) * h, y + (t * b + r) * h);
        }
      }
    });
    std::memcpy(y + rows * h, cs + (rows - b) * h, sizeof(T) * b * h);  // c_T
  });
  return finish(tape, n);
}

template <class T>
void backward_lstm_sequence(Tape& tape, Node* n) {
  const std::int64_t b = n->inputs[1]->shape.rows, h = n->shape.cols;
  const Dims d{n->shape.rows / b - 1, b, n->inputs[0]->shape.cols, h};
  const std::int64_t rows = d.steps * b;
  T* gates = static_cast<T*>(n->saved);  // becomes the gate gradients, step by step
  const T* cs = gates + rows * 4 * h;
  const T* c0 = value_of<T>(n->inputs[2]);
  // dy's rows of step t are dead once step t is done, so h_t = o_t tanh(c_t), which dW_hh needs, is rebuilt
  // in dy's rows of step t + 1 (the last block, c_T's gradient, is copied out first). The op never reads
  // its own value, so that buffer can serve as dy (Recorder::grad_over_value).
  T* dy = static_cast<T*>(n->grad);
  T* hs = dy + b * h;
  T* dh = scratch<T>(tape, 3 * b * h);
  T* dc = dh + b * h;
  T* zeros = dc + b * h;  // the previous c of a restarting row
  std::fill_n(dh, b * h, T(0));
  std::fill_n(zeros, b * h, T(0));
  std::memcpy(dc, dy + rows * h, sizeof(T) * b * h);
  const RecurrentWeight<T> w_hh = pack_w_hh<T>(tape, n->inputs[4], true, d.steps * d.batch);
  over_batch_rows(b, [&](Rows rows) {
    for (std::int64_t t = d.steps - 1; t >= 0; --t) {
      for (std::int64_t r = rows.begin; r < rows.end; ++r) {
        const bool restarts = n->resets != nullptr && n->resets[t * b + r] != 0;
        T* g = gates + (t * b + r) * 4 * h;
        const T* c_prev = restarts ? zeros : t == 0 ? c0 + r * h : cs + ((t - 1) * b + r) * h;
        lstm_backward_row(h, g, g + h, g + 2 * h, g + 3 * h, cs + (t * b + r) * h, c_prev,
                          dy + (t * b + r) * h, dh + r * h, dc + r * h, hs + (t * b + r) * h);
      }
      w_hh.multiply(rows.count(), gates + (t * b + rows.begin) * 4 * h, 4 * h, false, dh + rows.begin * h, h);
      cut_at_resets(dh, n->resets, t, b, rows, h);
      cut_at_resets(dc, n->resets, t, b, rows, h);
    }
  });
  if (T* dh0 = grad_in<T>(tape, n, 1)) add_into(dh0, dh, b * h);
  if (T* dc0 = grad_in<T>(tape, n, 2)) add_into(dc0, dc, b * h);
  input_side_grads<T>(tape, n, d, 4 * h, gates, 4 * h, 0, 3, 5);
  if (T* dw = grad_in<T>(tape, n, 4))
    recurrent_weight_grad<T>(tape, d, 4 * h, gates, 4 * h, value_of<T>(n->inputs[1]), hs, n->resets, dw);
  if (T* db = grad_in<T>(tape, n, 6)) add_column_sums(db, gates, rows, 4 * h, 4 * h);
}

template <class T>
void jvp_lstm_sequence(const Tape&, Tangents& t, Node* n) {
  const std::int64_t b = n->inputs[1]->shape.rows, h = n->shape.cols;
  const Dims d{n->shape.rows / b - 1, b, n->inputs[0]->shape.cols, h};
  const std::int64_t rows = d.steps * b;
  SequenceTangent<T> s{d, t, n, 4 * h};
  const T *gates = static_cast<const T*>(n->saved), *cs = gates + rows * 4 * h, *y = value_of<T>(n);
  T* ty = t.make<T>(n);
  std::vector<T> tp = s.input_side(3, 5, 6), tc(static_cast<std::size_t>(rows * h));
  for (std::int64_t step = 0; step < d.steps; ++step) {
    const auto [h_prev, th_prev] =
        s.previous(step, 0, step == 0 ? value_of<T>(n->inputs[1]) : y + (step - 1) * b * h,
                   step == 0 ? t.of<T>(n->inputs[1]) : ty + (step - 1) * b * h);
    const auto [c_prev, tc_prev] =
        s.previous(step, 1, step == 0 ? value_of<T>(n->inputs[2]) : cs + (step - 1) * b * h,
                   step == 0 ? t.of<T>(n->inputs[2]) : tc.data() + (step - 1) * b * h);
    T* tps = tp.data() + step * b * 4 * h;
    s.hidden_side(h_prev, th_prev, 4, -1, tps);
    for (std::int64_t r = 0; r < b; ++r) {
      const T* g = gates + (step * b + r) * 4 * h;
      lstm_tangent_row(h, g, g + h, g + 2 * h, g + 3 * h, cs + (step * b + r) * h, c_prev + r * h,
                       tps + r * 4 * h, tc_prev ? tc_prev + r * h : nullptr, tc.data() + (step * b + r) * h,
                       ty + (step * b + r) * h);
    }
  }
  std::copy_n(tc.data() + (rows - b) * h, b * h, ty + rows * h);  // c_T
}

// ---- gru_sequence --------------------------------------------------------------------------------------
// Saved per row: r, z, n and gh_n = h W_hn^T + b_hn (4H); the first 3H hold the input projection until the
// step runs. Backward writes dgi = [d_r, d_z, d_n] over r, z, n and d_n * r (dgh's third block) over gh_n.

Var gru_sequence(const Var& x, const Var& h0, const Var& w_ih, const Var& w_hh, const Var& b_ih,
                 const Var& b_hh, std::span<const std::uint8_t> resets) {
  const std::array<Var, 6> inputs{x, h0, w_ih, w_hh, b_ih, b_hh};
  Tape& tape = Recorder::tape_of(Op::gru_sequence, inputs);
  const Dims d = check_sequence(Op::gru_sequence, inputs, 1, 3, resets);
  Node* n =
      Recorder::record(tape, Op::gru_sequence, Shape::matrix(d.steps * d.batch, d.hidden), inputs, true);
  n->resets = save_resets(tape, resets);
  dispatch(tape.dtype(), [&]<class T>() {
    const std::int64_t b = d.batch, h = d.hidden, rows = d.steps * b;
    T* saved = scratch<T>(tape, rows * 4 * h);
    n->saved = saved;
    T* gh = scratch<T>(tape, b * 3 * h);
    T* masked = n->resets != nullptr ? scratch<T>(tape, b * h) : nullptr;
    T* y = out_of<T>(n);
    fill_bias_rows(saved, rows, 3 * h, 4 * h, value_of<T>(n->inputs[4]));
    gemm<T>(false, true, rows, 3 * h, d.input, value_of<T>(n->inputs[0]), d.input, value_of<T>(n->inputs[2]),
            d.input, T(1), saved, 4 * h);
    const RecurrentWeight<T> w_hh = pack_w_hh<T>(tape, n->inputs[3], false, d.steps * d.batch);
    over_batch_rows(b, [&](Rows rows) {
      for (std::int64_t t = 0; t < d.steps; ++t) {
        const T* h_prev = step_state(t == 0 ? value_of<T>(n->inputs[1]) : y + (t - 1) * b * h, n->resets, t,
                                     b, rows, h, masked);
        T* ghs = gh + rows.begin * 3 * h;
        fill_bias_rows(ghs, rows.count(), 3 * h, 3 * h, value_of<T>(n->inputs[5]));
        w_hh.multiply(rows.count(), h_prev, h, true, ghs, 3 * h);
        for (std::int64_t r = rows.begin; r < rows.end; ++r) {
          T* s = saved + (t * b + r) * 4 * h;
          const T* ghr = gh + r * 3 * h;
          gru_forward_row(h, s, s + h, s + 2 * h, ghr, ghr + h, ghr + 2 * h, h_prev + (r - rows.begin) * h,
                          y + (t * b + r) * h);
          std::copy_n(ghr + 2 * h, h, s + 3 * h);  // gh_n, kept for backward
        }
      }
    });
  });
  return finish(tape, n);
}

template <class T>
void backward_gru_sequence(Tape& tape, Node* n) {
  const std::int64_t b = n->inputs[1]->shape.rows, h = n->shape.cols;
  const Dims d{n->shape.rows / b, b, n->inputs[0]->shape.cols, h};
  const std::int64_t rows = d.steps * b;
  T* saved = static_cast<T*>(n->saved);
  const T* y = value_of<T>(n);
  const T* h0 = value_of<T>(n->inputs[1]);
  const T* dy = dy_of<T>(n);
  const RecurrentWeight<T> w_hh = pack_w_hh<T>(tape, n->inputs[3], true, d.steps * d.batch);
  T* dh = scratch<T>(tape, 2 * b * h);
  T* zeros = dh + b * h;  // the previous h of a restarting row
  T* dgh = scratch<T>(tape, b * 3 * h);
  std::fill_n(dh, 2 * b * h, T(0));
  over_batch_rows(b, [&](Rows rows) {
    for (std::int64_t t = d.steps - 1; t >= 0; --t) {
      for (std::int64_t r = rows.begin; r < rows.end; ++r) {
        const bool restarts = n->resets != nullptr && n->resets[t * b + r] != 0;
        T* s = saved + (t * b + r) * 4 * h;
        T* dg = dgh + r * 3 * h;
        const T* h_prev = restarts ? zeros : t == 0 ? h0 + r * h : y + ((t - 1) * b + r) * h;
        gru_backward_row(h, s, s + h, s + 2 * h, s + 3 * h, dg, dg + h, dg + 2 * h, h_prev,
                         dy + (t * b + r) * h, dh + r * h);
      }
      w_hh.multiply(rows.count(), dgh + rows.begin * 3 * h, 3 * h, true, dh + rows.begin * h, h);
      cut_at_resets(dh, n->resets, t, b, rows, h);
    }
  });
  if (T* dh0 = grad_in<T>(tape, n, 1)) add_into(dh0, dh, b * h);
  input_side_grads<T>(tape, n, d, 3 * h, saved, 4 * h, 0, 2, 4);
  if (T* dw = grad_in<T>(tape, n, 3)) {
    // dgh = [d_r, d_z | d_n * r]: its first two blocks share columns with dgi, its third is the fourth block.
    recurrent_weight_grad<T>(tape, d, 2 * h, saved, 4 * h, h0, y, n->resets, dw);
    recurrent_weight_grad<T>(tape, d, h, saved + 3 * h, 4 * h, h0, y, n->resets, dw + 2 * h * h);
  }
  if (T* db = grad_in<T>(tape, n, 5)) {  // b_hh: [r z] from slots 0-1, its n part from gh_n (slot 3), not n
    add_column_sums(db, saved, rows, 2 * h, 4 * h);
    add_column_sums(db + 2 * h, saved + 3 * h, rows, h, 4 * h);
  }
}

template <class T>
void jvp_gru_sequence(const Tape&, Tangents& t, Node* n) {
  const std::int64_t b = n->inputs[1]->shape.rows, h = n->shape.cols;
  const Dims d{n->shape.rows / b, b, n->inputs[0]->shape.cols, h};
  SequenceTangent<T> s{d, t, n, 3 * h};
  const T *saved = static_cast<const T*>(n->saved), *y = value_of<T>(n);
  T* ty = t.make<T>(n);
  const std::vector<T> tgi = s.input_side(2, 4, -1);
  std::vector<T> tgh(static_cast<std::size_t>(b * 3 * h));
  for (std::int64_t step = 0; step < d.steps; ++step) {
    const auto [prev, tprev] =
        s.previous(step, 0, step == 0 ? value_of<T>(n->inputs[1]) : y + (step - 1) * b * h,
                   step == 0 ? t.of<T>(n->inputs[1]) : ty + (step - 1) * b * h);
    std::fill(tgh.begin(), tgh.end(), T(0));
    s.hidden_side(prev, tprev, 3, 5, tgh.data());
    for (std::int64_t r = 0; r < b; ++r) {
      const T* sr = saved + (step * b + r) * 4 * h;  // r, z, n, gh_n
      gru_tangent_row(h, sr, sr + h, sr + 2 * h, sr + 3 * h, prev + r * h,
                      tgi.data() + (step * b + r) * 3 * h, tgh.data() + r * 3 * h,
                      tprev ? tprev + r * h : nullptr, ty + (step * b + r) * h);
    }
  }
}

REWIND_INSTANTIATE_RULES(rnn_sequence)
REWIND_INSTANTIATE_RULES(lstm_sequence)
REWIND_INSTANTIATE_RULES(gru_sequence)

}  // namespace rwd::autodiff

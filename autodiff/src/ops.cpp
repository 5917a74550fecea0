// Each primitive's forward and backward side by side: matmul, slices and concatenations, gather, losses,
// stop_gradient (elementwise ops are in ops_elementwise.cpp, reductions in ops_reduce.cpp, transpose and
// reshape in ops_shape.cpp, layer_norm in ops_norm.cpp). The table of rows is ops.def; run_backward at the
// end dispatches on it. Kernels are templated on the scalar type: float for training, double for checks.
#include "rewind/autodiff/ops.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.hpp"
#include "parallel.hpp"

namespace rwd::autodiff {
using namespace kernels;

// ---- matmul --------------------------------------------------------------------------------------------

namespace {
// A custom cell's step multiplies a few rows (the batch) by the same weights at every step of a window, and
// OpenBLAS packs the weights again on every call, which at 32 rows costs about as much as the product (the
// sequence ops avoid it by packing W_hh once per window). So a parameter used as the B of such a product is
// packed on first use, as op(B) = B or B^T, and kept on its leaf (in `saved`, unused by leaves) for the rest
// of the window. Sound because a parameter's value does not change between recording and backward
// (docs/tape.md); recording after backward (when an optimiser may have stepped) does not use it.
bool packs_parameter(const Node* b, bool ta, std::int64_t m) {
  return b->op == Op::parameter && !ta && m < gemm_min_packed_rows;
}

template <class T>
PackedB<T> packed_parameter(Tape& tape, Node* leaf, bool transposed, std::int64_t k, std::int64_t n) {
  if (leaf->saved == nullptr) {
    leaf->saved = Recorder::allocate_tensor(tape, 2 * sizeof(void*));
    std::memset(leaf->saved, 0, 2 * sizeof(void*));
  }
  void*& packed = static_cast<void**>(leaf->saved)[transposed ? 1 : 0];
  if (packed == nullptr) {
    packed = Recorder::allocate_tensor(tape, sizeof(T) * static_cast<std::size_t>(PackedB<T>::size(k, n)));
    pack(value_of<T>(leaf), leaf->shape.cols, transposed, k, n, static_cast<T*>(packed));
  }
  return PackedB<T>(static_cast<const T*>(packed), k, n);
}
}  // namespace

Var matmul(const Var& a, const Var& b, Transpose ta, Transpose tb) {
  const std::array<Var, 2> inputs{a, b};
  Tape& tape = Recorder::tape_of(Op::matmul, inputs);
  Node* na = a.node();
  Node* nb = b.node();
  const Shape sa = na->shape, sb = nb->shape;
  const bool ta_ = ta == Transpose::yes, tb_ = tb == Transpose::yes;
  if (sa.rank != 2 || sb.rank != 2) fail(Op::matmul, "needs matrices, got " + sa.str() + " and " + sb.str());
  const std::int64_t m = ta_ ? sa.cols : sa.rows, k = ta_ ? sa.rows : sa.cols;
  const std::int64_t kb = tb_ ? sb.cols : sb.rows, nn = tb_ ? sb.rows : sb.cols;
  if (k != kb)
    fail(Op::matmul,
         "inner dimensions differ: " + sa.str() + (ta_ ? "^T" : "") + " @ " + sb.str() + (tb_ ? "^T" : ""));
  Node* n = Recorder::record(tape, Op::matmul, Shape::matrix(m, nn), inputs, true);
  n->arg0 = ta_;
  n->arg1 = tb_;
  dispatch(tape.dtype(), [&]<class T>() {
    if (!tape.consumed() && packs_parameter(nb, ta_, m)) {
      gemm_packed(m, value_of<T>(na), sa.cols, packed_parameter<T>(tape, nb, tb_, k, nn), T(0), out_of<T>(n),
                  nn);
    } else {
      gemm<T>(ta_, tb_, m, nn, k, value_of<T>(na), sa.cols, value_of<T>(nb), sb.cols, T(0), out_of<T>(n));
    }
  });
  return finish(tape, n);
}

// With Y = op(A) op(B): dA = dY op(B)^T, stored transposed back when A was used transposed; same for B.
template <class T>
void backward_matmul(Tape& tape, Node* n) {
  Node* na = n->inputs[0];
  Node* nb = n->inputs[1];
  const bool ta = n->arg0 != 0, tb = n->arg1 != 0;
  const std::int64_t m = n->shape.rows, nn = n->shape.cols;
  const std::int64_t k = ta ? na->shape.rows : na->shape.cols;
  const T* a = value_of<T>(na);
  const T* b = value_of<T>(nb);
  const T* dy = dy_of<T>(n);
  const std::int64_t lda = na->shape.cols, ldb = nb->shape.cols;
  if (T* ga = grad_in<T>(tape, n, 0)) {
    if (packs_parameter(nb, ta, m)) {
      gemm_packed(m, dy, nn, packed_parameter<T>(tape, nb, !tb, nn, k), T(1), ga, k);
    } else if (!ta) {
      gemm<T>(false, !tb, m, k, nn, dy, nn, b, ldb, T(1), ga);  // [m,k] = dY op(B)^T
    } else {
      gemm<T>(tb, true, k, m, nn, b, ldb, dy, nn, T(1), ga);  // [k,m] = op(B) dY^T
    }
  }
  if (T* gb = grad_in<T>(tape, n, 1)) {
    if (!tb) {
      gemm<T>(!ta, false, k, nn, m, a, lda, dy, nn, T(1), gb);  // [k,n] = op(A)^T dY
    } else {
      gemm<T>(true, ta, nn, k, m, dy, nn, a, lda, T(1), gb);  // [n,k] = dY^T op(A)
    }
  }
}

// tY = op(tA) op(B) + op(A) op(tB).
template <class T>
void jvp_matmul(const Tape&, Tangents& t, Node* n) {
  Node* na = n->inputs[0];
  Node* nb = n->inputs[1];
  const bool ta = n->arg0 != 0, tb = n->arg1 != 0;
  const std::int64_t m = n->shape.rows, nn = n->shape.cols, k = ta ? na->shape.rows : na->shape.cols;
  const std::int64_t lda = na->shape.cols, ldb = nb->shape.cols;
  T* ty = t.make<T>(n);
  if (const T* t_a = t.of<T>(na)) gemm<T>(ta, tb, m, nn, k, t_a, lda, value_of<T>(nb), ldb, T(1), ty);
  if (const T* t_b = t.of<T>(nb)) gemm<T>(ta, tb, m, nn, k, value_of<T>(na), lda, t_b, ldb, T(1), ty);
}

// ---- column slice and concat ---------------------------------------------------------------------------

Var slice_cols(const Var& x, std::int64_t begin, std::int64_t end) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(Op::slice_cols, inputs);
  Node* nx = x.node();
  const Shape s = nx->shape;
  if (s.rank == 0 || begin < 0 || end > s.cols || begin >= end)
    fail(Op::slice_cols,
         "columns [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " + s.str());
  Node* n = Recorder::record(tape, Op::slice_cols, Shape{s.rows, end - begin, s.rank}, inputs, true);
  n->arg0 = begin;
  n->arg1 = end;
  dispatch(tape.dtype(), [&]<class T>() {
    const std::int64_t width = end - begin;
    for (std::int64_t r = 0; r < s.rows; ++r)
      std::memcpy(out_of<T>(n) + r * width, value_of<T>(nx) + r * s.cols + begin, sizeof(T) * width);
  });
  return finish(tape, n);
}

template <class T>
void jvp_slice_cols(const Tape&, Tangents& t, Node* n) {
  const T* tx = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  const std::int64_t cols = n->inputs[0]->shape.cols, width = n->shape.cols;
  for (std::int64_t r = 0; r < n->shape.rows; ++r)
    std::copy_n(tx + r * cols + n->arg0, width, ty + r * width);
}

template <class T>
void backward_slice_cols(Tape& tape, Node* n) {
  T* gx = grad_in<T>(tape, n, 0);
  const std::int64_t cols = n->inputs[0]->shape.cols, width = n->shape.cols;
  const T* dy = dy_of<T>(n);
  for (std::int64_t r = 0; r < n->shape.rows; ++r)
    for (std::int64_t c = 0; c < width; ++c) gx[r * cols + n->arg0 + c] += dy[r * width + c];
}

Var concat_cols(std::initializer_list<Var> parts) {
  return concat_cols(std::span<const Var>(parts.begin(), parts.size()));
}

Var concat_cols(std::span<const Var> parts) {
  Tape& tape = Recorder::tape_of(Op::concat_cols, parts);
  const Shape first = parts[0].node()->shape;
  std::int64_t cols = 0;
  int rank = 0;
  for (const Var& p : parts) {
    const Shape s = p.node()->shape;
    if (s.rank == 0 || s.rows != first.rows)
      fail(Op::concat_cols, "part " + s.str() + " does not have the " + std::to_string(first.rows) +
                                " rows of the first part " + first.str());
    cols += s.cols;
    rank = std::max(rank, s.rank);
  }
  Node* n = Recorder::record(tape, Op::concat_cols, Shape{first.rows, cols, rank}, parts, true);
  dispatch(tape.dtype(), [&]<class T>() {
    std::int64_t offset = 0;
    for (std::uint32_t i = 0; i < n->n_inputs; ++i) {
      const Node* p = n->inputs[i];
      for (std::int64_t r = 0; r < first.rows; ++r)
        std::memcpy(out_of<T>(n) + r * cols + offset, value_of<T>(p) + r * p->shape.cols,
                    sizeof(T) * p->shape.cols);
      offset += p->shape.cols;
    }
  });
  return finish(tape, n);
}

template <class T>
void jvp_concat_cols(const Tape&, Tangents& t, Node* n) {
  T* ty = t.make<T>(n);
  const std::int64_t cols = n->shape.cols;
  std::int64_t offset = 0;
  for (std::uint32_t i = 0; i < n->n_inputs; ++i) {
    const std::int64_t width = n->inputs[i]->shape.cols;
    if (const T* tx = t.of<T>(n->inputs[i]))
      for (std::int64_t r = 0; r < n->shape.rows; ++r)
        std::copy_n(tx + r * width, width, ty + r * cols + offset);
    offset += width;
  }
}

template <class T>
void backward_concat_cols(Tape& tape, Node* n) {
  const T* dy = dy_of<T>(n);
  const std::int64_t cols = n->shape.cols;
  std::int64_t offset = 0;
  for (std::uint32_t i = 0; i < n->n_inputs; ++i) {
    const std::int64_t width = n->inputs[i]->shape.cols;
    if (T* gx = grad_in<T>(tape, n, i)) {
      for (std::int64_t r = 0; r < n->shape.rows; ++r)
        for (std::int64_t c = 0; c < width; ++c) gx[r * width + c] += dy[r * cols + offset + c];
    }
    offset += width;
  }
}

// ---- row slice (a view) and concat ---------------------------------------------------------------------

Var slice_rows(const Var& x, std::int64_t begin, std::int64_t end) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(Op::slice_rows, inputs);
  Node* nx = x.node();
  const Shape s = nx->shape;
  if (s.rank != 2 || begin < 0 || end > s.rows || begin >= end)
    fail(Op::slice_rows, "rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " + s.str());
  auto* first = static_cast<std::byte*>(nx->value) + tensor_bytes(Shape::matrix(begin, s.cols), tape.dtype());
  Node* n = Recorder::record(tape, Op::slice_rows, Shape::matrix(end - begin, s.cols), inputs, true, first);
  n->arg0 = begin;
  return finish(tape, n);
}

// Nothing to do: Recorder::ensure_grad gave the view its rows of x's gradient buffer, so dy is already there.
template <class T>
void backward_slice_rows(Tape&, Node*) {}
// Likewise its tangent is its rows of x's tangent.
template <class T>
void jvp_slice_rows(const Tape&, Tangents& t, Node* n) {
  t.view<T>(n, n->inputs[0], n->arg0 * n->shape.cols);
}

Var concat_rows(std::span<const Var> parts) {
  Tape& tape = Recorder::tape_of(Op::concat_rows, parts);
  const Shape first = parts[0].node()->shape;
  std::int64_t rows = 0;
  for (const Var& p : parts) {
    const Shape s = p.node()->shape;
    if (s.rank != 2 || s.cols != first.cols)
      fail(Op::concat_rows, "part " + s.str() + " does not have the " + std::to_string(first.cols) +
                                " columns of the first part " + first.str());
    rows += s.rows;
  }
  Node* n = Recorder::record(tape, Op::concat_rows, Shape::matrix(rows, first.cols), parts, true);
  auto* out = static_cast<std::byte*>(n->value);
  for (std::uint32_t i = 0; i < n->n_inputs; ++i) {
    const std::size_t bytes = tensor_bytes(n->inputs[i]->shape, tape.dtype());
    std::memcpy(out, n->inputs[i]->value, bytes);
    out += bytes;
  }
  return finish(tape, n);
}

template <class T>
void jvp_concat_rows(const Tape&, Tangents& t, Node* n) {
  T* ty = t.make<T>(n);
  for (std::uint32_t i = 0; i < n->n_inputs; ++i) {
    const std::int64_t count = n->inputs[i]->shape.numel();
    if (const T* tx = t.of<T>(n->inputs[i])) std::copy_n(tx, count, ty);
    ty += count;
  }
}

template <class T>
void backward_concat_rows(Tape& tape, Node* n) {
  const T* dy = dy_of<T>(n);
  for (std::uint32_t i = 0; i < n->n_inputs; ++i) {
    const std::int64_t count = n->inputs[i]->shape.numel();
    if (T* gx = grad_in<T>(tape, n, i))
      for (std::int64_t k = 0; k < count; ++k) gx[k] += dy[k];
    dy += count;
  }
}

// ---- gather_rows ---------------------------------------------------------------------------------------

Var gather_rows(const Var& table, std::span<const std::int32_t> indices) {
  const std::span<const Var> inputs(&table, 1);
  Tape& tape = Recorder::tape_of(Op::gather_rows, inputs);
  Node* nt = table.node();
  const Shape s = nt->shape;
  if (s.rank != 2) fail(Op::gather_rows, "the table must be a matrix, got " + s.str());
  if (indices.empty()) fail(Op::gather_rows, "no indices");
  for (std::size_t i = 0; i < indices.size(); ++i)
    if (indices[i] < 0 || indices[i] >= s.rows)
      fail(Op::gather_rows, "index " + std::to_string(indices[i]) + " at position " + std::to_string(i) +
                                " is outside the " + std::to_string(s.rows) + " rows of table " + s.str());
  const auto count = static_cast<std::int64_t>(indices.size());
  Node* n = Recorder::record(tape, Op::gather_rows, Shape::matrix(count, s.cols), inputs, true);
  if (n->requires_grad) {
    auto* saved = static_cast<std::int32_t*>(Recorder::allocate_tensor(tape, indices.size_bytes()));
    std::copy(indices.begin(), indices.end(), saved);
    n->indices = saved;
  }
  dispatch(tape.dtype(), [&]<class T>() {
    for (std::int64_t i = 0; i < count; ++i)
      std::memcpy(out_of<T>(n) + i * s.cols, value_of<T>(nt) + indices[i] * s.cols, sizeof(T) * s.cols);
  });
  return finish(tape, n);
}

template <class T>
void jvp_gather_rows(const Tape&, Tangents& t, Node* n) {
  const T* tt = t.of<T>(n->inputs[0]);
  T* ty = t.make<T>(n);
  const std::int64_t cols = n->shape.cols;
  for (std::int64_t i = 0; i < n->shape.rows; ++i)
    std::copy_n(tt + n->indices[i] * cols, cols, ty + i * cols);
}

template <class T>
void backward_gather_rows(Tape& tape, Node* n) {
  T* gt = grad_in<T>(tape, n, 0);
  const std::int32_t* indices = n->indices;
  const std::int64_t cols = n->shape.cols;
  const T* dy = dy_of<T>(n);
  for (std::int64_t i = n->shape.rows - 1; i >= 0; --i)  // last row first: kernels::window_invariant
    for (std::int64_t c = 0; c < cols; ++c) gt[indices[i] * cols + c] += dy[i * cols + c];
}

// ---- losses --------------------------------------------------------------------------------------------

namespace {

// The scalar node both cross-entropy ops record: targets checked against `classes` and kept for backward,
// n->scalar = 1 / normalizer (0 when no row counts), n->arg0 = the ignored target.
Node* record_cross_entropy(Op op, Tape& tape, std::span<const Var> inputs, Shape logits,
                           std::span<const std::int32_t> targets, const CrossEntropyOptions& options) {
  if (static_cast<std::int64_t>(targets.size()) != logits.rows)
    fail(op, std::to_string(targets.size()) + " targets for logits " + logits.str());
  std::int64_t counted = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] == options.ignore_index) continue;
    if (targets[i] < 0 || targets[i] >= logits.cols)
      fail(op, "target " + std::to_string(targets[i]) + " at row " + std::to_string(i) + " is outside the " +
                   std::to_string(logits.cols) + " classes of logits " + logits.str());
    ++counted;
  }
  if (options.normalizer < 0) fail(op, "negative normalizer");
  Node* n = Recorder::record(tape, op, Shape::scalar(), inputs, true);
  const double normalizer = options.normalizer > 0 ? options.normalizer : static_cast<double>(counted);
  n->scalar = counted == 0 ? 0.0 : 1.0 / normalizer;
  n->arg0 = options.ignore_index;
  if (n->requires_grad) {
    auto* saved_targets = static_cast<std::int32_t*>(Recorder::allocate_tensor(tape, targets.size_bytes()));
    std::copy(targets.begin(), targets.end(), saved_targets);
    n->indices = saved_targets;
  }
  return n;
}

// Sum over counted rows of -log softmax(logits)[target], with the log-sum-exp shift. probs (which may be
// logits itself) receives the softmax when not null; options.correct, when set, the rows argmax-right.
template <class T>
double softmax_rows(const T* logits, T* probs, Shape s, std::span<const std::int32_t> targets,
                    const CrossEntropyOptions& options) {
  double total = 0;
  std::int64_t correct = 0;
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const T* xr = logits + r * s.cols;
    const T* top = std::max_element(xr, xr + s.cols);
    const T shift = *top;
    const bool counted = targets[r] != options.ignore_index;
    correct += counted && top - xr == targets[r];
    const T target_logit = counted ? xr[targets[r]] : T(0);
    // exp(x - shift) is in (0, 1] with at least one 1, so summing in T loses nothing that matters.
    T denom;
    if (probs != nullptr) {
      T* pr = probs + r * s.cols;
      for (std::int64_t c = 0; c < s.cols; ++c) pr[c] = kernels::exp<T>(xr[c] - shift);
      denom = lane_sum<T>(s.cols, [&](std::int64_t c) { return pr[c]; });
      const T inverse = T(1) / denom;
      for (std::int64_t c = 0; c < s.cols; ++c) pr[c] *= inverse;
    } else {
      denom = lane_sum<T>(s.cols, [&](std::int64_t c) { return kernels::exp<T>(xr[c] - shift); });
    }
    if (counted) total += std::log(static_cast<double>(denom)) + shift - target_logit;
  }
  if (options.correct != nullptr) *options.correct = correct;
  return total;
}

// d loss / d logits = (probs - onehot(target)) * dy / normalizer on counted rows, 0 on ignored ones: added
// to dlogits, or (dlogits == probs) written over the probabilities.
// `first_row` is the first row's index into the saved targets (the head works in chunks of rows).
template <class T>
void softmax_rows_backward(const Node* n, const T* probs, T* dlogits, Shape s, std::int64_t first_row = 0) {
  const T g = static_cast<T>(*dy_of<T>(n) * n->scalar);
  const bool in_place = probs == dlogits;
  const std::int32_t* targets = n->indices + first_row;
  for (std::int64_t r = 0; r < s.rows; ++r) {
    T* dr = dlogits + r * s.cols;
    const T* pr = probs + r * s.cols;
    const bool counted = targets[r] != n->arg0;
    if (in_place) {
      for (std::int64_t c = 0; c < s.cols; ++c) dr[c] = counted ? g * pr[c] : T(0);
    } else if (counted) {
      for (std::int64_t c = 0; c < s.cols; ++c) dr[c] += g * pr[c];
    }
    if (counted) dr[targets[r]] -= g;
  }
}

// The tangent of a cross-entropy from its logits' tangent: the sum over counted rows of
// (probs - onehot(target)) . tlogits, over the normalizer (n->scalar). `first_row` as above.
template <class T>
double cross_entropy_tangent(const Node* n, const T* probs, const T* tlogits, Shape s,
                             std::int64_t first_row = 0) {
  const std::int32_t* targets = n->indices + first_row;
  double total = 0;
  for (std::int64_t r = 0; r < s.rows; ++r) {
    if (targets[r] == n->arg0) continue;
    for (std::int64_t c = 0; c < s.cols; ++c)
      total += static_cast<double>(probs[r * s.cols + c]) * tlogits[r * s.cols + c];
    total -= tlogits[r * s.cols + targets[r]];
  }
  return total * n->scalar;
}

}  // namespace

Var softmax_cross_entropy(const Var& logits, std::span<const std::int32_t> targets,
                          CrossEntropyOptions options) {
  const std::span<const Var> inputs(&logits, 1);
  Tape& tape = Recorder::tape_of(Op::softmax_cross_entropy, inputs);
  Node* nl = logits.node();
  const Shape s = nl->shape;
  if (s.rank == 0) fail(Op::softmax_cross_entropy, "logits must be [batch, classes], got " + s.str());
  Node* n = record_cross_entropy(Op::softmax_cross_entropy, tape, inputs, s, targets, options);
  dispatch(tape.dtype(), [&]<class T>() {
    T* probs = n->requires_grad ? allocate_saved<T>(tape, n, s.numel()) : nullptr;
    *out_of<T>(n) = static_cast<T>(softmax_rows<T>(value_of<T>(nl), probs, s, targets, options) * n->scalar);
  });
  return finish(tape, n);
}

template <class T>
void jvp_softmax_cross_entropy(const Tape&, Tangents& t, Node* n) {
  *t.make<T>(n) = static_cast<T>(cross_entropy_tangent<T>(n, static_cast<const T*>(n->saved),
                                                          t.of<T>(n->inputs[0]), n->inputs[0]->shape));
}

template <class T>
void backward_softmax_cross_entropy(Tape& tape, Node* n) {
  softmax_rows_backward<T>(n, static_cast<const T*>(n->saved), grad_in<T>(tape, n, 0), n->inputs[0]->shape);
}

namespace {
// Rows at a time through the head: the logits of a whole window ([T*B, classes]) never exist, in forward or
// backward. 512 rows keep the packed GEMM path (docs/threads.md) and a chunk's logits in L2. Its softmax runs
// over the thread pool in blocks of 64 rows whose losses are summed in block order, so the loss does not
// depend on the number of threads.
constexpr std::int64_t head_chunk_rows = 512, softmax_block_rows = 64;
constexpr std::int64_t softmax_blocks = head_chunk_rows / softmax_block_rows;

// Calls block(index, first, count) for the 64-row blocks of a chunk of `rows` rows, shared out over the pool.
template <class Block>
void over_softmax_blocks(std::int64_t rows, Block&& block) {
  const std::int64_t blocks = (rows + softmax_block_rows - 1) / softmax_block_rows;
  const int parts = parallel::parts_for(blocks, 1);
  parallel::run(parts, [&](int part) {
    const auto [begin, end] = parallel::range(blocks, part, parts);
    for (std::int64_t b = begin; b < end; ++b)
      block(b, b * softmax_block_rows, std::min(softmax_block_rows, rows - b * softmax_block_rows));
  });
}

// A weight packed once per op in the tape's arena for all the chunks that multiply by it (counted in
// MemoryStats). Chunks of fewer rows than the packed path takes go to gemm, as they would unpacked; when the
// first (largest) chunk of `rows` does, nothing is packed.
template <class T>
PackedB<T> pack_in_arena(Tape& tape, std::int64_t rows, const T* b, std::int64_t ldb, bool transposed,
                         std::int64_t k, std::int64_t n) {
  if (!packed_rows<T>(std::min(rows, head_chunk_rows)))
    return PackedB<T>(static_cast<const T*>(nullptr), k, n);
  T* storage = static_cast<T*>(
      Recorder::allocate_tensor(tape, sizeof(T) * static_cast<std::size_t>(PackedB<T>::size(k, n))));
  return pack(b, ldb, transposed, k, n, storage);
}

// C[rows, packed.n] = A packed + beta C, as gemm computes it for this shape.
template <class T>
void chunk_gemm(std::int64_t rows, const T* a, std::int64_t lda, const PackedB<T>& packed, const T* b,
                std::int64_t ldb, bool transposed, T beta, T* c) {
  if (packed_rows<T>(rows)) {
    gemm_packed(rows, a, lda, packed, beta, c, packed.n);
  } else {
    gemm<T>(false, transposed, rows, packed.n, packed.k, a, lda, b, ldb, beta, c);
  }
}

// bias + x W^T for rows [first, first + rows) of x, into out [rows, classes]; w_t is W^T packed.
template <class T>
void head_logits(const Node* n, std::int64_t first, std::int64_t rows, const PackedB<T>& w_t, T* out) {
  const std::int64_t in = n->inputs[0]->shape.cols, classes = n->inputs[1]->shape.rows;
  const T* bias = value_of<T>(n->inputs[2]);
  for (std::int64_t r = 0; r < rows; ++r) std::copy_n(bias, classes, out + r * classes);
  chunk_gemm<T>(rows, value_of<T>(n->inputs[0]) + first * in, in, w_t, value_of<T>(n->inputs[1]), in, true,
                T(1), out);
}
}  // namespace

Var linear_cross_entropy(const Var& x, const Var& w, const Var& b, std::span<const std::int32_t> targets,
                         CrossEntropyOptions options) {
  const std::array<Var, 3> inputs{x, w, b};
  Tape& tape = Recorder::tape_of(Op::linear_cross_entropy, inputs);
  const Shape sx = x.node()->shape, sw = w.node()->shape, sb = b.node()->shape;
  if (sx.rank != 2 || sw.rank != 2 || sx.cols != sw.cols || sb.numel() != sw.rows || sb.rows != 1)
    fail(Op::linear_cross_entropy,
         "x " + sx.str() + ", weight " + sw.str() + ", bias " + sb.str() +
             " do not fit x @ weight^T + bias (weight is [classes, in], bias [classes])");
  const Shape logits = Shape::matrix(sx.rows, sw.rows);
  Node* n = record_cross_entropy(Op::linear_cross_entropy, tape, inputs, logits, targets, options);
  dispatch(tape.dtype(), [&]<class T>() {
    // One chunk's logits; backward reuses the buffer for its recomputed logits.
    T* chunk = static_cast<T*>(Recorder::allocate_tensor(
        tape, sizeof(T) * static_cast<std::size_t>(std::min(logits.rows, head_chunk_rows) * logits.cols)));
    n->saved = chunk;
    const PackedB<T> w_t =
        pack_in_arena<T>(tape, sx.rows, value_of<T>(n->inputs[1]), sx.cols, true, sx.cols, sw.rows);
    double total = 0;
    std::int64_t correct = 0;
    for (std::int64_t first = 0; first < logits.rows; first += head_chunk_rows) {
      const std::int64_t rows = std::min(head_chunk_rows, logits.rows - first);
      head_logits<T>(n, first, rows, w_t, chunk);
      std::array<double, softmax_blocks> block_loss{};
      std::array<std::int64_t, softmax_blocks> block_correct{};
      over_softmax_blocks(rows, [&](std::int64_t b, std::int64_t offset, std::int64_t count) {
        CrossEntropyOptions block_options = options;
        block_options.correct = &block_correct[static_cast<std::size_t>(b)];
        block_loss[static_cast<std::size_t>(b)] = softmax_rows<T>(
            chunk + offset * logits.cols, nullptr, Shape::matrix(count, logits.cols),
            targets.subspan(static_cast<std::size_t>(first + offset), static_cast<std::size_t>(count)),
            block_options);
      });
      for (std::size_t b = 0; b < softmax_blocks; ++b) {
        total += block_loss[b];
        correct += block_correct[b];
      }
    }
    if (options.correct != nullptr) *options.correct = correct;
    *out_of<T>(n) = static_cast<T>(total * n->scalar);
  });
  return finish(tape, n);
}

// Chunk by chunk: recompute the logits, turn them into their gradient in place, then dW and db, then dx,
// which may be written over x's rows of this chunk (Recorder::grad_over_value) since nothing reads them
// after: the probabilities are never kept, and x's gradient needs no buffer of its own.
template <class T>
void backward_linear_cross_entropy(Tape& tape, Node* n) {
  const Shape sx = n->inputs[0]->shape;
  const std::int64_t classes = n->inputs[1]->shape.rows;
  T* chunk = static_cast<T*>(n->saved);
  T* gw = grad_in<T>(tape, n, 1);
  T* gb = grad_in<T>(tape, n, 2);
  T* gx = static_cast<T*>(Recorder::grad_over_value(tape, n->inputs[0], false));
  const T beta_x = gx != nullptr ? T(0) : T(1);  // over the value: assign; a gradient buffer: accumulate
  if (gx == nullptr) gx = grad_in<T>(tape, n, 0);
  CrossEntropyOptions recompute;
  recompute.ignore_index = static_cast<std::int32_t>(n->arg0);
  const T* w = value_of<T>(n->inputs[1]);
  const PackedB<T> w_t = pack_in_arena<T>(tape, sx.rows, w, sx.cols, true, sx.cols, classes);
  const PackedB<T> w_packed = pack_in_arena<T>(tape, sx.rows, w, sx.cols, false, classes, sx.cols);
  // Last chunk first, for kernels::window_invariant.
  for (std::int64_t first = (sx.rows - 1) / head_chunk_rows * head_chunk_rows; first >= 0;
       first -= head_chunk_rows) {
    const std::int64_t rows = std::min(head_chunk_rows, sx.rows - first);
    head_logits<T>(n, first, rows, w_t, chunk);
    over_softmax_blocks(rows, [&](std::int64_t, std::int64_t offset, std::int64_t count) {
      T* block = chunk + offset * classes;
      const Shape block_shape = Shape::matrix(count, classes);
      softmax_rows<T>(
          block, block, block_shape,
          std::span<const std::int32_t>(n->indices + first + offset, static_cast<std::size_t>(count)),
          recompute);
      softmax_rows_backward<T>(n, block, block, block_shape, first + offset);
    });
    const T* x_rows = value_of<T>(n->inputs[0]) + first * sx.cols;
    if (gw != nullptr) add_products_over_rows<T>(classes, sx.cols, rows, chunk, classes, x_rows, sx.cols, gw);
    if (gb != nullptr) add_column_sums(gb, chunk, rows, classes, classes);
    if (gx != nullptr)
      chunk_gemm<T>(rows, chunk, classes, w_packed, w, sx.cols, false, beta_x, gx + first * sx.cols);
  }
}

// Chunk by chunk, as backward: the logits recomputed and turned into probabilities, their tangent
// tx W^T + x tW^T + tb, and the cross-entropy's tangent from both.
template <class T>
void jvp_linear_cross_entropy(const Tape&, Tangents& t, Node* n) {
  const Shape sx = n->inputs[0]->shape;
  const std::int64_t classes = n->inputs[1]->shape.rows;
  const T *x = value_of<T>(n->inputs[0]), *w = value_of<T>(n->inputs[1]), *b = value_of<T>(n->inputs[2]);
  const T *tx = t.of<T>(n->inputs[0]), *tw = t.of<T>(n->inputs[1]), *tb = t.of<T>(n->inputs[2]);
  std::vector<T> probs(static_cast<std::size_t>(std::min(sx.rows, head_chunk_rows) * classes));
  std::vector<T> tlogits(probs.size());
  CrossEntropyOptions recompute;
  recompute.ignore_index = static_cast<std::int32_t>(n->arg0);
  double total = 0;
  for (std::int64_t first = 0; first < sx.rows; first += head_chunk_rows) {
    const std::int64_t rows = std::min(head_chunk_rows, sx.rows - first);
    const Shape chunk = Shape::matrix(rows, classes);
    for (std::int64_t r = 0; r < rows; ++r) std::copy_n(b, classes, probs.data() + r * classes);
    gemm<T>(false, true, rows, classes, sx.cols, x + first * sx.cols, sx.cols, w, sx.cols, T(1),
            probs.data());
    softmax_rows<T>(probs.data(), probs.data(), chunk,
                    std::span<const std::int32_t>(n->indices + first, static_cast<std::size_t>(rows)),
                    recompute);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < classes; ++c)
        tlogits[static_cast<std::size_t>(r * classes + c)] = tb ? tb[c] : T(0);
    if (tx != nullptr)
      gemm<T>(false, true, rows, classes, sx.cols, tx + first * sx.cols, sx.cols, w, sx.cols, T(1),
              tlogits.data());
    if (tw != nullptr)
      gemm<T>(false, true, rows, classes, sx.cols, x + first * sx.cols, sx.cols, tw, sx.cols, T(1),
              tlogits.data());
    total += cross_entropy_tangent<T>(n, probs.data(), tlogits.data(), chunk, first);
  }
  *t.make<T>(n) = static_cast<T>(total);
}

Var mse(const Var& a, const Var& b, double normalizer) {
  const std::array<Var, 2> inputs{a, b};
  Tape& tape = Recorder::tape_of(Op::mse, inputs);
  Node* na = a.node();
  Node* nb = b.node();
  if (na->shape != nb->shape)
    fail(Op::mse, "shapes " + na->shape.str() + " and " + nb->shape.str() + " differ");
  if (!(normalizer >= 0) || !std::isfinite(normalizer))
    fail(Op::mse, "the normalizer must be finite and >= 0");
  Node* n = Recorder::record(tape, Op::mse, Shape::scalar(), inputs, true);
  const std::int64_t count = na->shape.numel();
  n->scalar = 1.0 / (normalizer > 0 ? normalizer : static_cast<double>(count));
  dispatch(tape.dtype(), [&]<class T>() {
    const T* x = value_of<T>(na);
    const T* y = value_of<T>(nb);
    const double total = lane_sum<double>(count, [&](std::int64_t i) {
      const double d = x[i] - y[i];
      return d * d;
    });
    *out_of<T>(n) = static_cast<T>(total * n->scalar);
  });
  return finish(tape, n);
}

template <class T>
void jvp_mse(const Tape&, Tangents& t, Node* n) {
  const T *a = value_of<T>(n->inputs[0]), *b = value_of<T>(n->inputs[1]);
  const T *ta = t.of<T>(n->inputs[0]), *tb = t.of<T>(n->inputs[1]);
  double total = 0;
  for (std::int64_t i = 0; i < n->inputs[0]->shape.numel(); ++i)
    total += (static_cast<double>(a[i]) - b[i]) * ((ta ? ta[i] : T(0)) - (tb ? tb[i] : T(0)));
  *t.make<T>(n) = static_cast<T>(2 * total * n->scalar);
}

template <class T>
void backward_mse(Tape& tape, Node* n) {
  T* ga = grad_in<T>(tape, n, 0);
  T* gb = grad_in<T>(tape, n, 1);
  const T* a = value_of<T>(n->inputs[0]);
  const T* b = value_of<T>(n->inputs[1]);
  const T g = static_cast<T>(2 * *dy_of<T>(n) * n->scalar);
  const std::int64_t count = n->inputs[0]->shape.numel();
  for (std::int64_t i = 0; i < count; ++i) {
    const T d = g * (a[i] - b[i]);
    if (ga != nullptr) ga[i] += d;
    if (gb != nullptr) gb[i] -= d;
  }
}

// ---- stop_gradient -------------------------------------------------------------------------------------

// The node exists so graph exports can draw the cut; it shares its input's value and never requires a
// gradient, so nothing recorded from it leads back across.
Var stop_gradient(const Var& x) {
  const std::span<const Var> inputs(&x, 1);
  Tape& tape = Recorder::tape_of(Op::stop_gradient, inputs);
  Node* nx = x.node();
  Node* n = Recorder::record(tape, Op::stop_gradient, nx->shape, inputs, false, nx->value);
  return finish(tape, n);
}

template <class T>
void backward_stop_gradient(Tape&, Node*) {
  throw std::logic_error("stop_gradient has no backward step; it cannot be on the backward chain");
}
// Its tangent is zero (JAX's too): nothing flows across the cut, in either direction.
template <class T>
void jvp_stop_gradient(const Tape&, Tangents&, Node*) {
  throw std::logic_error("stop_gradient has no tangent rule; it cannot be on the backward chain");
}

// ---- dispatch from the table ---------------------------------------------------------------------------

void run_backward(Tape& tape, Node* n) {
  switch (n->op) {
#define REWIND_OP(name, inputs, has_grad, value_dead, saves, formula)        \
  case Op::name:                                                             \
    dispatch(tape.dtype(), [&]<class T>() { backward_##name<T>(tape, n); }); \
    break;
#include "rewind/autodiff/ops.def"
#undef REWIND_OP
    case Op::input:
    case Op::parameter:
      break;  // leaves: their gradient is already in place
  }
}

void run_jvp(const Tape& tape, Tangents& tangents, Node* n) {
  switch (n->op) {
#define REWIND_OP(name, inputs, has_grad, value_dead, saves, formula)             \
  case Op::name:                                                                  \
    dispatch(tape.dtype(), [&]<class T>() { jvp_##name<T>(tape, tangents, n); }); \
    break;
#include "rewind/autodiff/ops.def"
#undef REWIND_OP
    case Op::input:
    case Op::parameter:
      break;  // leaves: their tangent is the direction given, or zero
  }
}

}  // namespace rwd::autodiff

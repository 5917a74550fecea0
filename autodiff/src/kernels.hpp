// Helpers shared by the op implementations (ops.cpp, ops_fused.cpp): typed access to node buffers, dtype
// dispatch, GEMM.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "fast_math.hpp"
#include "node.hpp"
#include "packed_gemm.hpp"
#include "parallel.hpp"
#include "recorder.hpp"

namespace rwd::autodiff::kernels {

template <class F>
void dispatch(DType t, F&& f) {
  if (t == DType::f32) {
    f.template operator()<float>();
  } else {
    f.template operator()<double>();
  }
}

template <class T>
const T* value_of(const Node* n) {
  return static_cast<const T*>(n->value);
}
template <class T>
T* out_of(Node* n) {
  return static_cast<T*>(n->value);
}
template <class T>
const T* dy_of(const Node* n) {
  return static_cast<const T*>(n->grad);
}
// The gradient buffer of input i, or null when that input takes no gradient.
template <class T>
T* grad_in(Tape& tape, Node* n, std::uint32_t i) {
  Node* in = n->inputs[i];
  return in->requires_grad ? static_cast<T*>(Recorder::ensure_grad(tape, in)) : nullptr;
}

// grad_in for a backward step that no longer reads input i's value: where nothing else reads it either, the
// value's buffer serves as the (zeroed) gradient, so the window keeps one buffer instead of two.
template <class T>
T* grad_in_over_value(Tape& tape, Node* n, std::uint32_t i) {
  if (void* g = Recorder::grad_over_value(tape, n->inputs[i])) return static_cast<T*>(g);
  return grad_in<T>(tape, n, i);
}

// dst += src, count elements: gradient accumulation.
template <class T>
void add_into(T* dst, const T* src, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) dst[i] += src[i];
}

// dst[c] += the sum over rows r of src[r * ld + c], for c < cols: a bias's gradient, the column sums of dy.
template <class T>
void add_column_sums(T* dst, const T* src, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  for (std::int64_t r = 0; r < rows; ++r) add_into(dst, src + r * ld, cols);
}

// The sum over i < n of term(i), accumulated in A: in `lanes` partial sums (element i in sum i mod lanes)
// that are added at the end. One accumulator is a serial chain that GCC may not reorder without -ffast-math,
// so such a loop stays scalar at one add per 4 cycles; this order is fixed (the same for any threads) and
// vectorises.
template <class A, class F>
A lane_sum(std::int64_t n, F&& term) {
  constexpr int lanes = 8;
  A part[lanes] = {};
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (int j = 0; j < lanes; ++j) part[j] += static_cast<A>(term(i + j));
  for (int j = 0; i < n; ++i, ++j) part[j] += static_cast<A>(term(i));
  A total = 0;
  for (int j = 0; j < lanes; ++j) total += part[j];
  return total;
}

// body(begin, end) over [0, items) in parts shared out to the pool when there is enough work (items of
// `item_size` elements each). Parts never touch each other's items, so results do not depend on the number
// of threads. Used by the elementwise and row-wise ops: at hidden 256 a step's [32, 256] blocks are worth
// splitting, at 64 handing a part out costs more than it saves.
constexpr std::int64_t elementwise_min_part = 4096;  // elements
template <class Body>
void over_parts(std::int64_t items, std::int64_t item_size, Body&& body) {
  // Tiny tensors return before asking the pool (a call and a thread-local read, 15 ns of a 70 ns op).
  if (items * item_size < 2 * elementwise_min_part) return body(std::int64_t{0}, items);
  const int parts = parallel::parts_for(
      items, std::max<std::int64_t>(1, elementwise_min_part / std::max<std::int64_t>(1, item_size)));
  parallel::run(parts, [&](int part) {
    const auto [begin, end] = parallel::range(items, part, parts);
    body(begin, end);
  });
}

[[noreturn]] inline void fail(Op op, const std::string& why) {
  throw std::invalid_argument(std::string(name_of(op)) + ": " + why);
}

// A buffer for what n's backward step reads, kept in n->saved. Allocate it only when n requires a gradient.
template <class T>
T* allocate_saved(Tape& tape, Node* n, std::int64_t count) {
  n->saved = Recorder::allocate_tensor(tape, sizeof(T) * static_cast<std::size_t>(count));
  return static_cast<T*>(n->saved);
}

inline Var finish(Tape& tape, Node* n) {
  return Recorder::handle(tape, n);
}

// The activations every kernel uses: vectorisable approximations in float, libm in double.
template <class T>
T sigmoid(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return fast::sigmoid(x);
  } else {
    const T e = std::exp(-std::fabs(x));
    return x >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
  }
}
template <class T>
T tanh(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return fast::tanh(x);
  } else {
    return std::tanh(x);
  }
}
template <class T>
T exp(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return fast::exp(x);
  } else {
    return std::exp(x);
  }
}

template <class T>
void blas_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
               const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  const auto opa = ta ? CblasTrans : CblasNoTrans;
  const auto opb = tb ? CblasTrans : CblasNoTrans;
  const auto M = static_cast<blasint>(m), N = static_cast<blasint>(n), K = static_cast<blasint>(k);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, 1.0f, a, static_cast<blasint>(lda), b,
                static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  } else {
    cblas_dgemm(CblasRowMajor, opa, opb, M, N, K, 1.0, a, static_cast<blasint>(lda), b,
                static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  }
}

// C[m,n] = op(A) op(B) + beta C, row-major; lda/ldb/ldc are the stored column counts (ldc 0: n).
//
// With A not transposed and many rows (a window's input projections, heads, input gradients), B is packed
// once and the rows of C are shared out to packed_gemm, which beats OpenBLAS there: B is a weight matrix,
// small next to A, and the kernel needs no packing of A (bench/README.md, "`matmul` op vs bare
// `cblas_sgemm`"). With few rows packing B costs as much as the product and OpenBLAS, which packs faster,
// keeps it; so do weight gradients (A^T B with k = the window's rows).
//
// Large products are split over the thread pool by rows of C, or by columns when C has few rows, so that
// results are bit-identical for any number of threads (tests/cli_threads.sh): packed_gemm anywhere (each row
// of C is computed alone); OpenBLAS into blocks fixed by the shape alone, one call per block whatever the
// number of threads, because its result for an element depends on the call it is part of (small-matrix
// kernels and edge tiles differ with the part's size, by core type).
constexpr std::int64_t gemm_min_work = std::int64_t{1} << 19;  // m n k per part: below it waking costs more
constexpr std::int64_t gemm_min_packed_rows = 128;

// C[m, packed.n] = A packed + beta C (beta 0 or 1) with the rows of C shared out: gemm's packed path, for a
// caller that packs B once and multiplies many row blocks by it (linear_cross_entropy's chunks).
template <class T>
void gemm_packed(std::int64_t m, const T* a, std::int64_t lda, const PackedB<T>& packed, T beta, T* c,
                 std::int64_t ldc) {
  const std::int64_t tiles = (m + panel_rows - 1) / panel_rows;
  const int parts = m * packed.n * packed.k < 2 * gemm_min_work ? 1 : parallel::parts_for(tiles, 1);
  parallel::run(parts, [&](int part) {
    const auto [first, last] = parallel::range(tiles, part, parts);
    const std::int64_t begin = first * panel_rows, end = std::min(last * panel_rows, m);
    packed_gemm(end - begin, a + begin * lda, lda, packed, beta != T(0), c + begin * ldc, ldc);
  });
}

// C[1, n] = a op(B) + beta C for one row a (a stream stepped one row at a time: rewind online, predict) as
// BLAS's matrix-vector product, whose setup is a fraction of gemm's packing at these sizes.
template <class T>
void row_gemm(bool tb, std::int64_t n, std::int64_t k, const T* a, const T* b, std::int64_t ldb, T beta,
              T* c) {
  // c = op(B)^T a: B [n, k] (op transposes it) read as it is, B [k, n] transposed.
  const auto op = tb ? CblasNoTrans : CblasTrans;
  const auto rows = static_cast<blasint>(tb ? n : k), cols = static_cast<blasint>(tb ? k : n);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemv(CblasRowMajor, op, rows, cols, 1.0f, b, static_cast<blasint>(ldb), a, 1, beta, c, 1);
  } else {
    cblas_dgemv(CblasRowMajor, op, rows, cols, 1.0, b, static_cast<blasint>(ldb), a, 1, beta, c, 1);
  }
}

template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc = 0) {
  if (ldc == 0) ldc = n;
  if (m == 1 && !ta && n * k < 2 * gemm_min_work) {
    row_gemm(tb, n, k, a, b, ldb, beta, c);
    return;
  }
  if (!ta && m >= gemm_min_packed_rows && (beta == T(0) || beta == T(1))) {
    // Reused across calls; at most one weight matrix per thread (callers that repeat a B pack it themselves).
    thread_local std::vector<T> storage;
    storage.resize(static_cast<std::size_t>(PackedB<T>::size(k, n)));
    gemm_packed(m, a, lda, PackedB<T>(b, ldb, tb, k, n, storage.data()), beta, c, ldc);
    return;
  }
  constexpr std::int64_t min_work = gemm_min_work;
  if (m * n * k < 2 * min_work) {
    blas_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // At most 4 blocks of a multiple of 64: each block repacks the other operand, so few and large.
  const bool by_rows = m >= n;
  const std::int64_t dim = by_rows ? m : n;
  const std::int64_t block = std::max<std::int64_t>(64, ((dim + 3) / 4 + 63) / 64 * 64);
  const std::int64_t blocks = (dim + block - 1) / block;
  const int parts = parallel::parts_for(blocks, 1);
  parallel::run(parts, [&](int part) {
    const auto [first, last] = parallel::range(blocks, part, parts);
    for (std::int64_t index = first; index < last; ++index) {
      const std::int64_t begin = index * block, size = std::min(block, dim - begin);
      if (by_rows) {
        blas_gemm(ta, tb, size, n, k, ta ? a + begin : a + begin * lda, lda, b, ldb, beta, c + begin * ldc,
                  ldc);
      } else {
        blas_gemm(ta, tb, m, size, k, a, lda, tb ? b + begin * ldb : b + begin, ldb, beta, c + begin, ldc);
      }
    }
  });
}

}  // namespace rwd::autodiff::kernels

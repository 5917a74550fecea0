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

#include "bf16_gemm.hpp"
#include "fast_math.hpp"
#include "node.hpp"
#include "packed_gemm.hpp"
#include "parallel.hpp"
#include "recorder.hpp"
#include "tangents.hpp"

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

// In f64 what a window computes does not depend on where the sequence was cut into windows, so that a
// checkpointed plan's gradient is bitwise full BPTT's (docs/tape.md):
// - a gradient that sums over rows (a weight's dY^T X, a bias's column sums, an embedding's scattered rows)
//   adds them last row first, one block of rows at a time (a time step in a sequence op, one row
//   elsewhere), each straight into the parameter's gradient: windows reversed last first then give every
//   parameter the same additions in the same order as one window over all of it;
// - a product by rows (A B with A row-major) takes the packed kernel whatever its row count, which computes
//   each row alone, where OpenBLAS's edge tiles and small-matrix kernels vary with the row count.
// f32 keeps one product over all rows and the fastest kernel for each shape.
template <class T>
inline constexpr bool window_invariant = std::is_same_v<T, double>;

// dst[c] += the sum over rows r of src[r * ld + c], for c < cols: a bias's gradient, the column sums of dy.
template <class T>
void add_column_sums(T* dst, const T* src, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  for (std::int64_t r = rows - 1; r >= 0; --r) add_into(dst, src + r * ld, cols);
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

// Whether a product by m rows of A takes the packed kernel (window_invariant: always in f64).
template <class T>
constexpr bool packed_rows(std::int64_t m) {
  return window_invariant<T> || m >= gemm_min_packed_rows;
}

// B packed into storage as PackedB packs it, with the panels shared out to the pool when B is large: the
// sequence ops pack W_hh twice per window, 16 MiB each at hidden 1024.
template <class T>
PackedB<T> pack(const T* b, std::int64_t ldb, bool transposed, std::int64_t k, std::int64_t n, T* storage) {
  constexpr std::int64_t min_part_elements = std::int64_t{1} << 16;
  const std::int64_t panels = PackedB<T>::panels(n);
  const int parts =
      parallel::parts_for(panels, std::max<std::int64_t>(1, min_part_elements / (PackedB<T>::width * k)));
  parallel::run(parts, [&](int part) {
    const auto [first, last] = parallel::range(panels, part, parts);
    PackedB<T>::pack_panels(b, ldb, transposed, k, n, storage, first, last);
  });
  return PackedB<T>(storage, k, n);
}

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

// Horizontal sums of 32-byte vectors, halving: a tree of log2(lanes) shuffles and additions.
typedef float Float8 __attribute__((vector_size(32)));
typedef float Float4 __attribute__((vector_size(16)));
typedef double Double4 __attribute__((vector_size(32)));
typedef double Double2 __attribute__((vector_size(16)));
inline float horizontal_sum(Float8 v) {
  const Float4 h = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
  return (h[0] + h[2]) + (h[1] + h[3]);
}
inline double horizontal_sum(Double4 v) {
  const Double2 h = __builtin_shufflevector(v, v, 0, 1) + __builtin_shufflevector(v, v, 2, 3);
  return h[0] + h[1];
}

// C[1, n] = a op(B) + beta C for one row a: a stream stepped one row at a time (rewind online, predict),
// where a BLAS call's setup costs more than the product (OpenBLAS's gemv interface takes 5x its kernel's time
// at 128 x 32).
template <class T>
void row_gemm(bool tb, std::int64_t n, std::int64_t k, const T* a, const T* b, std::int64_t ldb, T beta,
              T* c) {
  using Vector = std::conditional_t<std::is_same_v<T, float>, Float8, Double4>;
  constexpr std::int64_t lanes = sizeof(Vector) / sizeof(T);
  T* __restrict out = c;  // C is never one of the operands
  if (tb && k >= lanes) {
    // Four outputs at a time: four independent chains of vector FMAs, then their horizontal sums.
    const auto load = [](const T* p) {
      Vector v;
      std::memcpy(&v, p, sizeof v);
      return v;
    };
    const auto finish = [&](std::int64_t j, Vector acc, std::int64_t p) {
      T sum = horizontal_sum(acc);
      for (; p < k; ++p) sum += a[p] * b[j * ldb + p];
      out[j] = beta == T(0) ? sum : beta * out[j] + sum;  // beta 0: C's old values are never read
    };
    std::int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const T *w0 = b + j * ldb, *w1 = w0 + ldb, *w2 = w1 + ldb, *w3 = w2 + ldb;
      Vector s0{}, s1{}, s2{}, s3{};
      std::int64_t p = 0;
      for (; p + lanes <= k; p += lanes) {
        const Vector x = load(a + p);
        s0 += x * load(w0 + p), s1 += x * load(w1 + p), s2 += x * load(w2 + p), s3 += x * load(w3 + p);
      }
      if constexpr (std::is_same_v<T, float>) {
        if (p == k) {  // no tail: the four sums at once, lanes interleaved and added (a 4 x 8 transpose)
          const Float8 t0 = __builtin_shufflevector(s0, s1, 0, 8, 1, 9, 2, 10, 3, 11) +
                            __builtin_shufflevector(s0, s1, 4, 12, 5, 13, 6, 14, 7, 15);
          const Float8 t1 = __builtin_shufflevector(s2, s3, 0, 8, 1, 9, 2, 10, 3, 11) +
                            __builtin_shufflevector(s2, s3, 4, 12, 5, 13, 6, 14, 7, 15);
          const Float8 u = __builtin_shufflevector(t0, t1, 0, 1, 8, 9, 2, 3, 10, 11) +
                           __builtin_shufflevector(t0, t1, 4, 5, 12, 13, 6, 7, 14, 15);
          const Float4 sums =
              __builtin_shufflevector(u, u, 0, 1, 2, 3) + __builtin_shufflevector(u, u, 4, 5, 6, 7);
          for (int r = 0; r < 4; ++r) out[j + r] = beta == T(0) ? sums[r] : beta * out[j + r] + sums[r];
          continue;
        }
      }
      finish(j, s0, p), finish(j + 1, s1, p), finish(j + 2, s2, p), finish(j + 3, s3, p);
    }
    for (; j < n; ++j) {
      Vector s0{};
      std::int64_t p = 0;
      for (; p + lanes <= k; p += lanes) s0 += load(a + p) * load(b + j * ldb + p);
      finish(j, s0, p);
    }
    return;
  }
  // Otherwise C accumulates a's elements times B's rows (B [k, n]) or columns (B^T with k < lanes: a short
  // weight row per output, as an input projection of one or two inputs).
  for (std::int64_t j = 0; j < n; ++j) out[j] = beta == T(0) ? T(0) : beta * out[j];
  if (!tb) {  // four rows of B per sweep over C, contiguous: a quarter of C's loads and stores
    std::int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
      const T a0 = a[p], a1 = a[p + 1], a2 = a[p + 2], a3 = a[p + 3];
      const T* __restrict r0 = b + p * ldb;
      const T* __restrict r1 = r0 + ldb, * __restrict r2 = r1 + ldb, * __restrict r3 = r2 + ldb;
      for (std::int64_t j = 0; j < n; ++j) out[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j];
    }
    for (; p < k; ++p) {
      const T ap = a[p];
      const T* __restrict row = b + p * ldb;
      for (std::int64_t j = 0; j < n; ++j) out[j] += ap * row[j];
    }
    return;
  }
  const std::int64_t row_step = 1, column_step = ldb;
  for (std::int64_t p = 0; p < k; ++p) {
    const T ap = a[p];
    const T* __restrict row = b + p * row_step;
    for (std::int64_t j = 0; j < n; ++j) out[j] += ap * row[j * column_step];
  }
}

// Products of f32 tensors in bf16 (MatmulPrecision::bf16): those with at least this many multiply-adds per
// element rounded (m n k / (m k + k n), which is m n / (m + n)), where rounding and packing both operands
// costs a few percent of the product. A window's dW_hh (4H x H from B k rows) has 800 at hidden 1024; its
// dW_ih and dx (64 inputs) have 60 and stay f32, as do the per-step products by a parameter.
constexpr std::int64_t bf16_min_reuse = 256;

inline bool bf16_products() {
  return matmul_precision() == MatmulPrecision::bf16;
}

template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
          const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc = 0) {
  if (ldc == 0) ldc = n;
  if constexpr (std::is_same_v<T, float>) {
    if (m * n >= bf16_min_reuse * (m + n) && m * n * k >= 2 * gemm_min_work && (beta == 0 || beta == 1) &&
        bf16_products()) {
      bf16::gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
      return;
    }
  }
  if (m == 1 && !ta && n * k < 2 * gemm_min_work && !window_invariant<T>) {
    row_gemm(tb, n, k, a, b, ldb, beta, c);
    return;
  }
  if (!ta && packed_rows<T>(m) && (beta == T(0) || beta == T(1))) {
    // Reused across calls; at most one weight matrix per thread (callers that repeat a B pack it themselves).
    thread_local std::vector<T> storage;
    storage.resize(static_cast<std::size_t>(PackedB<T>::size(k, n)));
    gemm_packed(m, a, lda, pack(b, ldb, tb, k, n, storage.data()), beta, c, ldc);
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

// ty += the tangent of x w^T + b, rows x out: tx w^T + x tw^T + tb (each term where its tangent is not zero).
template <class T>
void linear_tangent(std::int64_t rows, std::int64_t in, std::int64_t out, const T* x, const T* w, const T* tx,
                    const T* tw, const T* tb, T* ty, std::int64_t ldy) {
  if (tb != nullptr)
    for (std::int64_t r = 0; r < rows; ++r) add_into(ty + r * ldy, tb, out);
  if (tx != nullptr) gemm<T>(false, true, rows, out, in, tx, in, w, in, T(1), ty, ldy);
  if (tw != nullptr) gemm<T>(false, true, rows, out, in, x, in, tw, in, T(1), ty, ldy);
}

// c [m, n] += a^T b summed over `rows` rows of a [rows, m] and b [rows, n]: a weight's gradient. In f64 one
// product per `block` rows, last block first (window_invariant).
template <class T>
void add_products_over_rows(std::int64_t m, std::int64_t n, std::int64_t rows, const T* a, std::int64_t lda,
                            const T* b, std::int64_t ldb, T* c, std::int64_t block = 1) {
  if constexpr (!window_invariant<T>) {
    gemm<T>(true, false, m, n, rows, a, lda, b, ldb, T(1), c);
  } else {
    for (std::int64_t end = rows; end > 0; end -= block) {
      const std::int64_t begin = std::max<std::int64_t>(0, end - block);
      gemm<T>(true, false, m, n, end - begin, a + begin * lda, lda, b + begin * ldb, ldb, T(1), c);
    }
  }
}

}  // namespace rwd::autodiff::kernels

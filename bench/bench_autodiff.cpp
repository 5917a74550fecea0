// Tape overhead per op, matmul op (rewind's GEMM) vs bare OpenBLAS sgemm, and tape clear. Figures and
// commands: bench/README.md.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <thread>
#include <vector>

#include "packed_gemm.hpp"  // internal: autodiff/src
#include "rewind/autodiff/ops.hpp"

using namespace rwd::autodiff;

namespace {

Tensor filled(Shape shape, double v) {
  Tensor t(shape, DType::f32);
  t.fill(v);
  return t;
}

// A chain of tiny ops, h = tanh(h * w + b), recorded and backpropagated: 3 ops per link. The figure is
// the cost of one op's forward record plus its backward step, tape clear included.
void BM_TinyOps(benchmark::State& state) {
  const std::int64_t width = state.range(0);
  constexpr int links = 1000;
  Tape tape;
  Parameter w("w", filled(Shape::vector(width), 0.9));
  Parameter b("b", filled(Shape::vector(width), 0.01));
  const Tensor h0 = filled(Shape::vector(width), 0.5);
  for (auto _ : state) {
    tape.clear();
    Var h = tape.input(h0);
    Var wv = tape.param(w), bv = tape.param(b);
    for (int i = 0; i < links; ++i) h = tanh(mul(h, wv) + bv);
    const Seed seed{h, &h0};
    tape.backward(std::span<const Seed>(&seed, 1));
    benchmark::DoNotOptimize(w.grad().raw());
  }
  const double ops = 3.0 * links;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * ops));
  state.counters["s_per_op"] =
      benchmark::Counter(ops, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_TinyOps)->Arg(1)->Arg(16);

// The same chain with additions only, h = h + b: no transcendental math, so this is the tape's own cost.
void BM_TinyAdds(benchmark::State& state) {
  const std::int64_t width = state.range(0);
  constexpr int links = 1000;
  Tape tape;
  Parameter b("b", filled(Shape::vector(width), 0.01));
  const Tensor h0 = filled(Shape::vector(width), 0.5);
  for (auto _ : state) {
    tape.clear();
    Var h = tape.input(h0);
    Var bv = tape.param(b);
    for (int i = 0; i < links; ++i) h = h + bv;
    const Seed seed{h, &h0};
    tape.backward(std::span<const Seed>(&seed, 1));
    benchmark::DoNotOptimize(b.grad().raw());
  }
  state.SetItemsProcessed(state.iterations() * links);
  state.counters["s_per_op"] =
      benchmark::Counter(links, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_TinyAdds)->Arg(1)->Arg(16);

// The same chain with one of the ops custom cells use, h = op(h) (w and the mask are ones): each op's record
// plus backward step alone, next to BM_TinyAdds. Starting from ones keeps every chain finite. Not reshape: a
// chain of 1,000 views of views measures the walk to the owning buffer (value_owner), not the op.
using TinyOp = Var (*)(const Var& h, const Var& w);
const std::pair<const char*, TinyOp> tiny_ops[] = {
    {"add_scalar", [](const Var& h, const Var&) { return h + 0.001; }},
    {"rsub_scalar", [](const Var& h, const Var&) { return 1.0 - h; }},
    {"div", [](const Var& h, const Var& w) { return h / w; }},
    {"rdiv_scalar", [](const Var& h, const Var&) { return 1.0 / h; }},
    {"square", [](const Var& h, const Var&) { return square(h); }},
    {"pow", [](const Var& h, const Var&) { return pow(h, 1.5); }},
    {"sqrt", [](const Var& h, const Var&) { return sqrt(h); }},
    {"rsqrt", [](const Var& h, const Var&) { return rsqrt(h); }},
    {"abs", [](const Var& h, const Var&) { return abs(h); }},
    {"softplus", [](const Var& h, const Var&) { return softplus(h); }},
    {"log_sigmoid", [](const Var& h, const Var&) { return log_sigmoid(h); }},
    {"gelu", [](const Var& h, const Var&) { return gelu(h); }},
    {"gelu_tanh", [](const Var& h, const Var&) { return gelu(h, GeluApproximation::tanh); }},
    {"elu", [](const Var& h, const Var&) { return elu(h); }},
    {"leaky_relu", [](const Var& h, const Var&) { return leaky_relu(h); }},
    {"clamp", [](const Var& h, const Var&) { return clamp(h, -2.0, 2.0); }},
    {"maximum", [](const Var& h, const Var& w) { return maximum(h, w); }},
    {"minimum", [](const Var& h, const Var& w) { return minimum(h, w); }},
    {"where", [](const Var& h, const Var& w) { return where(w, h, w); }},
    {"softmax", [](const Var& h, const Var&) { return softmax(h); }},
    {"log_softmax", [](const Var& h, const Var&) { return log_softmax(h); }},
    {"layer_norm", [](const Var& h, const Var& w) { return layer_norm(h, w, w); }},
};

void BM_TinyOp(benchmark::State& state) {
  const auto [name, op] = tiny_ops[state.range(0)];
  const std::int64_t width = state.range(1);
  constexpr int links = 1000;
  Tape tape;
  const Tensor ones = filled(Shape::matrix(1, width), 1.0);
  for (auto _ : state) {
    tape.clear();
    const Var x = tape.input(ones, true);
    const Var w = tape.input(ones);
    Var h = x;
    for (int i = 0; i < links; ++i) h = op(h, w);
    const Seed seed{h, &ones};
    tape.backward(std::span<const Seed>(&seed, 1));
    benchmark::DoNotOptimize(tape.grad(x).raw());
  }
  state.SetLabel(name);
  state.counters["s_per_op"] =
      benchmark::Counter(links, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_TinyOp)->ArgsProduct({benchmark::CreateDenseRange(0, std::size(tiny_ops) - 1, 1), {1, 16}});

void report_gflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Forward only: the matmul op (record + GEMM into the arena) against cblas_sgemm on the same shapes.
void BM_MatmulOp(benchmark::State& state) {
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  Tape tape;
  const Tensor a = filled(Shape::matrix(m, k), 0.01);
  Parameter w("w", filled(Shape::matrix(n, k), 0.02));
  for (auto _ : state) {
    tape.clear();
    Var y = matmul(tape.input(a), tape.param(w), Transpose::no, Transpose::yes);
    benchmark::DoNotOptimize(y.values<float>().data());
  }
  report_gflops(state, 2.0 * m * k * n);
}

// rewind sets OpenBLAS to one thread (docs/threads.md); the sgemm baselines run it at its best instead, with
// one thread per core.
struct OpenBlasAtItsBest {
  OpenBlasAtItsBest() { openblas_set_num_threads(static_cast<int>(std::thread::hardware_concurrency())); }
  ~OpenBlasAtItsBest() { openblas_set_num_threads(1); }
};

// Bare sgemm with the same shapes and layout; its input copy mirrors tape.input's, so the ratio shows the
// tape's own cost and the difference between rewind's GEMM (docs/threads.md) and OpenBLAS's.
void BM_Sgemm(benchmark::State& state) {
  const OpenBlasAtItsBest threads;
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const std::vector<float> source(m * k, 0.01f), w(n * k, 0.02f);
  std::vector<float> a(m * k), y(m * n);
  for (auto _ : state) {
    std::copy(source.begin(), source.end(), a.begin());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a.data(), k, w.data(), k, 0.0f,
                y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  report_gflops(state, 2.0 * m * k * n);
}

// Forward + backward of the matmul op against the three sgemm calls that compute the same.
void BM_MatmulOpBackward(benchmark::State& state) {
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  Tape tape;
  Parameter w("w", filled(Shape::matrix(n, k), 0.02));
  const Tensor a = filled(Shape::matrix(m, k), 0.01);
  const Tensor seed_grad = filled(Shape::matrix(m, n), 1.0);
  for (auto _ : state) {
    tape.clear();
    Var y = matmul(tape.input(a, true), tape.param(w), Transpose::no, Transpose::yes);
    const Seed seed{y, &seed_grad};
    tape.backward(std::span<const Seed>(&seed, 1));
    benchmark::DoNotOptimize(w.grad().raw());
  }
  report_gflops(state, 6.0 * m * k * n);
}

void BM_SgemmBackward(benchmark::State& state) {
  const OpenBlasAtItsBest threads;
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const std::vector<float> source(m * k, 0.01f), w(n * k, 0.02f), dy(m * n, 1.0f);
  std::vector<float> a(m * k), y(m * n), da(m * k), dw(n * k, 0.0f);
  for (auto _ : state) {
    std::copy(source.begin(), source.end(), a.begin());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a.data(), k, w.data(), k, 0.0f,
                y.data(), n);
    std::fill(da.begin(), da.end(), 0.0f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, n, 1.0f, dy.data(), n, w.data(), k, 1.0f,
                da.data(), k);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, k, m, 1.0f, dy.data(), n, a.data(), k, 1.0f,
                dw.data(), k);
    benchmark::DoNotOptimize(dw.data());
  }
  report_gflops(state, 6.0 * m * k * n);
}

// The per-step recurrent product of the sequence ops, on one core: rows x W_hh^T with W_hh packed once
// outside the loop (once per window in the ops), against OpenBLAS on one core, which packs W_hh every call.
void BM_RecurrentProduct(benchmark::State& state) {
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const std::vector<float> h(m * k, 0.01f), w(n * k, 0.02f);
  std::vector<float> packed(kernels::PackedB<float>::size(k, n)), gates(m * n);
  const kernels::PackedB<float> w_hh(w.data(), k, true, k, n, packed.data());
  for (auto _ : state) {
    kernels::packed_gemm(m, h.data(), k, w_hh, false, gates.data(), n);
    benchmark::DoNotOptimize(gates.data());
  }
  report_gflops(state, 2.0 * m * k * n);
}
void BM_RecurrentProductOpenBlas(benchmark::State& state) {
  const std::int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const std::vector<float> h(m * k, 0.01f), w(n * k, 0.02f);
  std::vector<float> gates(m * n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, h.data(), k, w.data(), k, 0.0f,
                gates.data(), n);
    benchmark::DoNotOptimize(gates.data());
  }
  report_gflops(state, 2.0 * m * k * n);
}
// Half a batch of 32 (one of two threads' rows) and a whole one, LSTM gates at hidden 64, 256, 1024.
void recurrent_shapes(benchmark::internal::Benchmark* b) {
  for (std::int64_t rows : {16, 32})
    for (std::int64_t h : {64, 256, 1024}) b->Args({rows, h, 4 * h});
}
BENCHMARK(BM_RecurrentProduct)->Apply(recurrent_shapes);
BENCHMARK(BM_RecurrentProductOpenBlas)->Apply(recurrent_shapes);

// Batch 32 against the gate matrices of an LSTM at hidden 64, 256 and 1024 (4 * hidden outputs): one step,
// which rewind hands to OpenBLAS; then a window's input projection, embedding 64 -> 4 * hidden, over the 640
// rows of a truncated(20) window and the 32,000 rows of full BPTT at T = 1,000, which go to the packed
// kernel (docs/threads.md).
void gemm_shapes(benchmark::internal::Benchmark* b) {
  for (std::int64_t h : {64, 256, 1024}) b->Args({32, h, 4 * h});
  for (std::int64_t h : {64, 256}) b->Args({640, 64, 4 * h});
  b->Args({32000, 64, 512});
}
BENCHMARK(BM_MatmulOp)->Apply(gemm_shapes);
BENCHMARK(BM_Sgemm)->Apply(gemm_shapes);
BENCHMARK(BM_MatmulOpBackward)->Apply(gemm_shapes);
BENCHMARK(BM_SgemmBackward)->Apply(gemm_shapes);

// What a denormal operand costs this CPU in rewind's own kernels: a product and a sum over 64k floats, each
// product denormal (1e-39 * 0.5) or, for comparison, normal, with denormals flushed (FlushDenormalsGuard, as
// rewind train runs) or kept. Arguments: {denormal operands, flushed}.
void BM_Denormals(benchmark::State& state) {
  const bool denormal = state.range(0) != 0, flushed = state.range(1) != 0;
  const FlushDenormalsGuard mode(flushed);
  Tape tape;
  const Tensor a = filled(Shape::vector(65536), denormal ? 1e-39 : 1e-9),
               half = filled(Shape::vector(65536), 0.5);
  for (auto _ : state) {
    tape.clear();
    NoGradGuard no_grad;
    const Var y = mul(tape.input(a), tape.input(half)) + tape.input(a);
    benchmark::DoNotOptimize(y.values<float>().data());
  }
  state.SetItemsProcessed(state.iterations() * 65536);
}
BENCHMARK(BM_Denormals)->ArgsProduct({{0, 1}, {0, 1}})->ArgNames({"denormal", "flushed"});

// clear() after recording n nodes: O(1), so flat in n. Recording is excluded from the timing (the pause and
// resume add a fixed ~100 ns or so of timer overhead to every figure).
void BM_TapeClear(benchmark::State& state) {
  Tape tape;
  const Tensor x = filled(Shape::vector(4), 1.0);
  for (auto _ : state) {
    state.PauseTiming();
    Var h = tape.input(x, true);
    for (std::int64_t i = 0; i < state.range(0); ++i) h = neg(h);
    state.ResumeTiming();
    tape.clear();
  }
}
// A fixed iteration count: the untimed recording would otherwise run millions of times to fill the timer.
BENCHMARK(BM_TapeClear)->Arg(1)->Arg(1000)->Arg(100000)->Iterations(300);

}  // namespace

BENCHMARK_MAIN();

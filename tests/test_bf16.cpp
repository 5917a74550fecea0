// MatmulPrecision::bf16: products with operands rounded to bfloat16 and f32 sums
// (autodiff/src/bf16_gemm.cpp). On a CPU without AVX512_BF16 only the refusal is tested.
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "../autodiff/src/bf16_gemm.hpp"  // round_to_bf16: the rounding the reference applies
#include "helpers.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/runtime/training.hpp"

using namespace rwd;
using namespace rwd::autodiff;

namespace {

bool have_bf16() {
  if (bf16_unavailable_reason().empty()) return true;
  CHECK_THROWS_WITH(set_matmul_precision(MatmulPrecision::bf16), Catch::Contains("AVX512_BF16"));
  CHECK(matmul_precision() == MatmulPrecision::f32);
  return false;
}

double rounded(float x) {
  return kernels::bf16::bf16_to_float(kernels::bf16::round_to_bf16(x));
}

// Element (i, j) of op(A) op(B), A [m, k] or [k, m], in double: of the bf16-rounded operands, or of the
// operands themselves. Also the sum of the products' magnitudes, which bounds f32 summation's error.
struct Reference {
  double of_rounded = 0, exact = 0, magnitude = 0;
};
Reference reference(const Tensor& a, bool ta, const Tensor& b, bool tb, std::int64_t i, std::int64_t j,
                    std::int64_t k) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const std::int64_t lda = a.shape().cols, ldb = b.shape().cols;
  Reference r;
  for (std::int64_t p = 0; p < k; ++p) {
    const float x = ta ? pa[p * lda + i] : pa[i * lda + p];
    const float y = tb ? pb[j * ldb + p] : pb[p * ldb + j];
    r.of_rounded += rounded(x) * rounded(y);
    r.exact += static_cast<double>(x) * y;
    r.magnitude += std::abs(rounded(x) * rounded(y));
  }
  return r;
}

// Checks every 97th element of c = op(A) op(B) against the reference: within f32 summation's error bound of
// the rounded operands' product (k u sum |products|), and far closer to it than to the unrounded product.
void check_product(const Tensor& c, const Tensor& a, bool ta, const Tensor& b, bool tb, std::int64_t k) {
  double worst_rounded = 0, worst_exact = 0;
  const std::int64_t n = c.shape().cols;
  for (std::int64_t e = 0; e < c.numel(); e += 97) {
    const Reference r = reference(a, ta, b, tb, e / n, e % n, k);
    const double got = c.get(e);
    REQUIRE(std::abs(got - r.of_rounded) <= static_cast<double>(k) * 0x1p-24 * r.magnitude);
    worst_rounded = std::max(worst_rounded, std::abs(got - r.of_rounded));
    worst_exact = std::max(worst_exact, std::abs(got - r.exact));
  }
  CHECK(100 * worst_rounded < worst_exact);
}

}  // namespace

TEST_CASE("round_to_bf16 rounds to nearest, ties to even, flushes denormals and keeps NaN and infinity",
          "[bf16]") {
  using kernels::bf16::round_to_bf16;
  const float ulp = 0x1p-7f;  // of bfloat16 at 1: 7 stored fraction bits
  CHECK(rounded(1.0f) == 1.0);
  CHECK(rounded(1.0f + ulp / 2) == 1.0);                      // a tie, to the even 1
  CHECK(rounded(1.0f + 3 * ulp / 2) == 1.0 + 2 * ulp);        // a tie, to the even 1 + 2 ulp
  CHECK(rounded(1.0f + ulp / 2 + 0x1p-20f) == 1.0 + ulp);     // above the tie: up
  CHECK(rounded(1.0f + ulp / 2 - 0x1p-20f) == 1.0);           // below it: down
  CHECK(rounded(-(1.0f + 3 * ulp / 2)) == -(1.0 + 2 * ulp));  // the sign does not matter
  CHECK(rounded(0x1p-130f) == 0.0);                           // a denormal: zero
  CHECK(std::signbit(rounded(-0x1p-130f)));
  CHECK(rounded(std::numeric_limits<float>::infinity()) == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(rounded(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(rounded(std::bit_cast<float>(0x7f800001u))));  // a NaN whose payload sits in the low bits
  CHECK(round_to_bf16(3.0e38f) == 0x7f62);                        // large finite values round normally
  CHECK(rounded(std::numeric_limits<float>::max()) == std::numeric_limits<double>::infinity());
}

TEST_CASE("bf16 products equal the product of the rounded operands summed in f32", "[bf16][ops]") {
  if (!have_bf16()) return;
  // k over one chunk of 2048 and odd (a padded pair); m and n leave partial tiles and panels. Large enough
  // that gemm takes the bf16 path (kernels.hpp, bf16_min_reuse).
  const bool ta = GENERATE(false, true), tb = GENERATE(false, true);
  constexpr std::int64_t m = 523, n = 517, k = 2101;
  const Tensor a = rwd::test::random_tensor(ta ? Shape::matrix(k, m) : Shape::matrix(m, k), DType::f32, 1);
  const Tensor b = rwd::test::random_tensor(tb ? Shape::matrix(n, k) : Shape::matrix(k, n), DType::f32, 2);
  const MatmulPrecisionGuard bf16(MatmulPrecision::bf16);
  Tape tape(DType::f32);
  const Var c = matmul(tape.input(a), tape.input(b), ta ? Transpose::yes : Transpose::no,
                       tb ? Transpose::yes : Transpose::no);
  check_product(c.value(), a, ta, b, tb, k);
}

TEST_CASE("bf16 gradients of a product are bf16 products too", "[bf16][ops]") {
  if (!have_bf16()) return;
  constexpr std::int64_t m = 520, n = 530, k = 600;
  const Tensor a = rwd::test::random_tensor(Shape::matrix(m, k), DType::f32, 3);
  const Tensor b = rwd::test::random_tensor(Shape::matrix(k, n), DType::f32, 4);
  const Tensor seed = rwd::test::random_tensor(Shape::matrix(m, n), DType::f32, 5);
  const MatmulPrecisionGuard bf16(MatmulPrecision::bf16);
  Tape tape(DType::f32);
  const Var va = tape.input(a, true), vb = tape.input(b, true);
  const Var c = matmul(va, vb);
  const Seed s{c, &seed};
  tape.backward(std::span<const Seed>(&s, 1));
  check_product(tape.grad(va), seed, false, b, true, n);  // dA = dC B^T
  check_product(tape.grad(vb), a, true, seed, false, m);  // dB = A^T dC
}

TEST_CASE("the precision guard restores the precision before it, and f64 products stay f64", "[bf16][ops]") {
  if (!have_bf16()) return;
  {
    const MatmulPrecisionGuard bf16(MatmulPrecision::bf16);
    CHECK(matmul_precision() == MatmulPrecision::bf16);
    const Tensor a = rwd::test::random_tensor(Shape::matrix(300, 300), DType::f64, 6);
    Tape tape(DType::f64);
    const Tensor c = matmul(tape.input(a), tape.input(a)).value();
    for (std::int64_t e = 0; e < c.numel(); e += 331) {
      double sum = 0;
      for (std::int64_t p = 0; p < 300; ++p) sum += a.get(e / 300 * 300 + p) * a.get(p * 300 + e % 300);
      CHECK(c.get(e) == Approx(sum).epsilon(1e-12));
    }
  }
  CHECK(matmul_precision() == MatmulPrecision::f32);
}

TEST_CASE("a short bf16 training run stays within 0.5% of the same run in f32", "[bf16][training]") {
  if (!have_bf16()) return;
  // The LSTM's recurrent products go through bf16 at any size (ops_sequence.cpp, pack_w_hh). The tolerance
  // is stated on the mean loss of the last 20 of 150 updates: delay:3 is learnt in both, from 2.08 nats.
  std::vector<double> mean_loss;
  for (const std::string precision : {"f32", "bf16"}) {
    runtime::RunConfig c;
    c.task = "delay:3", c.task_steps = 3000, c.hidden = 64, c.batch = 16, c.eval_every = 0;
    c.trainer_options["k"] = "20";
    c.precision = precision;
    c.validate();
    plugins::Registry registry;
    registry.load_directory(REWIND_TEST_PLUGIN_DIR);
    runtime::Training training(c, registry, {}, {.max_updates = 150});
    std::vector<double> losses;
    std::vector<MatmulPrecision> seen;
    runtime::TrainingEvents events;
    events.update = [&](const trainers::UpdateReport& r, bool) {
      losses.push_back(r.stats.loss);
      seen.push_back(matmul_precision());
    };
    training.train(events);
    REQUIRE(losses.size() == 150);
    CHECK(seen == std::vector<MatmulPrecision>(150, c.matmul_precision()));
    double sum = 0;
    for (std::size_t u = 130; u < 150; ++u) sum += losses[u];
    mean_loss.push_back(sum / 20);
  }
  CHECK(matmul_precision() == MatmulPrecision::f32);
  CHECK(mean_loss[0] < 1.0);  // learnt
  CHECK(mean_loss[1] != mean_loss[0]);
  CHECK(std::abs(mean_loss[1] - mean_loss[0]) <= 0.005 * mean_loss[0]);
}

TEST_CASE("a run records its precision, runs saved before are f32, and an unknown one is refused",
          "[bf16][training]") {
  runtime::RunConfig c;
  CHECK(c.precision == "f32");
  c.precision = "bf16";
  CHECK(runtime::RunConfig::from_json(c.to_json()).precision == "bf16");
  nlohmann::json j = nlohmann::json::parse(c.to_json());
  j.erase("precision");
  CHECK(runtime::RunConfig::from_json(j.dump()).precision == "f32");
  c.precision = "f16";
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("--precision must be f32 or bf16, got 'f16'"));
  c.precision = "bf16";
  if (!bf16_unavailable_reason().empty())
    CHECK_THROWS_WITH(c.validate(), Catch::Contains("--precision bf16 cannot run here"));
}

// This machine's floating-point peak, measured: independent chains of vector FMAs (AVX2, and AVX-512 where
// the CPU has it) and of bf16 dot products (vdpbf16ps, where it has AVX512_BF16) kept in registers, on one
// thread and on every core at once. Prints one JSON object of GFLOP/s (an FMA lane is 2 flops, a vdpbf16ps
// lane 4); bench/peak.py divides what training achieves by it. Needs no library: what it measures is the
// core.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr long repeats = 20'000'000;  // of a block of 12 FMAs per chain: about a second at one FMA port
constexpr int chains = 12;            // enough independent FMAs to cover the latency of two FMA ports

// Returns flops done. The chains' sum is written through `sink`, so nothing is optimised away.
__attribute__((target("avx2,fma"))) double fma_avx2(float* sink) {
  __m256 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long r = 0; r < repeats; ++r)
    for (int i = 0; i < chains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 sum = acc[0];
  for (int i = 1; i < chains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  *sink = _mm256_cvtss_f32(sum);
  return 2.0 * 8 * chains * static_cast<double>(repeats);
}

// The chains' sum, through memory (GCC 12's _mm512_reduce_add_ps warns under a target attribute).
__attribute__((target("avx512f"))) void store_sum(const __m512 (&acc)[chains], float* sink) {
  float lanes[16];
  float sum = 0;
  for (const __m512& a : acc) {
    _mm512_storeu_ps(lanes, a);
    for (float v : lanes) sum += v;
  }
  *sink = sum;
}

__attribute__((target("avx512f"))) double fma_avx512(float* sink) {
  __m512 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long r = 0; r < repeats; ++r)
    for (int i = 0; i < chains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  store_sum(acc, sink);
  return 2.0 * 16 * chains * static_cast<double>(repeats);
}

// vdpbf16ps: per fp32 lane, two bf16 products added to the accumulator (4 flops).
__attribute__((target("avx512f,avx512bf16"))) double dot_bf16(float* sink) {
  __m512 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (long r = 0; r < repeats; ++r)
    for (int i = 0; i < chains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, a);
  store_sum(acc, sink);
  return 4.0 * 16 * chains * static_cast<double>(repeats);
}

// GFLOP/s of `kernel` on `threads` threads started together (the best of three runs).
double gflops(double (*kernel)(float*), unsigned threads) {
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    std::vector<float> sinks(threads * 16);
    std::vector<double> flops(threads);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back([&, t] { flops[t] = kernel(&sinks[t * 16]); });
    for (std::thread& t : pool) t.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / seconds / 1e9);
  }
  return best;
}

}  // namespace

int main() {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::string out = "{\"threads\": " + std::to_string(cores);
  const auto add = [&](const char* name, double (*kernel)(float*)) {
    char buf[128];
    std::snprintf(buf, sizeof buf, ", \"%s_1\": %.1f, \"%s_all\": %.1f", name, gflops(kernel, 1), name,
                  gflops(kernel, cores));
    out += buf;
  };
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) add("fp32_avx2", fma_avx2);
  if (__builtin_cpu_supports("avx512f")) add("fp32_avx512", fma_avx512);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) add("bf16_avx512", dot_bf16);
  std::printf("%s}\n", out.c_str());
}

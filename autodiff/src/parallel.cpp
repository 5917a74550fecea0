#include "parallel.hpp"

#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace rwd::autodiff::parallel {
namespace {

void pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Waiting spins this long before sleeping: the gaps between the parallel parts of one window are mostly
// shorter, and waking a sleeping thread costs more than the gap.
constexpr auto spin_time = std::chrono::microseconds(100);

// Waits until value != old: spinning for spin_time, then sleeping in atomic::wait. Returns the new value.
template <class V>
V wait_for_change(const std::atomic<V>& value, V old) {
  V now = value.load(std::memory_order_acquire);
  const auto deadline = std::chrono::steady_clock::now() + spin_time;
  for (int i = 1; now == old; ++i) {
    pause();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) break;
    now = value.load(std::memory_order_acquire);
  }
  while (now == old) {
    value.wait(old, std::memory_order_acquire);
    now = value.load(std::memory_order_acquire);
  }
  return now;
}

int configured_threads() {
  if (const char* env = std::getenv("REWIND_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 256) return static_cast<int>(n);
  }
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : static_cast<int>(hardware);
}

thread_local bool inside_part = false;

// Never destroyed (see pool()): its workers sleep until the process ends.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i, ++workers_) std::thread([this, i] { work(i); }).detach();
  }
  int size() const { return workers_ + 1; }

  void run(int parts, void (*body)(void*, int), void* context) {
    body_ = body;
    context_ = context;
    parts_ = parts;
    pending_.store(workers_);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    run_part(0);
    wait_until_zero();
  }

 private:
  void run_part(int part) {
    inside_part = true;
    body_(context_, part);
    inside_part = false;
  }

  void work(int index) {
    std::uint64_t seen = 0;
    while (true) {
      seen = wait_for_change(generation_, seen);
      if (index < parts_) run_part(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  void wait_until_zero() {
    for (int left = pending_.load(std::memory_order_acquire); left != 0;)
      left = wait_for_change(pending_, left);
  }

  int workers_ = 0;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  void (*body_)(void*, int) = nullptr;
  void* context_ = nullptr;
  int parts_ = 0;
};

// One caller at a time uses the workers; another thread that calls meanwhile runs its parts itself.
std::mutex pool_mutex;

// A child made by fork() has none of its parent's threads: it runs every part itself instead of waiting
// for workers that do not exist.
std::atomic<bool> forked_child{false};

// Created on first use and never destroyed: exit() then neither waits for workers nor races a static
// destructor against code still running parts, and a forked child never joins threads it does not have.
Pool& pool() {
  static Pool* const instance = [] {
    pthread_atfork(nullptr, nullptr, [] { forked_child.store(true); });
    return new Pool(threads());
  }();
  return *instance;
}

// OpenBLAS must not run its own threads beside ours (see the header). Its pthreads build starts them when it
// loads, and they spin in sched_yield for about 2^28 cycles (~0.1 s) before sleeping: long enough to halve
// the speed of a short run. Single-threaded OpenBLAS never wakes them, so they are shut down at once
// (blas_thread_shutdown_ is exported by that build; looked up, so other builds skip it). OpenBLAS starts
// them again by itself if someone asks it for more threads later.
void make_blas_single_threaded() {
  openblas_set_num_threads(1);
  if (auto* shutdown = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"))) shutdown();
}
[[maybe_unused]] const bool blas_single_threaded = (make_blas_single_threaded(), true);

}  // namespace

int threads() {
  static const int n = configured_threads();
  return n;
}

int parts_for(std::int64_t items, std::int64_t min_items) {
  if (inside_part || threads() == 1) return 1;
  const std::int64_t most = min_items > 0 ? items / min_items : items;
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(most, threads())));
}

void run_parts(int parts, void (*body)(void*, int), void* context) {
  auto run_here = [&] {
    for (int part = 0; part < parts; ++part) body(context, part);
  };
  if (inside_part || forked_child.load() || parts > pool().size()) return run_here();
  std::unique_lock lock(pool_mutex, std::try_to_lock);
  if (!lock.owns_lock()) return run_here();
  pool().run(parts, body, context);
}

}  // namespace rwd::autodiff::parallel

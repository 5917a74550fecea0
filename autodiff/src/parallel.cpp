#include "parallel.hpp"

#include "rewind/autodiff/parallel.hpp"

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
//
// Parts are claimed, not assigned: the caller runs part 0, then every thread, the caller included, takes the
// next unclaimed part until none is left. A worker the scheduler has not run yet (more busy threads than
// cores: another process, MPI ranks, a build) does not hold its part hostage for a time slice; the caller
// runs it. The claim word holds the generation beside the next part, so a worker that wakes late cannot
// claim a part of a generation it did not see; the caller returns only when every part of its generation is
// done, so body_, context_ and parts_ stay as they were for whoever claimed a part of it.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i, ++workers_) std::thread([this] { work(); }).detach();
  }
  int size() const { return workers_ + 1; }

  void run(int parts, void (*body)(void*, int), void* context) {
    body_ = body;
    context_ = context;
    mode_ = float_mode();
    done_.store(0, std::memory_order_relaxed);
    const std::uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
    claim_.store(generation << 32 | static_cast<std::uint64_t>(parts) << 16 | 1,  // part 0 is the caller's
                 std::memory_order_release);
    generation_.store(generation, std::memory_order_release);
    generation_.notify_all();
    run_part(0);
    finished_one(parts);
    work_on(generation);
    for (int done = done_.load(std::memory_order_acquire); done != parts;)
      done = wait_for_change(done_, done);
  }

 private:
  void run_part(int part) {
    if (float_mode() != mode_) set_float_mode(mode_);  // a worker takes the caller's (flushing denormals)
    inside_part = true;
    body_(context_, part);
    inside_part = false;
  }
  // The part count comes from the claim, never from a member the next run() may already be rewriting.
  void finished_one(int parts) {
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == parts) done_.notify_one();
  }

  // Claims and runs parts of `generation` until none is left (or a newer generation began).
  void work_on(std::uint64_t generation) {
    std::uint64_t claim = claim_.load(std::memory_order_acquire);
    while ((claim >> 32) == (generation & 0xffffffffu)) {
      const auto parts = static_cast<int>((claim >> 16) & 0xffffu), part = static_cast<int>(claim & 0xffffu);
      if (part >= parts) return;
      if (claim_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        run_part(part);
        finished_one(parts);
        claim = claim_.load(std::memory_order_acquire);
      }
    }
  }

  void work() {
    std::uint64_t seen = 0;
    while (true) {
      seen = wait_for_change(generation_, seen);
      work_on(seen);
    }
  }

  int workers_ = 0;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> claim_{0};  // generation << 32 | parts << 16 | the next unclaimed part
  std::atomic<int> done_{0};             // parts of the current generation finished
  void (*body_)(void*, int) = nullptr;
  void* context_ = nullptr;
  unsigned mode_ = 0;  // the caller's float_mode()
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

unsigned float_mode() {
#if defined(__x86_64__) || defined(__i386__)
  return _mm_getcsr();
#else
  return 0;
#endif
}

void set_float_mode([[maybe_unused]] unsigned mode) {
#if defined(__x86_64__) || defined(__i386__)
  _mm_setcsr(mode);
#endif
}

}  // namespace rwd::autodiff::parallel

namespace rwd::autodiff {

void parallel_for(std::int64_t items, std::int64_t min_items,
                  const std::function<void(std::int64_t, std::int64_t)>& body) {
  const int parts = parallel::parts_for(items, min_items);
  parallel::run(parts, [&](int part) {
    const auto [begin, end] = parallel::range(items, part, parts);
    body(begin, end);
  });
}

}  // namespace rwd::autodiff

#include "distributed.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#ifdef REWIND_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: the deprecated C++ bindings need a library not linked here
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace rwd::cli {
namespace {
int world_rank = 0, world_size = 1;
World::Traffic traffic_so_far;

// Every rank's values of one small record, in rank order.
std::vector<double> gather_all(const std::vector<double>& local) {
  std::vector<double> all(local.size() * static_cast<std::size_t>(world_size));
#ifdef REWIND_WITH_MPI
  MPI_Allgather(local.data(), static_cast<int>(local.size()), MPI_DOUBLE, all.data(),
                static_cast<int>(local.size()), MPI_DOUBLE, MPI_COMM_WORLD);
#else
  all = local;
#endif
  return all;
}
}  // namespace

void World::init(int& argc, char**& argv) {
#ifdef REWIND_WITH_MPI
  // Only under a launcher: a plain `rewind train` must not become an MPI singleton (slow, and it may print).
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE")) return;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (!std::getenv("REWIND_NUM_THREADS"))
    if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) {
      const int ranks_here = std::max(1, std::atoi(local));
      const int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ranks_here);
      setenv("REWIND_NUM_THREADS", std::to_string(threads).c_str(), 0);
    }
#else
  (void)argc, (void)argv;
#endif
}

void World::finalize() {
#ifdef REWIND_WITH_MPI
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised) MPI_Finalize();
#endif
}

int World::rank() {
  return world_rank;
}
int World::size() {
  return world_size;
}

std::pair<std::int64_t, std::int64_t> World::share(std::int64_t batch, const std::string& what) {
  if (batch % world_size != 0)
    throw std::invalid_argument(what + " " + std::to_string(batch) + " cannot be shared evenly by " +
                                std::to_string(world_size) + " ranks: give a multiple of " +
                                std::to_string(world_size));
  const std::int64_t per_rank = batch / world_size;
  return {world_rank * per_rank, (world_rank + 1) * per_rank};
}

World::Traffic World::traffic() {
  return traffic_so_far;
}

void World::reduce(const std::vector<autodiff::Parameter*>& params, trainers::UpdateStats& stats) {
  if (world_size == 1) return;
  const auto began = std::chrono::steady_clock::now();
  ++traffic_so_far.exchanges;
  traffic_so_far.bytes += 3 * static_cast<std::int64_t>(sizeof(double));
  const std::vector<double> all =
      gather_all({stats.loss * static_cast<double>(stats.loss_count), static_cast<double>(stats.loss_count),
                  static_cast<double>(stats.correct)});
  double loss_sum = 0, count = 0, correct = 0;
  std::vector<double> weight(static_cast<std::size_t>(world_size));
  for (int r = 0; r < world_size; ++r) {
    const std::size_t at = 3 * static_cast<std::size_t>(r);
    loss_sum += all[at], count += all[at + 1], correct += all[at + 2];
    weight[static_cast<std::size_t>(r)] = all[at + 1];
  }
  stats.loss = count > 0 ? loss_sum / count : 0;
  stats.loss_count = static_cast<std::int64_t>(count);
  stats.correct = static_cast<std::int64_t>(correct);
  if (count == 0) {  // no counted target anywhere: no update (the loop skips it)
    traffic_so_far.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    return;
  }
  for (double& w : weight) w /= count;
#ifdef REWIND_WITH_MPI
  // One message: every gradient, packed. Each rank sums the R copies in rank order itself, so the result does
  // not depend on MPI's reduction algorithm and is the same bits on every rank and in every run.
  std::int64_t elements = 0;
  for (const autodiff::Parameter* p : params) elements += p->grad().numel();
  const bool f32 = params.empty() || params[0]->grad().dtype() == autodiff::DType::f32;
  const std::size_t width = f32 ? sizeof(float) : sizeof(double);
  static thread_local std::vector<char> mine, everyone;
  mine.resize(static_cast<std::size_t>(elements) * width);
  everyone.resize(mine.size() * static_cast<std::size_t>(world_size));
  std::size_t offset = 0;
  for (const autodiff::Parameter* p : params) {
    std::memcpy(mine.data() + offset, p->grad().raw(), p->grad().bytes());
    offset += static_cast<std::size_t>(p->grad().bytes());
  }
  MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, everyone.data(),
                static_cast<int>(mine.size()), MPI_BYTE, MPI_COMM_WORLD);
  traffic_so_far.bytes += static_cast<std::int64_t>(mine.size());
  auto sum = [&]<class T>(T*) {
    const T* parts = reinterpret_cast<const T*>(everyone.data());
    std::int64_t at = 0;
    for (autodiff::Parameter* p : params) {
      T* g = p->grad().template data<T>();
      for (std::int64_t i = 0; i < p->grad().numel(); ++i, ++at) {
        T total = 0;
        for (int r = 0; r < world_size; ++r)
          total += static_cast<T>(weight[static_cast<std::size_t>(r)]) * parts[r * elements + at];
        g[i] = total;
      }
    }
  };
  if (f32)
    sum(static_cast<float*>(nullptr));
  else
    sum(static_cast<double*>(nullptr));
#else
  (void)params;
#endif
  traffic_so_far.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
}

bool World::any(bool local) {
  if (world_size == 1) return local;
  for (double v : gather_all({local ? 1.0 : 0.0}))
    if (v != 0) return true;
  return false;
}

trainers::Evaluation World::combine(const trainers::Evaluation& local) {
  if (world_size == 1) return local;
  const std::vector<double> all =
      gather_all({local.loss * static_cast<double>(local.count), static_cast<double>(local.count),
                  static_cast<double>(local.correct)});
  double loss_sum = 0, count = 0, correct = 0;
  for (std::size_t at = 0; at < all.size(); at += 3)
    loss_sum += all[at], count += all[at + 1], correct += all[at + 2];
  return {count > 0 ? loss_sum / count : 0, static_cast<std::int64_t>(count),
          static_cast<std::int64_t>(correct)};
}

std::vector<autodiff::Tensor> World::gather_rows(const std::vector<autodiff::Tensor>& local) {
  std::vector<autodiff::Tensor> all;
  if (world_size == 1) return all;
#ifdef REWIND_WITH_MPI
  for (const autodiff::Tensor& t : local) {  // every rank's share has the same shape
    autodiff::Tensor whole;
    if (world_rank == 0)
      whole =
          autodiff::Tensor(autodiff::Shape::matrix(t.shape().rows * world_size, t.shape().cols), t.dtype());
    MPI_Gather(t.raw(), static_cast<int>(t.bytes()), MPI_BYTE, world_rank == 0 ? whole.raw() : nullptr,
               static_cast<int>(t.bytes()), MPI_BYTE, 0, MPI_COMM_WORLD);
    if (world_rank == 0) all.push_back(std::move(whole));
  }
#else
  (void)local;
#endif
  return all;
}

void World::abort() {
#ifdef REWIND_WITH_MPI
  if (world_size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  std::exit(1);
}

}  // namespace rwd::cli

#include "rewind/runtime/world.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#ifdef REWIND_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: the deprecated C++ bindings need a library not linked here
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace rwd::runtime {
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
#ifdef REWIND_WITH_MPI
template <class T>
MPI_Datatype mpi_type() {
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

// Every rank's gradients, each scaled by its rank's weight, summed, and the sum written back into every
// rank's gradients: a ring allreduce written out, so that the order of the additions is fixed. The packed
// gradients are cut into R chunks; in R - 1 steps each rank passes a partial sum of one chunk to the next
// rank, which adds its own share, so chunk c is summed as ((g_c + g_c+1) + g_c+2) + ... in rank order from
// c around the ring, on whichever machine and MPI. Then the complete chunks are gathered everywhere. Each
// rank sends 2 (R - 1) / R of the gradient bytes: what an allreduce costs at best, and what
// bench/scaling_model.py assumes.
template <class T>
void ring_allreduce(const std::vector<autodiff::Parameter*>& params, double weight) {
  std::int64_t elements = 0;
  for (const autodiff::Parameter* p : params) elements += p->grad().numel();
  static thread_local std::vector<T> mine, incoming;
  mine.resize(static_cast<std::size_t>(elements));
  std::int64_t at = 0;
  for (const autodiff::Parameter* p : params) {
    const T* g = p->grad().template data<T>();
    for (std::int64_t i = 0; i < p->grad().numel(); ++i)
      mine[static_cast<std::size_t>(at++)] = static_cast<T>(weight) * g[i];
  }
  const int R = world_size, next = (world_rank + 1) % R, previous = (world_rank + R - 1) % R;
  std::vector<int> first(static_cast<std::size_t>(R) + 1), count(static_cast<std::size_t>(R));
  for (int c = 0; c <= R; ++c) first[static_cast<std::size_t>(c)] = static_cast<int>(elements * c / R);
  for (int c = 0; c < R; ++c)
    count[static_cast<std::size_t>(c)] =
        first[static_cast<std::size_t>(c) + 1] - first[static_cast<std::size_t>(c)];
  incoming.resize(static_cast<std::size_t>(elements / R + 1));
  for (int step = 0; step < R - 1; ++step) {
    const auto send = static_cast<std::size_t>((world_rank - step + R) % R);
    const auto receive = static_cast<std::size_t>((world_rank - step - 1 + 2 * R) % R);
    MPI_Sendrecv(mine.data() + first[send], count[send], mpi_type<T>(), next, step, incoming.data(),
                 count[receive], mpi_type<T>(), previous, step, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    T* partial = mine.data() + first[receive];
    for (int i = 0; i < count[receive]; ++i) partial[i] = incoming[static_cast<std::size_t>(i)] + partial[i];
    traffic_so_far.bytes += static_cast<std::int64_t>(count[send]) * static_cast<std::int64_t>(sizeof(T));
  }
  // Rank r now holds chunk r + 1 complete; every rank receives every complete chunk in place.
  std::vector<int> owned_count(static_cast<std::size_t>(R)), owned_first(static_cast<std::size_t>(R));
  for (int r = 0; r < R; ++r) {
    owned_count[static_cast<std::size_t>(r)] = count[static_cast<std::size_t>((r + 1) % R)];
    owned_first[static_cast<std::size_t>(r)] = first[static_cast<std::size_t>((r + 1) % R)];
  }
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, mine.data(), owned_count.data(), owned_first.data(),
                 mpi_type<T>(), MPI_COMM_WORLD);
  traffic_so_far.bytes += static_cast<std::int64_t>(owned_count[static_cast<std::size_t>(world_rank)]) *
                          static_cast<std::int64_t>(sizeof(T)) * (R - 1);
  at = 0;
  for (autodiff::Parameter* p : params) {
    T* g = p->grad().template data<T>();
    for (std::int64_t i = 0; i < p->grad().numel(); ++i) g[i] = mine[static_cast<std::size_t>(at++)];
  }
}
#endif
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
  traffic_so_far.bytes += 4 * static_cast<std::int64_t>(sizeof(double));
  const double normalizer = stats.loss_count > 0 ? stats.gradient_normalizer() : 0.0;
  const std::vector<double> all =
      gather_all({stats.loss * static_cast<double>(stats.loss_count), static_cast<double>(stats.loss_count),
                  static_cast<double>(stats.correct), normalizer});
  double loss_sum = 0, count = 0, correct = 0, normalizers = 0;
  std::vector<double> weight(static_cast<std::size_t>(world_size));
  for (int r = 0; r < world_size; ++r) {
    const std::size_t at = 4 * static_cast<std::size_t>(r);
    loss_sum += all[at], count += all[at + 1], correct += all[at + 2], normalizers += all[at + 3];
    weight[static_cast<std::size_t>(r)] = all[at + 3];
  }
  stats.loss = count > 0 ? loss_sum / count : 0;
  stats.loss_count = static_cast<std::int64_t>(count);
  stats.correct = static_cast<std::int64_t>(correct);
  stats.normalizer = normalizers;
  if (count == 0) {  // no counted target anywhere: no update (the loop skips it)
    traffic_so_far.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    return;
  }
  for (double& w : weight) w /= normalizers;
#ifdef REWIND_WITH_MPI
  const bool f32 = params.empty() || params[0]->grad().dtype() == autodiff::DType::f32;
  if (f32)
    ring_allreduce<float>(params, weight[static_cast<std::size_t>(world_rank)]);
  else
    ring_allreduce<double>(params, weight[static_cast<std::size_t>(world_rank)]);
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

}  // namespace rwd::runtime

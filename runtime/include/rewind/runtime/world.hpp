// Data-parallel training over MPI (docs/scale.md). Under `mpirun -np R` each process (rank) trains streams
// [r B / R, (r + 1) B / R) of the same global layout; after each update's backward the gradients of all ranks
// are combined into the global one, identical everywhere, so every rank takes the same optimizer step.
// Without MPI, or outside mpirun, the world is this one process and every call here is the identity.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rewind/runtime/export.hpp"
#include "rewind/trainers/evaluate.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::runtime {

class REWIND_RUNTIME_EXPORT World {
 public:
  // Joins the MPI job when launched by mpirun (MPI_Init); a world of one otherwise. Before any thread starts:
  // it also divides the cores among the ranks of a node when REWIND_NUM_THREADS is not set.
  static void init(int& argc, char**& argv);
  static void finalize();
  static int rank();
  static int size();
  static bool distributed() { return size() > 1; }

  // This rank's streams of `batch`; refuses a batch the ranks cannot share evenly, naming both.
  static std::pair<std::int64_t, std::int64_t> share(std::int64_t batch, const std::string& what);
  // The global gradient from every rank's (each the mean over its counted targets): sum_r n_r g_r / sum_r
  // n_r, by a ring allreduce whose additions come in a fixed order, so that repeated runs are bitwise
  // identical; the stats become the global ones.
  static void reduce(const std::vector<autodiff::Parameter*>& params, trainers::UpdateStats& stats);
  // What the gradient exchange of reduce() cost this rank so far: bytes sent (its packed gradients and
  // counts) and wall time inside the collectives, over `exchanges` updates.
  struct Traffic {
    std::int64_t exchanges = 0, bytes = 0;
    double seconds = 0;
  };
  static Traffic traffic();
  // Whether any rank wants to stop (a limit, a signal): every rank stops at the same update.
  static bool any(bool local);
  // The evaluation of all ranks' shares of the validation streams.
  static trainers::Evaluation combine(const trainers::Evaluation& local);
  // Rank 0 receives every rank's rows of these [rows, cols] tensors, stacked in rank order (the stored state
  // of all streams, for a checkpoint); other ranks and a world of one receive nothing.
  static std::vector<autodiff::Tensor> gather_rows(const std::vector<autodiff::Tensor>& local);
  // Ends every rank after this one printed why (a failing rank must not leave the others waiting).
  [[noreturn]] static void abort();
};

}  // namespace rwd::runtime

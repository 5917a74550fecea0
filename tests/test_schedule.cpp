// Checkpoint plans against an exhaustive search: for every T <= 12 and every budget, the dynamic programme's
// plan runs as few steps as the cheapest sequence of single actions (advance one step, keep, drop, pick up a
// kept state, reverse from the state in hand) that a shortest-path search over all memory states finds.
#include <catch2/catch.hpp>
#include <functional>
#include <queue>

#include "rewind/trainers/schedule.hpp"

using namespace rwd::trainers;

namespace {

// Least steps run to reverse all T steps within `budget`, over every schedule of single actions. A search
// state is (the state in hand: none or a step, the kept steps as a bit set, where the gradient has reached).
std::int64_t exhaustive_optimum(std::int64_t T, const CheckpointCosts& c, std::int64_t budget) {
  const std::int64_t none = T, hands = T + 1, masks = std::int64_t{1} << T;
  auto index = [&](std::int64_t hand, std::int64_t kept, std::int64_t frontier) {
    return (frontier * masks + kept) * hands + hand;
  };
  std::vector<std::int64_t> best(static_cast<std::size_t>((T + 1) * masks * hands),
                                 std::numeric_limits<std::int64_t>::max());
  using Entry = std::pair<std::int64_t, std::int64_t>;  // steps run, search state
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;
  auto reach = [&](std::int64_t hand, std::int64_t kept, std::int64_t frontier, std::int64_t cost) {
    auto& b = best[static_cast<std::size_t>(index(hand, kept, frontier))];
    if (cost < b) {
      b = cost;
      queue.push({cost, index(hand, kept, frontier)});
    }
  };
  // States held: the kept ones besides S_0, and the one in hand if it is neither.
  auto held = [&](std::int64_t hand, std::int64_t kept) {
    const bool loose = hand != none && hand != 0 && !(kept >> hand & 1);
    return static_cast<std::int64_t>(__builtin_popcountll(static_cast<unsigned long long>(kept))) + loose;
  };
  reach(none, 0, T, 0);
  while (!queue.empty()) {
    const auto [cost, at] = queue.top();
    queue.pop();
    if (cost != best[static_cast<std::size_t>(at)]) continue;
    const std::int64_t hand = at % hands, kept = at / hands % masks, frontier = at / hands / masks;
    if (frontier == 0) return cost;
    for (std::int64_t p = 0; p < T; ++p)  // pick up S_0 or a kept state, letting go of the one in hand
      if (p == 0 || (kept >> p & 1)) reach(p, kept, frontier, cost);
    for (std::int64_t p = 1; p < T; ++p)  // drop a kept state that is not in hand
      if ((kept >> p & 1) && p != hand) reach(hand, kept & ~(std::int64_t{1} << p), frontier, cost);
    if (hand == none) continue;
    if (hand > 0) reach(hand, kept | std::int64_t{1} << hand, frontier, cost);  // keep it
    // Advance one step: the new state and the kept ones are held beside one step of an advance's tape.
    const std::int64_t next = hand + 1;
    if (next < frontier && (held(none, kept) + !(kept >> next & 1)) * c.state_bytes + c.advance_fixed_bytes +
                                   c.advance_step_bytes <=
                               budget)
      reach(next, kept, frontier, cost + 1);
    // Reverse from the state in hand up to the gradient; all of it from S_0 is full BPTT's window.
    const std::int64_t tape =
        hand == 0 && frontier == T ? full_tape_bytes(T, c) : c.fixed_bytes + (frontier - hand) * c.step_bytes;
    if (hand < frontier && held(hand, kept) * c.state_bytes + tape <= budget)
      reach(hand, kept, hand, cost + frontier - hand);
  }
  return -1;
}

}  // namespace

TEST_CASE(
    "the optimal checkpoint plan runs as few steps as an exhaustive search, for T <= 12 and every budget",
    "[schedule]") {
  struct Case {
    CheckpointCosts costs;
    std::int64_t longest;
  };
  const Case cases[] = {
      {{.state_bytes = 1, .fixed_bytes = 0, .step_bytes = 1}, 12},  // a state weighs a step's tape
      {{.state_bytes = 1,
        .fixed_bytes = 1,
        .step_bytes = 3,
        .advance_fixed_bytes = 1,
        .advance_step_bytes = 1},
       10},
      {{.state_bytes = 3, .fixed_bytes = 0, .step_bytes = 1}, 10},  // states dearer than steps
      {{.state_bytes = 0, .fixed_bytes = 2, .step_bytes = 1}, 10},  // states for free
      // Full BPTT's window dearer than a reversal of all the steps (a budget between the two must split),
      // and cheaper.
      {{.state_bytes = 1, .fixed_bytes = 1, .step_bytes = 2, .full_fixed_bytes = 4, .full_step_bytes = 2},
       10},
      {{.state_bytes = 1, .fixed_bytes = 3, .step_bytes = 2, .full_fixed_bytes = 0, .full_step_bytes = 2},
       10},
  };
  for (const Case& c : cases)
    for (std::int64_t T = 1; T <= c.longest; ++T) {
      const std::int64_t least = minimum_budget(T, c.costs);
      const std::int64_t most =
          std::max(c.costs.fixed_bytes + T * c.costs.step_bytes, full_tape_bytes(T, c.costs)) + 1;
      for (std::int64_t budget = least; budget <= most; ++budget) {
        INFO("T = " << T << ", budget " << budget << ", state " << c.costs.state_bytes << ", step "
                    << c.costs.step_bytes);
        const CheckpointPlan plan = optimal_checkpoints(T, c.costs, budget);
        CHECK(plan.granularity == 1);
        CHECK(plan.forward_steps == exhaustive_optimum(T, c.costs, budget));
        CHECK(plan.peak_bytes <= budget);
      }
      CHECK(exhaustive_optimum(T, c.costs, least - 1) == -1);  // the least budget is the least
      CHECK_THROWS_WITH(optimal_checkpoints(T, c.costs, least - 1),
                        Catch::Contains("below the minimum of " + std::to_string(least) + " bytes"));
    }
}

TEST_CASE("checkpoint plans: the ends of the curve, uniform plans and long sequences", "[schedule]") {
  const CheckpointCosts costs{.state_bytes = 10,
                              .fixed_bytes = 50,
                              .step_bytes = 30,
                              .advance_fixed_bytes = 20,
                              .advance_step_bytes = 5};
  // Room for the whole tape: full BPTT. The least room: the state before each step recomputed from S_0.
  CHECK(optimal_checkpoints(100, costs, 50 + 100 * 30).forward_steps == 100);
  const CheckpointPlan tight = optimal_checkpoints(100, costs, minimum_budget(100, costs));
  CHECK(tight.forward_steps == 100 * 101 / 2);
  CHECK(tight.longest_reversal == 1);

  // One level of segments, as Chen et al.: every step twice but the last segment's.
  const CheckpointPlan uniform = uniform_checkpoints(100, 10, costs);
  CHECK(uniform.forward_steps == 190);
  CHECK(uniform.max_kept == 9);
  CHECK(uniform.peak_bytes == 9 * 10 + 50 + 10 * 30);
  // With the same memory the optimum recomputes no more.
  CHECK(optimal_checkpoints(100, costs, uniform.peak_bytes).forward_steps <= 190);

  // Cost falls as the budget grows.
  std::int64_t previous = std::numeric_limits<std::int64_t>::max();
  for (std::int64_t budget = minimum_budget(300, costs); budget <= 50 + 300 * 30; budget += 211) {
    const CheckpointPlan plan = optimal_checkpoints(300, costs, budget);
    CHECK(plan.forward_steps <= previous);
    CHECK(plan.peak_bytes <= budget);
    previous = plan.forward_steps;
  }

  // Too long for the programme over single steps: states on a grid, still valid and within the budget.
  const CheckpointPlan coarse = optimal_checkpoints(20000, costs, 50 + 1000 * 30);
  CHECK(coarse.granularity > 1);
  CHECK(coarse.peak_bytes <= 50 + 1000 * 30);
  CHECK(coarse.forward_steps < 2 * 20000);
}

TEST_CASE("account() refuses plans that are not a reversal of every step", "[schedule]") {
  using Kind = CheckpointAction::Kind;
  const CheckpointCosts costs;
  CheckpointPlan plan;
  plan.steps = 4;
  plan.actions = {{.kind = Kind::reverse, .from = 2, .to = 4}};
  CHECK_THROWS_WITH(account(plan, costs), Catch::Contains("reverse [2, 4) starts from a state not kept"));
  plan.actions = {{.kind = Kind::reverse, .from = 0, .to = 3}};
  CHECK_THROWS_WITH(account(plan, costs), Catch::Contains("does not end where the gradient is (step 4)"));
  plan.actions = {{.kind = Kind::advance, .from = 0, .to = 2, .chunk = 2},
                  {.kind = Kind::reverse, .from = 2, .to = 4}};
  CHECK_THROWS_WITH(account(plan, costs), Catch::Contains("steps before 2 are never reversed"));
  plan.actions.push_back({.kind = Kind::reverse, .from = 0, .to = 2});
  CHECK_THROWS_WITH(account(plan, costs), Catch::Contains("S_2 is never dropped"));
  plan.actions.push_back({.kind = Kind::drop, .from = 2});
  CHECK_NOTHROW(account(plan, costs));
  CHECK(plan.forward_steps == 6);
}

TEST_CASE("parse_bytes reads sizes with units", "[schedule]") {
  CHECK(parse_bytes("123") == 123);
  CHECK(parse_bytes("50MiB") == 50 * 1048576);
  CHECK(parse_bytes("1.5 GiB") == 1610612736);
  CHECK(parse_bytes("500kB") == 500000);
  CHECK(parse_bytes("2M") == 2097152);
  for (const char* bad : {"", "MiB", "-5", "12 parsecs", "1e30"})
    CHECK_THROWS_WITH(parse_bytes(bad), Catch::Contains("is not a size in bytes"));
}

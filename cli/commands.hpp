// The rewind executable's subcommands. Each takes the arguments after its name and returns an exit code.
#pragma once

namespace rwd::cli {

int run_demo(int argc, const char* const* argv);
int run_plugins(int argc, const char* const* argv);
int run_gradcheck(int argc, const char* const* argv);
int run_graph(int argc, const char* const* argv);
int run_train(int argc, const char* const* argv);
int run_sample(int argc, const char* const* argv);
int run_eval(int argc, const char* const* argv);
int run_predict(int argc, const char* const* argv);
int run_online(int argc, const char* const* argv);
int run_bench_memory(int argc, const char* const* argv);
int run_plan(int argc, const char* const* argv);
int run_plot(int argc, const char* const* argv);
int run_tokenize(int argc, const char* const* argv);
int run_analyze(int argc, const char* const* argv);

}  // namespace rwd::cli

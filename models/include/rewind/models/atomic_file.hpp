// Files that are either the old version or the new one, never torn: checkpoints, models, token files.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "rewind/models/export.hpp"

namespace rwd::models {

// Writes `file` through a temporary beside it (FILE.tmp.PID; stale ones of dead processes are removed), then
// fsync, rename and fsync of the directory, so a crash or kill -9 leaves the old file or the complete new
// one. `write` fills the temporary; whatever it throws propagates after the temporary is removed. Failures of
// the steps here are std::runtime_error "WHAT 'FILE': ..." (`what` names the kind of file).
REWIND_MODELS_EXPORT void write_file_atomically(const std::filesystem::path& file,
                                                const std::function<void(std::FILE*)>& write,
                                                const std::string& what);

}  // namespace rwd::models

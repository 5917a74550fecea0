// Files the commands write (tables, JSON, gnuplot scripts and plots), each atomically: a temporary file
// beside the target, renamed into place, so an interrupted command leaves the old file or the new one, never
// half.
#pragma once

#include <string>

namespace rwd::cli {

// Writes text to path through path.tmp and a rename; errors name the path and the option it came from.
void write_text_file(const std::string& path, const std::string& text, const std::string& option);

// Renders a gnuplot script (without terminal and output: they are added) to a PNG of size "W,H". The script
// is kept beside it as PNG.gp; the PNG goes to a temporary file renamed into place. Returns false (after
// saying so) when gnuplot is not installed.
bool render_gnuplot(const std::string& png, const std::string& size, const std::string& script);

}  // namespace rwd::cli

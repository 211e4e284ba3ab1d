// The subcommands of the `switchyard` binary. Each registers its flags on a CLI11 app and
// returns the process exit code when run.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace sy {

struct Command {
  CLI::App* app;             // the parsed subcommand
  std::function<int()> run;  // runs it; returns the exit code
};

Command AddGenerateCommand(CLI::App& app);
Command AddMakeModelCommand(CLI::App& app);
Command AddServeCommand(CLI::App& app);
Command AddBenchCommand(CLI::App& app);
Command AddPlanCommand(CLI::App& app);

}  // namespace sy

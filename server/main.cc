// switchyard: one binary, one subcommand per job (serve, generate, make-model, bench, plan).
#include <CLI/CLI.hpp>
#include <vector>

#include "server/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Switchyard: an inference server for Mixture-of-Experts language models"};
  app.require_subcommand(1);
  const std::vector<sy::Command> commands = {sy::AddServeCommand(app), sy::AddGenerateCommand(app),
                                             sy::AddMakeModelCommand(app), sy::AddBenchCommand(app),
                                             sy::AddPlanCommand(app)};
  CLI11_PARSE(app, argc, argv);
  for (const sy::Command& c : commands) {
    if (c.app->parsed()) return c.run();
  }
  return 1;
}

#include "engine/dist/rank_launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "engine/dist/socket_io.h"

extern char** environ;

namespace sy {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(5);

// The parent's environment minus our rank variables, plus this child's.
std::vector<std::string> ChildEnvironment(int rank, const RankLauncher::Options& options) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    if (variable.starts_with("SWITCHYARD_RANK=") ||
        variable.starts_with("SWITCHYARD_WORLD_SIZE=") ||
        variable.starts_with("SWITCHYARD_LEADER_ADDR=")) {
      continue;
    }
    env.emplace_back(variable);
  }
  env.push_back("SWITCHYARD_RANK=" + std::to_string(rank));
  env.push_back("SWITCHYARD_WORLD_SIZE=" + std::to_string(options.world_size));
  env.push_back("SWITCHYARD_LEADER_ADDR=" + JoinHostPort(options.leader_host, options.leader_port));
  return env;
}

// A null-terminated char* array over `strings` (which must outlive it), for execve.
std::vector<char*> CArray(std::vector<std::string>& strings) {
  std::vector<char*> array;
  for (std::string& s : strings) array.push_back(s.data());
  array.push_back(nullptr);
  return array;
}

// fork + execve rather than posix_spawn: the child must set PR_SET_PDEATHSIG before exec, which
// posix_spawn has no hook for. Everything is allocated before fork; the child only makes
// async-signal-safe system calls.
StatusOr<pid_t> SpawnChild(const std::string& executable, std::vector<std::string> argv,
                           std::vector<std::string> env) {
  std::vector<char*> c_argv = CArray(argv);
  std::vector<char*> c_env = CArray(env);
  sigset_t no_signals;
  sigemptyset(&no_signals);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return Status::ResourceExhausted("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    // The leader may block signals for its own handling thread; the child starts clean so that
    // Terminate() reaches it.
    sigprocmask(SIG_SETMASK, &no_signals, nullptr);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
    execve(executable.c_str(), c_argv.data(), c_env.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

std::string RankExit::Describe() const {
  if (signal != 0) {
    return "rank " + std::to_string(rank) + " was killed by signal " + std::to_string(signal) +
           " (" + strsignal(signal) + ")";
  }
  return "rank " + std::to_string(rank) + " exited with code " + std::to_string(exit_code);
}

StatusOr<std::vector<std::string>> CurrentCommandLine() {
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  if (!file) return Status::NotFound("cannot read /proc/self/cmdline");
  const std::string raw((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  while (start < raw.size()) {
    const size_t end = raw.find('\0', start);
    args.push_back(raw.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return args;
}

StatusOr<std::unique_ptr<RankLauncher>> RankLauncher::Start(const Options& options) {
  if (options.world_size < 1) {
    return Status::InvalidArgument("RankLauncher: world size " +
                                   std::to_string(options.world_size) + " is below 1");
  }
  std::unique_ptr<RankLauncher> launcher(new RankLauncher(options));
  std::vector<std::string> argv = options.argv;
  if (argv.empty()) {
    SY_ASSIGN_OR_RETURN(argv, CurrentCommandLine());
  }
  for (int rank = 1; rank < options.world_size; ++rank) {
    // On failure the launcher's destructor takes down the children already started.
    SY_ASSIGN_OR_RETURN(const pid_t pid,
                        SpawnChild(options.executable, argv, ChildEnvironment(rank, options)));
    launcher->children_.push_back(Child{.rank = rank, .pid = pid, .exit = std::nullopt});
  }
  return launcher;
}

RankLauncher::~RankLauncher() {
  Terminate();
  WaitAll(options_.shutdown_grace);
}

bool RankLauncher::Reap(Child& child, bool block) {
  if (child.pid == 0) return true;
  int status = 0;
  pid_t result;
  do {
    result = waitpid(child.pid, &status, block ? 0 : WNOHANG);
  } while (result < 0 && errno == EINTR);
  if (result == 0) return false;
  RankExit exit{.rank = child.rank};
  if (result > 0 && WIFEXITED(status)) exit.exit_code = WEXITSTATUS(status);
  if (result > 0 && WIFSIGNALED(status)) exit.signal = WTERMSIG(status);
  child.exit = exit;
  child.pid = 0;
  return true;
}

std::optional<RankExit> RankLauncher::PollExited() {
  for (Child& child : children_) {
    if (!child.reported && Reap(child, /*block=*/false)) {
      child.reported = true;
      return child.exit;
    }
  }
  return std::nullopt;
}

void RankLauncher::Terminate() {
  for (const Child& child : children_) {
    if (child.pid != 0) kill(child.pid, SIGTERM);
  }
}

std::vector<RankExit> RankLauncher::WaitAll(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    bool all_gone = true;
    for (Child& child : children_) all_gone = Reap(child, /*block=*/false) && all_gone;
    if (all_gone || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  std::vector<RankExit> exits;
  for (Child& child : children_) {
    if (child.pid != 0) kill(child.pid, SIGKILL);
    Reap(child, /*block=*/true);
    exits.push_back(*child.exit);
  }
  return exits;
}

std::vector<pid_t> RankLauncher::pids() const {
  std::vector<pid_t> pids;
  for (const Child& child : children_) pids.push_back(child.pid);
  return pids;
}

}  // namespace sy

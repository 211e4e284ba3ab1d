#include "engine/dist/dist_env.h"

#include <charconv>
#include <cstdlib>

namespace sy {
namespace {

StatusOr<int> ParseInt(std::string_view name, std::string_view text) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) {
    return Status::InvalidArgument(std::string(name) + "='" + std::string(text) +
                                   "' is not an integer");
  }
  return value;
}

StatusOr<int> ParsePort(std::string_view name, std::string_view text) {
  SY_ASSIGN_OR_RETURN(const int port, ParseInt(name, text));
  if (port < 1 || port > 65535) {
    return Status::InvalidArgument(std::string(name) + "='" + std::string(text) +
                                   "' is not a port (1..65535)");
  }
  return port;
}

// Splits "host:port", "[v6]:port", "host" or "[v6]"; `port` stays unset when absent. A bare IPv6
// literal without brackets ("::1") is taken as a host.
Status SplitHostPort(std::string_view name, std::string_view text, std::string& host,
                     std::optional<int>& port) {
  auto invalid = [&](const std::string& why) {
    return Status::InvalidArgument(std::string(name) + "='" + std::string(text) + "' " + why);
  };
  std::optional<std::string_view> port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return invalid("has an unclosed '['");
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return invalid("has junk after ']'");
    if (!rest.empty()) port_text = rest.substr(1);
  } else if (const size_t colon = text.find(':');
             colon != std::string_view::npos && text.rfind(':') == colon) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  } else {
    host = text;
  }
  if (host.empty()) return invalid("has an empty host");
  if (port_text) {
    SY_ASSIGN_OR_RETURN(port, ParsePort(name, *port_text));
  }
  return Status::Ok();
}

// The value of the first of `names` that is set, with the name that supplied it.
std::optional<std::pair<std::string_view, std::string>> First(
    const EnvLookup& lookup, std::initializer_list<std::string_view> names) {
  for (std::string_view name : names) {
    if (std::optional<std::string> value = lookup(name)) return std::pair(name, *value);
  }
  return std::nullopt;
}

}  // namespace

StatusOr<DistEnv> DistEnvFromLookup(const DistEnv& defaults, const EnvLookup& lookup) {
  DistEnv env = defaults;
  if (auto rank = First(lookup, {"SWITCHYARD_RANK", "LWS_WORKER_INDEX"})) {
    SY_ASSIGN_OR_RETURN(env.rank, ParseInt(rank->first, rank->second));
  }
  if (auto size = First(lookup, {"SWITCHYARD_WORLD_SIZE", "LWS_GROUP_SIZE"})) {
    SY_ASSIGN_OR_RETURN(env.world_size, ParseInt(size->first, size->second));
  }
  std::optional<int> port_in_address;
  if (auto addr = First(lookup, {"SWITCHYARD_LEADER_ADDR", "LWS_LEADER_ADDRESS"})) {
    SY_RETURN_IF_ERROR(SplitHostPort(addr->first, addr->second, env.leader_host, port_in_address));
  }
  if (port_in_address) {
    env.leader_port = *port_in_address;
  } else if (auto port = lookup("SWITCHYARD_LEADER_PORT")) {
    SY_ASSIGN_OR_RETURN(env.leader_port, ParsePort("SWITCHYARD_LEADER_PORT", *port));
  }
  if (env.world_size < 1) {
    return Status::InvalidArgument("world size " + std::to_string(env.world_size) +
                                   " is below 1 (SWITCHYARD_WORLD_SIZE / LWS_GROUP_SIZE)");
  }
  if (env.rank < 0 || env.rank >= env.world_size) {
    return Status::InvalidArgument("rank " + std::to_string(env.rank) + " is outside [0, " +
                                   std::to_string(env.world_size) +
                                   ") (SWITCHYARD_RANK / LWS_WORKER_INDEX)");
  }
  if (env.leader_port < 1 || env.leader_port > 65535) {
    return Status::InvalidArgument("leader port " + std::to_string(env.leader_port) +
                                   " is not a port (1..65535)");
  }
  if (env.leader_host.empty()) return Status::InvalidArgument("the leader host is empty");
  return env;
}

StatusOr<DistEnv> DistEnvFromEnvironment(const DistEnv& defaults) {
  return DistEnvFromLookup(defaults, [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  });
}

}  // namespace sy

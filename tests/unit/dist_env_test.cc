// DistEnv parsing: our variables, LeaderWorkerSet's, precedence, and every malformed input.
#include "engine/dist/dist_env.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <string>

namespace sy {
namespace {

StatusOr<DistEnv> Parse(const std::map<std::string, std::string>& vars,
                        const DistEnv& defaults = DistEnv()) {
  return DistEnvFromLookup(defaults, [&](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

TEST(DistEnv, NothingSetGivesTheDefaults) {
  auto env = Parse({});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, 0);
  EXPECT_EQ(env->world_size, 1);
  EXPECT_EQ(env->leader_host, "127.0.0.1");
  EXPECT_EQ(env->leader_port, 29500);
  DistEnv defaults{.rank = 2, .world_size = 4, .leader_host = "leader", .leader_port = 1234};
  auto custom = Parse({}, defaults);
  ASSERT_TRUE(custom.ok());
  EXPECT_EQ(custom->rank, 2);
  EXPECT_EQ(custom->world_size, 4);
  EXPECT_EQ(custom->leader_host, "leader");
  EXPECT_EQ(custom->leader_port, 1234);
}

TEST(DistEnv, SwitchyardVariables) {
  auto env = Parse({{"SWITCHYARD_RANK", "3"},
                    {"SWITCHYARD_WORLD_SIZE", "8"},
                    {"SWITCHYARD_LEADER_ADDR", "10.1.2.3:4567"}});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->leader_host, "10.1.2.3");
  EXPECT_EQ(env->leader_port, 4567);
}

TEST(DistEnv, LeaderAddressForms) {
  auto host_only = Parse({{"SWITCHYARD_LEADER_ADDR", "leader.svc"}});
  ASSERT_TRUE(host_only.ok());
  EXPECT_EQ(host_only->leader_host, "leader.svc");
  EXPECT_EQ(host_only->leader_port, 29500);
  auto host_with_port_var =
      Parse({{"SWITCHYARD_LEADER_ADDR", "leader.svc"}, {"SWITCHYARD_LEADER_PORT", "777"}});
  ASSERT_TRUE(host_with_port_var.ok());
  EXPECT_EQ(host_with_port_var->leader_port, 777);
  // A port in the address beats SWITCHYARD_LEADER_PORT.
  auto both = Parse({{"SWITCHYARD_LEADER_ADDR", "h:1000"}, {"SWITCHYARD_LEADER_PORT", "777"}});
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both->leader_port, 1000);
  auto v6 = Parse({{"SWITCHYARD_LEADER_ADDR", "[fd00::1]:2000"}});
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->leader_host, "fd00::1");
  EXPECT_EQ(v6->leader_port, 2000);
  auto bare_v6 = Parse({{"SWITCHYARD_LEADER_ADDR", "::1"}});
  ASSERT_TRUE(bare_v6.ok());
  EXPECT_EQ(bare_v6->leader_host, "::1");
  EXPECT_EQ(bare_v6->leader_port, 29500);
  auto bracketed_no_port = Parse({{"SWITCHYARD_LEADER_ADDR", "[::1]"}});
  ASSERT_TRUE(bracketed_no_port.ok());
  EXPECT_EQ(bracketed_no_port->leader_host, "::1");
}

TEST(DistEnv, LeaderWorkerSetVariables) {
  auto env = Parse({{"LWS_WORKER_INDEX", "1"},
                    {"LWS_GROUP_SIZE", "2"},
                    {"LWS_LEADER_ADDRESS", "my-lws-0.my-lws.default"},
                    {"SWITCHYARD_LEADER_PORT", "29600"}});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->world_size, 2);
  EXPECT_EQ(env->leader_host, "my-lws-0.my-lws.default");
  EXPECT_EQ(env->leader_port, 29600);
}

TEST(DistEnv, SwitchyardVariablesWinOverLeaderWorkerSet) {
  auto env = Parse({{"SWITCHYARD_RANK", "0"},
                    {"LWS_WORKER_INDEX", "1"},
                    {"SWITCHYARD_WORLD_SIZE", "3"},
                    {"LWS_GROUP_SIZE", "2"},
                    {"SWITCHYARD_LEADER_ADDR", "a:1"},
                    {"LWS_LEADER_ADDRESS", "b"}});
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->rank, 0);
  EXPECT_EQ(env->world_size, 3);
  EXPECT_EQ(env->leader_host, "a");
  EXPECT_EQ(env->leader_port, 1);
}

// Each malformed input is InvalidArgument and the message names the culprit.
TEST(DistEnv, MalformedValuesAreInvalidArgument) {
  const std::vector<std::pair<std::map<std::string, std::string>, std::string>> cases = {
      {{{"SWITCHYARD_RANK", "one"}}, "SWITCHYARD_RANK"},
      {{{"SWITCHYARD_RANK", ""}}, "SWITCHYARD_RANK"},
      {{{"SWITCHYARD_RANK", "1x"}}, "SWITCHYARD_RANK"},
      {{{"SWITCHYARD_RANK", "99999999999"}}, "SWITCHYARD_RANK"},
      {{{"LWS_WORKER_INDEX", " 1"}}, "LWS_WORKER_INDEX"},
      {{{"SWITCHYARD_WORLD_SIZE", "0"}}, "world size 0"},
      {{{"LWS_GROUP_SIZE", "-2"}}, "world size -2"},
      {{{"SWITCHYARD_RANK", "2"}, {"SWITCHYARD_WORLD_SIZE", "2"}}, "rank 2 is outside [0, 2)"},
      {{{"SWITCHYARD_RANK", "-1"}, {"SWITCHYARD_WORLD_SIZE", "2"}}, "rank -1"},
      {{{"SWITCHYARD_RANK", "1"}}, "rank 1 is outside [0, 1)"},
      {{{"SWITCHYARD_LEADER_ADDR", "host:0"}}, "SWITCHYARD_LEADER_ADDR"},
      {{{"SWITCHYARD_LEADER_ADDR", "host:65536"}}, "SWITCHYARD_LEADER_ADDR"},
      {{{"SWITCHYARD_LEADER_ADDR", "host:"}}, "SWITCHYARD_LEADER_ADDR"},
      {{{"SWITCHYARD_LEADER_ADDR", "host:http"}}, "SWITCHYARD_LEADER_ADDR"},
      {{{"SWITCHYARD_LEADER_ADDR", ":29500"}}, "empty host"},
      {{{"SWITCHYARD_LEADER_ADDR", ""}}, "empty host"},
      {{{"SWITCHYARD_LEADER_ADDR", "[::1"}}, "unclosed"},
      {{{"SWITCHYARD_LEADER_ADDR", "[::1]x"}}, "junk"},
      {{{"SWITCHYARD_LEADER_ADDR", "[]:5"}}, "empty host"},
      {{{"LWS_LEADER_ADDRESS", ""}}, "empty host"},
      {{{"SWITCHYARD_LEADER_PORT", "70000"}}, "SWITCHYARD_LEADER_PORT"},
      {{{"SWITCHYARD_LEADER_PORT", "-5"}}, "SWITCHYARD_LEADER_PORT"},
  };
  for (const auto& [vars, culprit] : cases) {
    auto env = Parse(vars);
    ASSERT_FALSE(env.ok()) << "accepted " << vars.begin()->first << "=" << vars.begin()->second;
    EXPECT_EQ(env.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(env.status().message().find(culprit), std::string::npos)
        << env.status().message() << " does not mention " << culprit;
  }
}

TEST(DistEnv, BadDefaultsAreRejectedToo) {
  DistEnv defaults{.rank = 4, .world_size = 4};
  EXPECT_EQ(Parse({}, defaults).status().code(), StatusCode::kInvalidArgument);
  DistEnv bad_port{.leader_port = 0};
  EXPECT_EQ(Parse({}, bad_port).status().code(), StatusCode::kInvalidArgument);
}

// The real environment is read through getenv.
TEST(DistEnv, ReadsTheProcessEnvironment) {
  setenv("SWITCHYARD_RANK", "1", 1);
  setenv("SWITCHYARD_WORLD_SIZE", "2", 1);
  setenv("SWITCHYARD_LEADER_ADDR", "example:31000", 1);
  auto env = DistEnvFromEnvironment(DistEnv());
  unsetenv("SWITCHYARD_RANK");
  unsetenv("SWITCHYARD_WORLD_SIZE");
  unsetenv("SWITCHYARD_LEADER_ADDR");
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->world_size, 2);
  EXPECT_EQ(env->leader_host, "example");
  EXPECT_EQ(env->leader_port, 31000);
}

}  // namespace
}  // namespace sy

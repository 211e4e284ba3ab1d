// The TCP rendezvous store: set/get/wait, timeouts, a leader that starts late, a leader that goes
// away, byte-at-a-time frames, and a server that shuts down with clients still connected.
#include "engine/dist/tcp_store.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "engine/dist/socket_io.h"

namespace sy {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<TcpStoreServer> StartServer() {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return std::move(server).value();
}

std::unique_ptr<TcpStoreClient> ConnectTo(int port) {
  auto client = TcpStoreClient::Connect("127.0.0.1", port, milliseconds(5000));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return std::move(client).value();
}

// A port nothing listens on right now: bind port 0, read it back, close.
int FreePort() {
  auto listener = ListenTcp("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok());
  return LocalPort(listener->get());
}

// The value of `key`, or the error text (which then fails the comparison that uses it).
std::string ValueOrError(TcpStoreClient& client, const std::string& key, milliseconds timeout) {
  auto value = client.Get(key, timeout);
  if (value.ok()) return *value;
  return "error: " + value.status().ToString();
}

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

TEST(TcpStore, SetThenGetFromAnotherClient) {
  auto server = StartServer();
  EXPECT_GT(server->port(), 0);
  auto writer = ConnectTo(server->port());
  auto reader = ConnectTo(server->port());
  const std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(writer->Set("key", binary).ok());
  ASSERT_TRUE(writer->Set("empty", "").ok());
  auto value = reader->Get("key", milliseconds(1000));
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  EXPECT_EQ(*value, binary);
  auto empty = reader->Get("empty", milliseconds(1000));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
  // Overwrite: the last set wins.
  ASSERT_TRUE(writer->Set("key", "second").ok());
  EXPECT_EQ(ValueOrError(*reader, "key", milliseconds(1000)), "second");
  EXPECT_EQ(reader->local_address(), "127.0.0.1");
  EXPECT_EQ(reader->store_address(), "127.0.0.1:" + std::to_string(server->port()));
}

TEST(TcpStore, LargeValueSurvivesTheRoundTrip) {
  auto server = StartServer();
  auto client = ConnectTo(server->port());
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + i / 977);
  ASSERT_TRUE(client->Set("big", big).ok());
  auto value = client->Get("big", milliseconds(5000));
  ASSERT_TRUE(value.ok());
  EXPECT_TRUE(*value == big);
}

TEST(TcpStore, GetWaitsForAKeySetLater) {
  auto server = StartServer();
  auto reader = ConnectTo(server->port());
  std::thread writer([port = server->port()] {
    std::this_thread::sleep_for(milliseconds(100));
    auto client = ConnectTo(port);
    EXPECT_TRUE(client->Set("late", "value").ok());
  });
  const auto start = SteadyClock::now();
  auto value = reader->Get("late", milliseconds(5000));
  writer.join();
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  EXPECT_EQ(*value, "value");
  EXPECT_GE(SecondsSince(start), 0.09);
}

TEST(TcpStore, WaitForSeveralKeys) {
  auto server = StartServer();
  auto client = ConnectTo(server->port());
  std::thread writers([port = server->port()] {
    auto other = ConnectTo(port);
    for (const char* key : {"k0", "k1", "k2"}) {
      std::this_thread::sleep_for(milliseconds(20));
      EXPECT_TRUE(other->Set(key, key).ok());
    }
  });
  EXPECT_TRUE(client->Wait({"k0", "k1", "k2"}, milliseconds(5000)).ok());
  writers.join();
  EXPECT_EQ(ValueOrError(*client, "k1", milliseconds(10)), "k1");
}

TEST(TcpStore, WaitTimesOutNamingTheMissingKey) {
  auto server = StartServer();
  auto client = ConnectTo(server->port());
  ASSERT_TRUE(client->Set("present", "1").ok());
  const auto start = SteadyClock::now();
  const Status status = client->Wait({"present", "absent"}, milliseconds(150));
  const double elapsed = SecondsSince(start);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("absent"), std::string::npos) << status.message();
  EXPECT_GE(elapsed, 0.15);
  EXPECT_LT(elapsed, 2.0);
  EXPECT_EQ(client->Get("absent", milliseconds(50)).status().code(), StatusCode::kUnavailable);
  // The connection is still good after a timeout.
  EXPECT_EQ(ValueOrError(*client, "present", milliseconds(50)), "1");
}

// A rank that starts before the leader keeps retrying and connects once the store is up.
TEST(TcpStore, ClientRetriesUntilTheLeaderIsUp) {
  const int port = FreePort();
  std::unique_ptr<TcpStoreServer> server;
  std::thread leader([&] {
    std::this_thread::sleep_for(milliseconds(300));
    auto started = TcpStoreServer::Start("127.0.0.1", port);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    server = std::move(started).value();
  });
  auto client = TcpStoreClient::Connect("127.0.0.1", port, milliseconds(10000));
  leader.join();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE((*client)->Set("hello", "world").ok());
}

TEST(TcpStore, NoLeaderIsUnavailableNamingTheAddress) {
  const int port = FreePort();
  const auto start = SteadyClock::now();
  auto client = TcpStoreClient::Connect("127.0.0.1", port, milliseconds(200));
  const double elapsed = SecondsSince(start);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(client.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << client.status().message();
  EXPECT_GE(elapsed, 0.2);
  EXPECT_LT(elapsed, 2.0);
}

TEST(TcpStore, UnresolvableHostIsUnavailable) {
  auto client = TcpStoreClient::Connect("no-such-host.invalid", 29500, milliseconds(100));
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(client.status().message().find("no-such-host.invalid:29500"), std::string::npos);
}

// The leader goes away while a rank waits: the wait fails fast instead of running out its
// timeout, and later calls fail too.
TEST(TcpStore, ServerGoingAwayFailsAPendingWait) {
  auto server = StartServer();
  auto client = ConnectTo(server->port());
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(100));
    server.reset();
  });
  const auto start = SteadyClock::now();
  const Status status = client->Wait({"never"}, milliseconds(20000));
  stopper.join();
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_LT(SecondsSince(start), 5.0);
  EXPECT_EQ(client->Set("after", "x").code(), StatusCode::kUnavailable);
}

// Frames written one byte at a time (the worst case of short reads) still parse.
TEST(TcpStore, ServerReassemblesByteAtATimeFrames) {
  auto server = StartServer();
  auto raw = ConnectTcp("127.0.0.1", server->port(), SteadyClock::now() + milliseconds(2000));
  ASSERT_TRUE(raw.ok());
  const std::string payload = EncodeStrings({"set", "slow", "drip"});
  std::string frame(4, '\0');
  const uint32_t length = htonl(static_cast<uint32_t>(payload.size()));
  std::memcpy(frame.data(), &length, 4);
  frame += payload;
  for (char byte : frame) {
    ASSERT_EQ(send(raw->get(), &byte, 1, MSG_NOSIGNAL), 1);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  auto reply = RecvFrame(raw->get(), SteadyClock::now() + milliseconds(2000));
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, EncodeStrings({"ok"}));
  auto client = ConnectTo(server->port());
  EXPECT_EQ(ValueOrError(*client, "slow", milliseconds(100)), "drip");
}

// A peer speaking another protocol gets disconnected; the store keeps serving everyone else.
TEST(TcpStore, GarbageClientIsDroppedOthersUnaffected) {
  auto server = StartServer();
  auto raw = ConnectTcp("127.0.0.1", server->port(), SteadyClock::now() + milliseconds(2000));
  ASSERT_TRUE(raw.ok());
  const std::string garbage = "GET / HTTP/1.1\r\n\r\n";  // "GET " reads as a 1.2 GB frame length
  ASSERT_EQ(send(raw->get(), garbage.data(), garbage.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(garbage.size()));
  auto reply = RecvFrame(raw->get(), SteadyClock::now() + milliseconds(2000));
  EXPECT_FALSE(reply.ok());
  auto client = ConnectTo(server->port());
  EXPECT_TRUE(client->Set("fine", "yes").ok());
  EXPECT_EQ(ValueOrError(*client, "fine", milliseconds(100)), "yes");
}

TEST(TcpStore, DecodeStringsRejectsTruncation) {
  const std::string encoded = EncodeStrings({"abc", "", "de"});
  auto decoded = DecodeStrings(encoded);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, (std::vector<std::string>{"abc", "", "de"}));
  for (size_t cut = 1; cut < encoded.size(); ++cut) {
    const bool boundary = cut == 7 || cut == 11;  // ends of "abc" and of ""
    EXPECT_EQ(DecodeStrings(encoded.substr(0, cut)).ok(), boundary) << "cut at " << cut;
  }
}

// Shutting down with idle clients connected joins every thread instead of hanging.
TEST(TcpStore, ServerShutsDownWithClientsConnected) {
  auto server = StartServer();
  auto a = ConnectTo(server->port());
  auto b = ConnectTo(server->port());
  ASSERT_TRUE(a->Set("x", "1").ok());
  const auto start = SteadyClock::now();
  server.reset();
  EXPECT_LT(SecondsSince(start), 2.0);
}

}  // namespace
}  // namespace sy

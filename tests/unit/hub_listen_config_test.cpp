// hub.listen URLs and certificate blocks at config load: every scheme,
// WebSocket paths, a listener's own certificate, and the mistakes named
// with their key (file problems are in hub_tls_test, which makes real
// certificates).
#include <gtest/gtest.h>

#include "core/config.hpp"
#include "fixtures/test_pki.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

std::vector<std::string> errors_of(const std::string& yaml) {
  try {
    load_config_text(yaml, "hubflow.yaml");
  } catch (const config_error& e) {
    return e.messages();
  }
  return {};
}

} // namespace

TEST(hub_listen_config, every_scheme_and_websocket_paths) {
  struct expected {
    const char* url;
    listener_kind kind;
    const char* host;
    std::uint16_t port;
    const char* path;
  };
  for (auto& e : {
         expected{"tcp://0.0.0.0:1883", listener_kind::tcp, "0.0.0.0", 1883, ""},
         expected{"mqtt://:1883", listener_kind::tcp, "", 1883, ""},
         expected{"127.0.0.1:1", listener_kind::tcp, "127.0.0.1", 1, ""},
         expected{"ssl://[::1]:8883", listener_kind::tls, "::1", 8883, ""},
         expected{"mqtts://h:8883", listener_kind::tls, "h", 8883, ""},
         expected{"ws://h:9001", listener_kind::ws, "h", 9001, "/mqtt"},
         expected{"wss://h:0/a/b", listener_kind::wss, "h", 0, "/a/b"},
       }) {
    std::string error;
    auto l = parse_listener(e.url, error);
    ASSERT_TRUE(l) << e.url << ": " << error;
    EXPECT_EQ(l->kind, e.kind) << e.url;
    EXPECT_EQ(l->at.host, e.host) << e.url;
    EXPECT_EQ(l->at.port, e.port) << e.url;
    EXPECT_EQ(l->path, e.path) << e.url;
  }
  for (auto [url, what] : {
         std::pair{"http://h:80", "unsupported scheme"},
         std::pair{"ssl://h:8883/x", "only ws:// and wss://"},
         std::pair{"ws://h:9001/a b", "may not hold spaces"},
         std::pair{"ws://h:9001/a?x", "may not hold spaces, '?'"},
         std::pair{"wss://h/mqtt", "has no port"},
       }) {
    std::string error;
    EXPECT_FALSE(parse_listener(url, error)) << url;
    EXPECT_NE(error.find(what), std::string::npos) << url << ": " << error;
  }
}

TEST(hub_listen_config, a_listener_may_have_its_own_certificate) {
  test_pki pki;
  auto other = pki.client("other-server");
  auto cfg = load_config_text(
    "hub:\n"
    "  listen:\n"
    "    - tcp://127.0.0.1:1883\n"
    "    - ssl://127.0.0.1:8883\n"
    "    - url: wss://127.0.0.1:9443/mqtt\n"
    "      certificate: {cert: " + other.cert + ", key: " + other.key + "}\n"
    "  certificate:\n"
    "    ca: " + pki.ca() + "\n"
    "    cert: " + pki.server().cert + "\n"
    "    key: " + pki.server().key + "\n"
    "    require_certificate: true\n"
    "    tls_version: tlsv1.3\n",
    "hubflow.yaml");
  ASSERT_EQ(cfg.hub.listen.size(), 3u);
  EXPECT_EQ(cfg.hub.listen[2], "wss://127.0.0.1:9443/mqtt");
  auto shared = cfg.hub.certificate_for("ssl://127.0.0.1:8883");
  ASSERT_TRUE(shared);
  EXPECT_EQ(shared->cert, pki.server().cert);
  EXPECT_TRUE(shared->require_certificate);
  EXPECT_EQ(shared->tls_version, "tlsv1.3");
  auto own = cfg.hub.certificate_for("wss://127.0.0.1:9443/mqtt");
  ASSERT_TRUE(own);
  EXPECT_EQ(own->cert, other.cert);
  EXPECT_FALSE(own->require_certificate);
  EXPECT_EQ(own->key_path, "hub.listen[2].certificate");
}

TEST(hub_listen_config, mistakes_are_named_with_their_key) {
  auto one = [](const std::string& yaml) {
    auto errors = errors_of(yaml);
    EXPECT_EQ(errors.size(), 1u);
    return errors.empty() ? std::string{} : errors.front();
  };
  auto e = one("hub:\n  listen: [tcp://h:1, 'ssl://h:2']\n");
  EXPECT_NE(e.find("hubflow.yaml:2:23: hub.listen[1]: 'ssl://h:2' is a TLS "
                   "listener: give hub.certificate"),
            std::string::npos)
    << e;
  e = one("hub:\n  listen:\n    - url: tcp://h:1\n"
          "      certificate: {cert: c, key: k}\n");
  EXPECT_NE(e.find("hub.listen[0].certificate: 'tcp://h:1' is not a TLS "
                   "listener"),
            std::string::npos)
    << e;
  e = one("hub:\n  listen: ['ws://h:1/a?b']\n");
  EXPECT_NE(e.find("hub.listen[0]: 'ws://h:1/a?b': the path may not hold"),
            std::string::npos)
    << e;
  e = one("hub:\n  listen: [ssl://h:1]\n  certificate: {cert: c}\n");
  EXPECT_NE(e.find("hub.certificate"), std::string::npos) << e;
}

// hubflow-bench: an MQTT load generator on libmosquitto. N publishers and M
// subscribers, each a libmosquitto client driven by its own thread; every
// payload carries its send time (steady clock, this process) and a
// publisher/sequence number, so subscribers measure end-to-end latency and
// count lost and duplicated messages. It stops by itself and reports
// delivered messages/s and latency percentiles, as a table or as JSON.
//
// The clients run libmosquitto's non-threaded API from our own threads
// (poll + mosquitto_loop_read/write), not mosquitto_loop_start: a publish
// then goes straight to the socket instead of through a network thread, and
// a read pass takes every packet waiting, which keeps the client from being
// the bottleneck it otherwise is.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::nanoseconds;

std::int64_t now_ns() {
  return std::chrono::duration_cast<nanoseconds>(
           clock_type::now().time_since_epoch())
    .count();
}

// ---- options

struct options {
  std::string host = "127.0.0.1";
  int port = 1883;
  int subscribe_port = 0; // 0: `port`; else the far side of a bridge
  int publishers = 1;
  int subscribers = 1;
  int qos = 0;
  std::size_t payload_size = 64;
  std::uint64_t messages = 100000; // per publisher
  double rate = 0;                  // per publisher, 0 = as fast as possible
  std::string publish_topic;
  std::string expect_topic;
  bool shared = false;
  double timeout_s = 60;
  double idle_timeout_s = 2;
  std::string payload_format = "binary";
  int protocol = 4;
  int window = 0; // unacknowledged publishes per publisher; 0 = by QoS
  std::string username;
  std::string password;
  std::string cafile; // TLS: verify the broker against this CA
  bool handshakes = false; // connect, CONNACK, disconnect, --messages times
  bool persistent = false; // subscribers keep their session (stored by a broker with persistence)
  bool json = false;
};

const char* help_text = R"(hubflow-bench: an MQTT load generator (libmosquitto clients).

It connects M subscribers and waits until each one's subscription is
acknowledged, then starts N publishers that each send --messages messages to
--publish-topic. Every payload starts with its send time (steady clock, ns)
and the publisher's index and sequence number, padded to --payload-size, so
the subscribers (on --expect-topic) measure end-to-end latency and count
lost and duplicated messages. The run stops by itself when every expected
delivery arrived, when nothing arrived for --idle-timeout after publishing
ended, or when --timeout passed.

Expected deliveries: publishers x messages x subscribers, or publishers x
messages with --shared (the subscribers form one $share group and each
message goes to one of them).

Reported: sent, delivered (distinct messages), duplicates, expected, lost,
duration (first publish to last delivery), delivered msgs/s, latency
p50/p99/p99.9/max in microseconds, and this client's own CPU time (when it
approaches wall time x cores, the client is the limit, not the broker).

Exit status: 0 all expected deliveries arrived, 1 some were lost, 2 the run
could not start (connection refused, subscription denied, bad option).

Examples:
  # QoS 0, one publisher to one subscriber, 64-byte payloads, full speed
  hubflow-bench --port 1883 --messages 200000
  # fan-out 1 -> 4 at QoS 1, JSON result
  hubflow-bench --subscribers 4 --qos 1 --json
  # latency at a paced 10k msg/s
  hubflow-bench --rate 10000 --messages 50000
  # through a rule t -> function -> t/hi (functions need a JSON payload)
  hubflow-bench --publish-topic t --expect-topic t/hi --payload-format json

Options)";

std::optional<options> parse_options(int argc, char** argv) {
  namespace po = boost::program_options;
  options o;
  std::string topic = "hubflow-bench/t";
  po::options_description desc(help_text);
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("host", po::value(&o.host)->default_value(o.host), "broker address")
    ("port,p", po::value(&o.port)->default_value(o.port), "broker MQTT port")
    ("subscribe-port", po::value(&o.subscribe_port),
     "subscribers connect to this port instead (the far side of a bridge)")
    ("publishers,n", po::value(&o.publishers)->default_value(o.publishers),
     "publishing clients (N); all publish to the same topic")
    ("subscribers,m", po::value(&o.subscribers)->default_value(o.subscribers),
     "subscribing clients (M)")
    ("qos,q", po::value(&o.qos)->default_value(o.qos),
     "QoS of publishes and subscriptions: 0, 1 or 2")
    ("payload-size,s", po::value(&o.payload_size)->default_value(o.payload_size),
     "payload bytes (at least 20 for binary, 61 for json)")
    ("messages,c", po::value(&o.messages)->default_value(o.messages),
     "messages per publisher")
    ("rate,r", po::value(&o.rate)->default_value(o.rate),
     "messages/s per publisher; 0 = as fast as the window allows. "
     "Measure latency at a rate the broker sustains: unpaced runs measure "
     "queueing")
    ("topic,t", po::value(&topic)->default_value(topic),
     "topic to publish on and subscribe to")
    ("publish-topic", po::value(&o.publish_topic),
     "publish here instead of --topic")
    ("expect-topic", po::value(&o.expect_topic),
     "subscribe here instead of --topic (e.g. a rule's output topic)")
    ("shared", po::bool_switch(&o.shared),
     "subscribers share one subscription ($share/hubflow-bench/<topic>)")
    ("timeout", po::value(&o.timeout_s)->default_value(o.timeout_s),
     "seconds from the first publish until the run stops regardless")
    ("idle-timeout", po::value(&o.idle_timeout_s)->default_value(o.idle_timeout_s),
     "after publishing ended, stop when no delivery arrived for this long")
    ("payload-format", po::value(&o.payload_format)->default_value(o.payload_format),
     "binary: 'hfb1' + 8-byte time + 4-byte publisher + 4-byte sequence; "
     "json: {\"_t\":time,\"_p\":publisher,\"_s\":sequence,\"_x\":\"pad\"}, "
     "for paths through functions that need a JSON event")
    ("protocol", po::value(&o.protocol)->default_value(o.protocol),
     "MQTT protocol level: 4 (3.1.1) or 5")
    ("window", po::value(&o.window)->default_value(o.window),
     "publishes a publisher may have unacknowledged (QoS 1/2) or unwritten "
     "(QoS 0) before it waits; 0 = 1000 for QoS 0, 100 for QoS 1, 20 for "
     "QoS 2 (Mosquitto's default receive maximum: more QoS 2 messages in "
     "flight make it drop the connection)")
    ("username,u", po::value(&o.username), "MQTT username for every client")
    ("password,P", po::value(&o.password), "MQTT password")
    ("cafile", po::value(&o.cafile),
     "TLS: connect with TLS, verifying the broker against this CA (PEM)")
    ("persistent", po::bool_switch(&o.persistent),
     "subscribers connect with a persistent session (3.1.1: clean session "
     "off; 5: clean start off, session expiry 1 h), so a broker with "
     "persistence stores what it owes them; each ends its session at the "
     "end (a clean reconnect), so no session outlives the run")
    ("handshakes", po::bool_switch(&o.handshakes),
     "no messages: --messages connections one after another (connect, "
     "CONNACK, disconnect); delivered_per_s is connections/s, latency the "
     "time to CONNACK (with --cafile: a full TLS handshake each)")
    ("json", po::bool_switch(&o.json), "print one JSON object instead of a table");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "hubflow-bench: " << e.what() << " (see --help)\n";
    return std::nullopt;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    std::exit(0);
  }
  if (o.publish_topic.empty())
    o.publish_topic = topic;
  if (o.expect_topic.empty())
    o.expect_topic = topic;
  auto fail = [](const std::string& why) {
    std::cerr << "hubflow-bench: " << why << " (see --help)\n";
    return std::nullopt;
  };
  if (o.publishers < 1 || o.subscribers < 1)
    return fail("--publishers and --subscribers must be at least 1");
  if (o.qos < 0 || o.qos > 2)
    return fail("--qos must be 0, 1 or 2");
  if (o.payload_format != "binary" && o.payload_format != "json")
    return fail("--payload-format must be binary or json");
  if (o.protocol != 4 && o.protocol != 5)
    return fail("--protocol must be 4 or 5");
  if (o.rate < 0 || o.timeout_s <= 0 || o.idle_timeout_s <= 0)
    return fail("--rate, --timeout and --idle-timeout must be positive");
  if (o.messages == 0 || o.messages > UINT32_MAX)
    return fail("--messages must be between 1 and 4294967295");
  if (o.window <= 0)
    o.window = o.qos == 0 ? 1000 : o.qos == 1 ? 100 : 20;
  return o;
}

// ---- payloads

constexpr std::string_view binary_magic = "hfb1";
constexpr std::size_t binary_header = 4 + 8 + 4 + 4;
// {"_t":<19>,"_p":<5>,"_s":<10>,"_x":"<pad>"} with numbers right-aligned in
// spaces (leading spaces are valid JSON, leading zeros are not).
constexpr std::size_t json_header = 61;

std::size_t min_payload(const std::string& format) {
  return format == "json" ? json_header : binary_header;
}

/// One publisher's payload buffer; stamp() rewrites only the header.
class payload_writer {
public:
  payload_writer(const std::string& format, std::size_t size) : json_(format == "json") {
    buf_.assign(size, 'x');
    if (json_) {
      // The closing `"}` ends the pad string.
      buf_[size - 2] = '"';
      buf_[size - 1] = '}';
    } else {
      std::memcpy(buf_.data(), binary_magic.data(), binary_magic.size());
    }
  }
  void stamp(std::int64_t ts, std::uint32_t publisher, std::uint32_t seq) {
    if (json_) {
      char head[json_header + 1];
      std::snprintf(head, sizeof head,
                    "{\"_t\":%19" PRId64 ",\"_p\":%5u,\"_s\":%10u,\"_x\":\"", ts,
                    publisher, seq);
      std::memcpy(buf_.data(), head, json_header - 2);
    } else {
      std::memcpy(buf_.data() + 4, &ts, 8);
      std::memcpy(buf_.data() + 12, &publisher, 4);
      std::memcpy(buf_.data() + 16, &seq, 4);
    }
  }
  const char* data() const {
    return buf_.data();
  }
  int size() const {
    return static_cast<int>(buf_.size());
  }

private:
  bool json_;
  std::vector<char> buf_;
};

struct stamp {
  std::int64_t ts;
  std::uint32_t publisher;
  std::uint32_t seq;
};

// Reads `"key":<spaces><digits>` anywhere in a JSON text: a function on the
// path (e.g. sayhi) may reorder keys and add its own.
std::optional<std::uint64_t> json_number(std::string_view text, std::string_view key) {
  auto at = text.find(key);
  if (at == std::string_view::npos)
    return std::nullopt;
  auto i = at + key.size();
  while (i < text.size() && text[i] == ' ')
    ++i;
  std::uint64_t value = 0;
  auto start = i;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i)
    value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
  if (i == start)
    return std::nullopt;
  return value;
}

std::optional<stamp> read_stamp(const void* data, int size) {
  std::string_view text(static_cast<const char*>(data), static_cast<std::size_t>(size));
  if (text.size() >= binary_header && text.substr(0, 4) == binary_magic) {
    stamp s;
    std::memcpy(&s.ts, text.data() + 4, 8);
    std::memcpy(&s.publisher, text.data() + 12, 4);
    std::memcpy(&s.seq, text.data() + 16, 4);
    return s;
  }
  auto ts = json_number(text, "\"_t\":");
  auto publisher = json_number(text, "\"_p\":");
  auto seq = json_number(text, "\"_s\":");
  if (!ts || !publisher || !seq)
    return std::nullopt;
  return stamp{static_cast<std::int64_t>(*ts), static_cast<std::uint32_t>(*publisher),
               static_cast<std::uint32_t>(*seq)};
}

// ---- clients

struct client_base {
  mosquitto* mosq = nullptr;
  int connack = -1; // set by on_connect
  std::string name;

  /// `keep_session`: a persistent session (--persistent), else a clean one.
  client_base(const std::string& id, const options& o, bool keep_session = false)
    : name(id), keep_session_(keep_session) {
    mosq = mosquitto_new(id.c_str(), !keep_session, this);
    if (!mosq)
      throw std::runtime_error("mosquitto_new failed");
    mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         o.protocol == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    // Our own window bounds what is in flight; libmosquitto's default of 20
    // would queue the rest inside the library.
    mosquitto_max_inflight_messages_set(mosq, 0);
    // Without it, Nagle's algorithm and delayed ACKs add up to 40 ms to a
    // message's latency whenever the stream pauses.
    mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
    if (!o.username.empty())
      mosquitto_username_pw_set(mosq, o.username.c_str(),
                                o.password.empty() ? nullptr : o.password.c_str());
    if (!o.cafile.empty()
        && mosquitto_tls_set(mosq, o.cafile.c_str(), nullptr, nullptr, nullptr,
                             nullptr) != MOSQ_ERR_SUCCESS)
      throw std::runtime_error("cannot use " + o.cafile + " for TLS");
    mosquitto_connect_callback_set(mosq, [](mosquitto*, void* self, int rc) {
      static_cast<client_base*>(self)->connack = rc;
    });
  }
  ~client_base() {
    if (mosq) {
      mosquitto_disconnect(mosq);
      mosquitto_loop(mosq, 10, 1); // lets the DISCONNECT reach the socket
      mosquitto_destroy(mosq);
    }
  }
  client_base(const client_base&) = delete;
  client_base& operator=(const client_base&) = delete;

  /// One pass of the network loop: waits up to `wait_ms` for the socket,
  /// reads every complete packet it holds, writes what is queued.
  /// mosquitto_loop() would select() once per packet, which made a
  /// subscriber slower than the brokers it measures.
  int pump(int wait_ms) {
    int fd = mosquitto_socket(mosq);
    if (fd < 0)
      return MOSQ_ERR_NO_CONN;
    pollfd pfd{fd, static_cast<short>(POLLIN | (mosquitto_want_write(mosq) ? POLLOUT : 0)), 0};
    if (::poll(&pfd, 1, wait_ms) < 0 && errno != EINTR)
      return MOSQ_ERR_ERRNO;
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      // Read packets until the socket is drained; a bound keeps writes and
      // pings going. libmosquitto returns success both for a packet read
      // and for a socket with nothing more, leaving errno at EAGAIN only in
      // the second case: that saves a FIONREAD call per packet.
      for (int i = 0; i < 4096; ++i) {
        errno = 0;
        if (int rc = mosquitto_loop_read(mosq, 1); rc != MOSQ_ERR_SUCCESS)
          return rc;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          break;
      }
    }
    if (mosquitto_want_write(mosq))
      if (int rc = mosquitto_loop_write(mosq, 1); rc != MOSQ_ERR_SUCCESS)
        return rc;
    if (auto now = clock_type::now(); now - last_misc_ > std::chrono::milliseconds(100)) {
      last_misc_ = now; // keep-alive pings
      return mosquitto_loop_misc(mosq);
    }
    return MOSQ_ERR_SUCCESS;
  }

  /// Runs the network loop until `done` or the deadline; false on timeout
  /// or a broken connection.
  template <class Predicate>
  bool loop_until(Predicate done, clock_type::time_point deadline) {
    while (!done()) {
      if (clock_type::now() > deadline)
        return false;
      if (pump(10) != MOSQ_ERR_SUCCESS)
        return false;
    }
    return true;
  }

private:
  clock_type::time_point last_misc_ = clock_type::now();
  bool keep_session_;

public:

  void connect(const options& o, clock_type::time_point deadline,
               int port = 0) {
    if (port == 0)
      port = o.port;
    int rc;
    if (keep_session_ && o.protocol == 5) {
      // MQTT 5 ends a session at disconnect unless it has an expiry.
      mosquitto_property* props = nullptr;
      mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 3600);
      rc = mosquitto_connect_bind_v5(mosq, o.host.c_str(), port, 60, nullptr, props);
      mosquitto_property_free_all(&props);
    } else {
      rc = mosquitto_connect(mosq, o.host.c_str(), port, 60);
    }
    if (rc != MOSQ_ERR_SUCCESS)
      throw std::runtime_error(name + ": cannot connect to " + o.host + ":"
                               + std::to_string(port) + ": "
                               + mosquitto_strerror(rc));
    if (!loop_until([&] { return connack >= 0; }, deadline))
      throw std::runtime_error(name + ": no CONNACK from " + o.host + ":"
                               + std::to_string(port));
    if (connack != 0)
      throw std::runtime_error(name + ": connection refused: "
                               + mosquitto_connack_string(connack));
  }
};

struct subscriber : client_base {
  int granted = -1;
  // Written only by this subscriber's thread, read after it joined.
  std::vector<std::int64_t> latencies_ns;
  std::uint64_t received = 0; // valid stamps, duplicates included
  std::uint64_t foreign = 0;  // payloads without a stamp
  // Read by the main thread while running.
  std::atomic<std::uint64_t> fresh{0}; // first deliveries of a message
  std::atomic<std::int64_t> last_delivery_ns{0};
  std::atomic<std::uint8_t>* seen = nullptr; // publisher * messages slots
  std::uint64_t messages_per_publisher = 0;
  std::uint32_t publishers = 0;

  subscriber(const std::string& id, const options& o)
    : client_base(id, o, o.persistent) {
    mosquitto_subscribe_callback_set(
      mosq, [](mosquitto*, void* self, int, int count, const int* qos) {
        static_cast<subscriber*>(self)->granted = count > 0 ? qos[0] : 0x80;
      });
    mosquitto_message_callback_set(
      mosq, [](mosquitto*, void* self, const mosquitto_message* m) {
        static_cast<subscriber*>(self)->on_message(*m);
      });
  }

  void on_message(const mosquitto_message& m) {
    auto now = now_ns();
    auto s = read_stamp(m.payload, m.payloadlen);
    if (!s || s->publisher >= publishers || s->seq >= messages_per_publisher) {
      ++foreign;
      return;
    }
    ++received;
    latencies_ns.push_back(now - s->ts);
    auto slot = std::uint64_t{s->publisher} * messages_per_publisher + s->seq;
    if (seen[slot].fetch_add(1, std::memory_order_relaxed) == 0) {
      fresh.fetch_add(1, std::memory_order_relaxed);
      last_delivery_ns.store(now, std::memory_order_relaxed);
    }
  }
};

struct publisher : client_base {
  std::uint64_t written = 0;  // on_publish calls: sent (QoS 0) or acknowledged
  std::uint64_t sent = 0;     // mosquitto_publish calls that succeeded
  std::string error;

  publisher(const std::string& id, const options& o) : client_base(id, o) {
    mosquitto_publish_callback_set(mosq, [](mosquitto*, void* self, int) {
      ++static_cast<publisher*>(self)->written;
    });
  }

  void run(const options& o, std::uint32_t index, std::int64_t start_ns,
           clock_type::time_point deadline) {
    payload_writer payload(o.payload_format, o.payload_size);
    auto window = static_cast<std::uint64_t>(o.window);
    auto interval_ns = o.rate > 0 ? static_cast<std::int64_t>(1e9 / o.rate) : 0;
    for (std::uint32_t seq = 0; seq < o.messages; ++seq) {
      if (interval_ns > 0) {
        auto due = start_ns + static_cast<std::int64_t>(seq) * interval_ns;
        // Sleep to the schedule; a publisher that fell behind catches up.
        if (auto wait = due - now_ns(); wait > 0)
          std::this_thread::sleep_for(nanoseconds(wait));
      }
      // Bound what is unwritten (QoS 0) or unacknowledged (QoS 1/2).
      if (sent - written >= window
          && !loop_until([&] { return sent - written < window; }, deadline)) {
        error = "publisher " + name + ": window did not drain before the timeout";
        return;
      }
      payload.stamp(now_ns(), index, seq);
      int rc = mosquitto_publish(mosq, nullptr, o.publish_topic.c_str(),
                                 payload.size(), payload.data(), o.qos, false);
      if (rc != MOSQ_ERR_SUCCESS) {
        error = "publisher " + name + ": " + mosquitto_strerror(rc);
        return;
      }
      ++sent;
      // Read acknowledgements and flush what the socket did not take, once
      // in a while when unpaced, every message when paced.
      if (interval_ns > 0 || (seq & 31) == 31)
        if (int lrc = pump(0); lrc != MOSQ_ERR_SUCCESS) {
          error = "publisher " + name + ": " + mosquitto_strerror(lrc);
          return;
        }
    }
    if (!loop_until([&] { return written >= sent && mosquitto_want_write(mosq) == false; },
                    deadline))
      error = "publisher " + name + ": not all publishes were "
              + (o.qos == 0 ? "written" : "acknowledged") + " before the timeout";
  }
};

// ---- results

struct results {
  std::uint64_t sent = 0;
  std::uint64_t acknowledged = 0;
  std::uint64_t delivered = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t foreign = 0;
  std::uint64_t expected = 0;
  double duration_s = 0;
  double client_cpu_s = 0;
  bool timed_out = false;
  std::vector<std::int64_t> latencies_ns;
  std::vector<std::string> errors;

  std::uint64_t lost() const {
    return expected > delivered ? expected - delivered : 0;
  }
  double rate() const {
    return duration_s > 0 ? static_cast<double>(delivered) / duration_s : 0;
  }
  /// Nearest-rank percentile in microseconds (latencies must be sorted).
  double percentile_us(double p) const {
    if (latencies_ns.empty())
      return 0;
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(latencies_ns.size()));
    rank = std::min(rank, latencies_ns.size() - 1);
    return static_cast<double>(latencies_ns[rank]) / 1000.0;
  }
  double mean_us() const {
    if (latencies_ns.empty())
      return 0;
    long double sum = 0;
    for (auto l : latencies_ns)
      sum += l;
    return static_cast<double>(sum / latencies_ns.size() / 1000.0L);
  }
};

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void print_table(const options& o, const results& r) {
  auto line = [](const char* label, const std::string& value) {
    std::printf("  %-14s %s\n", label, value.c_str());
  };
  auto fmt = [](const char* format, auto... args) {
    char buf[256];
    std::snprintf(buf, sizeof buf, format, args...);
    return std::string(buf);
  };
  std::printf("hubflow-bench %s:%d  %d pub -> %d sub%s  QoS %d  %zu B  %s -> %s\n",
              o.host.c_str(), o.port, o.publishers, o.subscribers,
              o.shared ? " (shared)" : "", o.qos, o.payload_size,
              o.publish_topic.c_str(), o.expect_topic.c_str());
  line("rate", o.rate > 0 ? fmt("%.0f msg/s per publisher", o.rate)
                          : std::string("unpaced"));
  line("sent", fmt("%" PRIu64, r.sent));
  line("delivered", fmt("%" PRIu64 " of %" PRIu64 " expected", r.delivered, r.expected));
  line("lost", fmt("%" PRIu64 "%s", r.lost(), r.timed_out ? " (timed out)" : ""));
  line("duplicates", fmt("%" PRIu64, r.duplicates));
  if (r.foreign > 0)
    line("unstamped", fmt("%" PRIu64 " messages without a bench stamp", r.foreign));
  line("duration", fmt("%.3f s", r.duration_s));
  line("throughput", fmt("%.0f delivered msg/s", r.rate()));
  line("latency",
       fmt("p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f us", r.percentile_us(50),
           r.percentile_us(99), r.percentile_us(99.9), r.percentile_us(100),
           r.mean_us()));
  line("client cpu", fmt("%.2f s", r.client_cpu_s));
  for (const auto& e : r.errors)
    line("error", e);
}

void print_json(const options& o, const results& r) {
  nlohmann::json j = {
    {"host", o.host},
    {"port", o.port},
    {"publishers", o.publishers},
    {"subscribers", o.subscribers},
    {"shared", o.shared},
    {"qos", o.qos},
    {"payload_size", o.payload_size},
    {"messages_per_publisher", o.messages},
    {"rate_per_publisher", o.rate},
    {"publish_topic", o.publish_topic},
    {"expect_topic", o.expect_topic},
    {"sent", r.sent},
    {"acknowledged", r.acknowledged},
    {"delivered", r.delivered},
    {"expected", r.expected},
    {"lost", r.lost()},
    {"duplicates", r.duplicates},
    {"unstamped", r.foreign},
    {"timed_out", r.timed_out},
    {"duration_s", r.duration_s},
    {"delivered_per_s", r.rate()},
    {"latency_us",
     {{"p50", r.percentile_us(50)},
      {"p99", r.percentile_us(99)},
      {"p999", r.percentile_us(99.9)},
      {"max", r.percentile_us(100)},
      {"mean", r.mean_us()}}},
    {"client_cpu_s", r.client_cpu_s},
    {"errors", r.errors},
  };
  std::cout << j.dump() << std::endl;
}

/// --handshakes: new connections one after another, each timed from
/// connect to CONNACK; a refused or failed one counts as lost.
results run_handshakes(const options& o) {
  results r;
  r.expected = o.messages;
  auto prefix = "hfb-" + std::to_string(getpid()) + "-conn-";
  auto cpu_before = process_cpu_seconds();
  auto start_ns = now_ns();
  auto deadline = clock_type::now()
                  + std::chrono::duration_cast<clock_type::duration>(
                    std::chrono::duration<double>(o.timeout_s));
  for (std::uint64_t i = 0; i < o.messages; ++i) {
    if (clock_type::now() > deadline) {
      r.timed_out = true;
      break;
    }
    ++r.sent;
    auto begin = now_ns();
    try {
      client_base c{prefix + std::to_string(i), o};
      c.connect(o, clock_type::now() + std::chrono::seconds(5));
      r.latencies_ns.push_back(now_ns() - begin);
      ++r.delivered;
    } catch (const std::exception& e) {
      if (r.errors.size() < 10)
        r.errors.push_back(e.what());
    }
  }
  r.client_cpu_s = process_cpu_seconds() - cpu_before;
  r.duration_s = static_cast<double>(now_ns() - start_ns) / 1e9;
  std::sort(r.latencies_ns.begin(), r.latencies_ns.end());
  return r;
}

results run(const options& o) {
  results r;
  auto setup_deadline = clock_type::now() + std::chrono::seconds(10);
  auto prefix = "hfb-" + std::to_string(getpid()) + "-";
  auto slots = std::uint64_t(o.publishers) * o.messages;
  // Non-shared: each subscriber must see every message, so each has its own
  // seen-array; shared: the group must see each message once.
  auto arrays = o.shared ? 1 : o.subscribers;
  std::vector<std::unique_ptr<std::atomic<std::uint8_t>[]>> seen;
  for (int i = 0; i < arrays; ++i)
    seen.emplace_back(new std::atomic<std::uint8_t>[slots]()); // zeroed
  r.expected = slots * static_cast<std::uint64_t>(o.shared ? 1 : o.subscribers);

  std::vector<std::unique_ptr<subscriber>> subs;
  auto filter = o.shared ? "$share/hubflow-bench/" + o.expect_topic : o.expect_topic;
  for (int i = 0; i < o.subscribers; ++i) {
    auto s = std::make_unique<subscriber>(prefix + "sub-" + std::to_string(i), o);
    s->seen = seen[o.shared ? 0 : i].get();
    s->messages_per_publisher = o.messages;
    s->publishers = static_cast<std::uint32_t>(o.publishers);
    s->latencies_ns.reserve(o.shared ? slots / o.subscribers + 1024 : slots);
    s->connect(o, setup_deadline, o.subscribe_port);
    int rc = mosquitto_subscribe(s->mosq, nullptr, filter.c_str(), o.qos);
    if (rc != MOSQ_ERR_SUCCESS)
      throw std::runtime_error(s->name + ": subscribe: " + mosquitto_strerror(rc));
    if (!s->loop_until([&] { return s->granted >= 0; }, setup_deadline))
      throw std::runtime_error(s->name + ": no SUBACK for " + filter);
    if (s->granted >= 0x80)
      throw std::runtime_error(s->name + ": subscription to " + filter
                               + " refused (reason " + std::to_string(s->granted) + ")");
    subs.push_back(std::move(s));
  }
  std::vector<std::unique_ptr<publisher>> pubs;
  for (int i = 0; i < o.publishers; ++i) {
    auto p = std::make_unique<publisher>(prefix + "pub-" + std::to_string(i), o);
    p->connect(o, setup_deadline);
    pubs.push_back(std::move(p));
  }

  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (auto& s : subs)
    threads.emplace_back([&stop, sp = s.get()] {
      while (!stop.load(std::memory_order_relaxed))
        if (sp->pump(50) != MOSQ_ERR_SUCCESS)
          break; // the connection broke: what arrived so far counts
    });

  auto cpu_before = process_cpu_seconds();
  auto start_ns = now_ns();
  auto deadline = clock_type::now()
                  + std::chrono::duration_cast<clock_type::duration>(
                    std::chrono::duration<double>(o.timeout_s));
  std::atomic<int> publishing{o.publishers};
  std::vector<std::thread> pub_threads;
  for (std::size_t i = 0; i < pubs.size(); ++i)
    pub_threads.emplace_back([&, i] {
      pubs[i]->run(o, static_cast<std::uint32_t>(i), start_ns, deadline);
      publishing.fetch_sub(1);
    });

  // Wait for the deliveries: all of them, or silence after publishing, or
  // the deadline.
  auto idle_ns = static_cast<std::int64_t>(o.idle_timeout_s * 1e9);
  std::int64_t publish_end_ns = 0;
  for (;;) {
    std::uint64_t delivered = 0;
    std::int64_t last = 0;
    for (auto& s : subs) {
      delivered += s->fresh.load(std::memory_order_relaxed);
      last = std::max(last, s->last_delivery_ns.load(std::memory_order_relaxed));
    }
    if (delivered >= r.expected)
      break;
    if (clock_type::now() > deadline) {
      r.timed_out = true;
      break;
    }
    if (publishing.load() == 0) {
      if (publish_end_ns == 0)
        publish_end_ns = now_ns();
      if (now_ns() - std::max(last, publish_end_ns) > idle_ns)
        break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& t : pub_threads)
    t.join();
  stop = true;
  for (auto& t : threads)
    t.join();
  r.client_cpu_s = process_cpu_seconds() - cpu_before;

  std::int64_t last_ns = start_ns;
  for (auto& p : pubs) {
    r.sent += p->sent;
    r.acknowledged += o.qos > 0 ? p->written : 0;
    if (!p->error.empty())
      r.errors.push_back(p->error);
  }
  std::uint64_t received = 0;
  for (auto& s : subs) {
    r.delivered += s->fresh.load();
    received += s->received;
    r.foreign += s->foreign;
    last_ns = std::max(last_ns, s->last_delivery_ns.load());
    r.latencies_ns.insert(r.latencies_ns.end(), s->latencies_ns.begin(),
                          s->latencies_ns.end());
  }
  r.duplicates = received - r.delivered;
  r.duration_s = static_cast<double>(last_ns - start_ns) / 1e9;
  std::sort(r.latencies_ns.begin(), r.latencies_ns.end());
  if (o.persistent) {
    // A clean connect under each subscriber's id ends its session, which
    // would otherwise stay in the broker's store and queue the messages of
    // later runs.
    std::vector<std::string> names;
    for (auto& s : subs)
      names.push_back(s->name);
    subs.clear();
    for (auto& name : names) {
      client_base c{name, o};
      c.connect(o, clock_type::now() + std::chrono::seconds(10),
                o.subscribe_port);
    }
  }
  return r;
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse_options(argc, argv);
  if (!o)
    return 2;
  if (o->payload_size < min_payload(o->payload_format)) {
    std::cerr << "hubflow-bench: --payload-size must be at least "
              << min_payload(o->payload_format) << " for --payload-format "
              << o->payload_format << "\n";
    return 2;
  }
  mosquitto_lib_init();
  int status = 0;
  try {
    auto r = o->handshakes ? run_handshakes(*o) : run(*o);
    if (o->json)
      print_json(*o, r);
    else
      print_table(*o, r);
    status = r.lost() > 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "hubflow-bench: " << e.what() << "\n";
    status = 2;
  }
  mosquitto_lib_cleanup();
  return status;
}

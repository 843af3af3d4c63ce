#include "core/tls_layer.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/fmt/fmt.h>

#include "core/tls_context.hpp"

namespace hubflow {

namespace {

/// TLS records carry at most 16 KiB of plaintext: one read's worth.
constexpr int plaintext_chunk = 16384;

/// The first byte of every TLS handshake (a handshake record).
constexpr unsigned char tls_handshake_record = 0x16;

/// A hint for a first byte that does not start a TLS handshake.
std::string not_tls(unsigned char first) {
  auto what = (first & 0xF0) == 0x10 ? " (plaintext MQTT on a TLS port?)"
              : first == 'G'          ? " (plaintext HTTP on a TLS port?)"
                                      : "";
  return fmt::format("not a TLS handshake: first byte 0x{:02x}{}", first,
                     what);
}

} // namespace

tls_layer::tls_layer(transport& below, ssl_ctx_st* ctx) : layer(below) {
  ssl_ = SSL_new(ctx);
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  // An empty memory BIO says "retry later", not end of file.
  BIO_set_mem_eof_return(in_, -1);
  SSL_set_bio(ssl_, in_, out_); // SSL owns both now
  SSL_set_accept_state(ssl_);
}

tls_layer::~tls_layer() {
  SSL_free(ssl_);
}

bool tls_layer::read(std::string_view in) {
  up_.clear();
  if (closed_ || in.empty())
    return true;
  if (std::exchange(first_read_, false)
      && static_cast<unsigned char>(in[0]) != tls_handshake_record)
    return fail(not_tls(static_cast<unsigned char>(in[0])));
  // A memory BIO takes everything (at most one read of the socket, 4 KiB).
  BIO_write(in_, in.data(), static_cast<int>(in.size()));
  if (!established_) {
    auto rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
      auto err = SSL_get_error(ssl_, rc);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
        return fail("TLS handshake failed: " + describe(err));
      flush_down();
      return true;
    }
    established_ = true;
  }
  // Everything complete in the BIO is decrypted now; a partial record (at
  // most one, 16 KiB and change) waits there for the next read.
  char chunk[plaintext_chunk];
  for (;;) {
    auto n = SSL_read(ssl_, chunk, plaintext_chunk);
    if (n > 0) {
      up_.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    auto err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ)
      break;
    if (err == SSL_ERROR_ZERO_RETURN) { // the peer's close_notify
      flush_down();
      closed_ = true;
      below_.close();
      return false;
    }
    return fail("TLS error: " + describe(err));
  }
  flush_down(); // session tickets, key updates
  return true;
}

void tls_layer::send(const char* data, std::size_t size) {
  if (!established_ || closed_ || size == 0)
    return;
  // A memory BIO never says "retry": SSL_write takes everything at once.
  if (SSL_write(ssl_, data, static_cast<int>(size)) <= 0) {
    ERR_clear_error();
    return;
  }
  flush_down();
}

void tls_layer::say_goodbye() {
  if (!closed_ && established_) {
    SSL_shutdown(ssl_); // queues close_notify; the peer's is not awaited
    flush_down();
  }
  closed_ = true;
}

std::string tls_layer::peer_common_name() const {
  auto cert = SSL_get0_peer_certificate(ssl_);
  if (!cert || SSL_get_verify_result(ssl_) != X509_V_OK)
    return {};
  auto subject = X509_get_subject_name(cert);
  auto index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0)
    return {};
  auto data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  auto n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0)
    return {};
  std::string cn{reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n)};
  OPENSSL_free(utf8);
  return cn;
}

bool tls_layer::resumed() const {
  return SSL_session_reused(ssl_) == 1;
}

void tls_layer::flush_down() {
  char* data = nullptr;
  auto n = BIO_get_mem_data(out_, &data);
  if (n <= 0)
    return;
  below_.send(data, static_cast<std::size_t>(n));
  (void) BIO_reset(out_); // emptied, its memory kept for the next records
}

bool tls_layer::fail(std::string why) {
  failure_ = std::move(why);
  if (!closed_)
    flush_down(); // the alert OpenSSL queued
  closed_ = true;
  below_.close();
  return false;
}

std::string tls_layer::describe(int ssl_error) {
  if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_SSL) {
    auto what = take_openssl_error("protocol error");
    auto verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK)
      what += std::string{" ("} + X509_verify_cert_error_string(verify) + ")";
    return what;
  }
  ERR_clear_error();
  return "SSL error " + std::to_string(ssl_error);
}

} // namespace hubflow

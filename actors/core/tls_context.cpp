#include "core/tls_context.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace hubflow {

namespace {

/// One context per listener; the id scopes cached sessions to hubflow
/// (OpenSSL refuses to resume without one when client certificates are
/// verified).
constexpr unsigned char session_id_context[] = "hubflow";

/// Sessions kept for resumption per listener (OpenSSL's default is 20480;
/// each takes about 1 KiB).
constexpr long session_cache_size = 10000;

struct file_closer {
  void operator()(std::FILE* f) const noexcept {
    std::fclose(f);
  }
};
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

struct x509_deleter {
  void operator()(X509* x) const noexcept {
    X509_free(x);
  }
};
using x509_ptr = std::unique_ptr<X509, x509_deleter>;

std::string asn1_time_text(const ASN1_TIME* t) {
  std::string out;
  if (BIO* b = BIO_new(BIO_s_mem())) {
    if (ASN1_TIME_print(b, t) == 1) {
      char* data = nullptr;
      auto n = BIO_get_mem_data(b, &data);
      out.assign(data, static_cast<std::size_t>(n));
    }
    BIO_free(b);
  }
  return out;
}

/// Opens `path` for reading, or says why not.
file_ptr open_file(const std::string& path, std::string& error) {
  file_ptr f{std::fopen(path.c_str(), "rb")};
  if (!f)
    error = "cannot read " + path + ": " + std::strerror(errno);
  return f;
}

/// The first certificate of a PEM file, checked to be within its validity
/// period now; nullptr with `error` naming the file and the problem.
x509_ptr read_valid_certificate(const std::string& path, std::string& error) {
  auto f = open_file(path, error);
  if (!f)
    return nullptr;
  x509_ptr cert{PEM_read_X509(f.get(), nullptr, nullptr, nullptr)};
  if (!cert) {
    error = path + ": not a PEM certificate ("
            + take_openssl_error("no certificate found") + ")";
    return nullptr;
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    error = path + ": the certificate expired on "
            + asn1_time_text(X509_get0_notAfter(cert.get()));
    return nullptr;
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    error = path + ": the certificate is not valid before "
            + asn1_time_text(X509_get0_notBefore(cert.get()));
    return nullptr;
  }
  return cert;
}

bool fail(tls_problem& problem, std::string key, std::string message) {
  problem = tls_problem{std::move(key), std::move(message)};
  return false;
}

/// Installs the certificate chain `cert` and its private key `key` in
/// `ctx`: readable, PEM, within validity, the key matching.
bool use_certificate(SSL_CTX* ctx, const std::string& cert,
                     const std::string& key, tls_problem& problem) {
  std::string error;
  if (!read_valid_certificate(cert, error))
    return fail(problem, "cert", error);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
    return fail(problem, "cert", cert + ": " + take_openssl_error());
  auto key_file = open_file(key, error);
  if (!key_file)
    return fail(problem, "key", error);
  // Read apart from installing it: OpenSSL's own loader says "key values
  // mismatch" for a key that is fine but belongs to another certificate.
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey{
    PEM_read_PrivateKey(key_file.get(), nullptr, nullptr, nullptr),
    EVP_PKEY_free};
  if (!pkey)
    return fail(problem, "key", key + ": not a PEM private key ("
                                  + take_openssl_error() + ")");
  if (SSL_CTX_use_PrivateKey(ctx, pkey.get()) != 1
      || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return fail(problem, "key",
                key + ": the key does not match the certificate " + cert);
  }
  return true;
}

/// Trusts the CA bundle `ca` (readable, PEM, within validity).
bool use_ca(SSL_CTX* ctx, const std::string& ca, tls_problem& problem) {
  std::string error;
  if (!read_valid_certificate(ca, error))
    return fail(problem, "ca", error);
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1)
    return fail(problem, "ca", ca + ": " + take_openssl_error());
  return true;
}

using context_ptr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

context_ptr new_context(const SSL_METHOD* method, tls_problem& problem) {
  context_ptr ctx{SSL_CTX_new(method), SSL_CTX_free};
  if (!ctx)
    problem = {"", "cannot create a TLS context: " + take_openssl_error()};
  return ctx;
}

bool configure(SSL_CTX* ctx, const tls_settings& tls, tls_problem& problem) {
  if (tls.cert.empty())
    return fail(problem, "cert", "a TLS listener needs `cert`");
  if (tls.key.empty())
    return fail(problem, "key", "a TLS listener needs `key`");
  if (!use_certificate(ctx, tls.cert, tls.key, problem))
    return false;
  if (!tls.ca.empty()) {
    if (!use_ca(ctx, tls.ca, problem))
      return false;
    // Tells clients which CAs their certificate may come from.
    SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(tls.ca.c_str()));
  }
  if (tls.require_certificate) {
    if (tls.ca.empty())
      return fail(problem, "require_certificate",
                  "needs `ca`, the CA that signs client certificates");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
  }
  if (tls.use_identity_as_username && !tls.require_certificate)
    return fail(problem, "use_identity_as_username",
                "needs `require_certificate: true` (the identity comes from "
                "a verified client certificate)");
  auto version = tls.tls_version == "tlsv1.3" ? TLS1_3_VERSION
                                              : TLS1_2_VERSION;
  if (tls.tls_version != "tlsv1.2" && tls.tls_version != "tlsv1.3")
    return fail(problem, "tls_version",
                "'" + tls.tls_version + "': write tlsv1.2 or tlsv1.3");
  SSL_CTX_set_min_proto_version(ctx, version);
  if (!tls.ciphers.empty()
      && SSL_CTX_set_cipher_list(ctx, tls.ciphers.c_str()) != 1) {
    ERR_clear_error();
    return fail(problem, "ciphers",
                "'" + tls.ciphers + "': no cipher OpenSSL knows");
  }
  if (!tls.ciphersuites.empty()
      && SSL_CTX_set_ciphersuites(ctx, tls.ciphersuites.c_str()) != 1) {
    ERR_clear_error();
    return fail(problem, "ciphers_tls1.3",
                "'" + tls.ciphersuites
                  + "': no TLS 1.3 suite OpenSSL knows (TLS_AES_128_GCM_SHA256, "
                    "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256)");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION
                             | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle connections give their 34 KiB of record buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Resumption: the server-side cache (TLS 1.2 session ids) and tickets
  // (TLS 1.2 and 1.3; OpenSSL's default, with a key made per context).
  SSL_CTX_set_session_id_context(ctx, session_id_context,
                                 sizeof(session_id_context) - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, session_cache_size);
  return true;
}

} // namespace

std::string take_openssl_error(const char* fallback) {
  auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return fallback;
  if (auto reason = ERR_reason_error_string(code))
    return reason;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

std::string key_path_of(const std::string& block, const tls_problem& problem) {
  return problem.key.empty() ? block : block + "." + problem.key;
}

tls_context_ptr make_server_tls_context(const tls_settings& tls,
                                        tls_problem& problem) {
  auto ctx = new_context(TLS_server_method(), problem);
  if (!ctx || !configure(ctx.get(), tls, problem))
    return nullptr;
  return tls_context_ptr{ctx.release(), SSL_CTX_free};
}

bool check_client_tls(const tls_client_settings& tls, tls_problem& problem) {
  if (tls.cert.empty() != tls.key.empty())
    return fail(problem, tls.cert.empty() ? "cert" : "key",
                "a client certificate needs both `cert` and `key`");
  auto ctx = new_context(TLS_client_method(), problem);
  if (!ctx)
    return false;
  if (!tls.ca.empty() && !use_ca(ctx.get(), tls.ca, problem))
    return false;
  return tls.cert.empty()
         || use_certificate(ctx.get(), tls.cert, tls.key, problem);
}

} // namespace hubflow

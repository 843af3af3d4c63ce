#include "http/http_exchange.hpp"

#include <caf/all.hpp>

#include "core/type_ids.hpp"
#include "core/state_store.hpp"
#include "core/function_result.hpp"

// Dapr's service invocation: a request to a function supervisor, its output
// as the answer.
namespace hubflow::http {

void invoke(http_broker* self, const reply_to& to, const http_request& req,
            const std::string& function, const std::string& method) {
  auto& ctx = *self->state.ctx;
  auto i = ctx.functions.find(function);
  if (i == ctx.functions.end() || !i->second)
    return respond_error(self, to, 404, "ERR_FUNCTION_NOT_FOUND",
                         "function " + function + " is not found");
  message msg;
  msg.topic = method;
  msg.body = payload{req.body};
  msg.origin = "http";
  if (auto ct = req.header("content-type"))
    msg.properties.content_type = *ct;
  msg.properties.user_properties.emplace_back("http-method", req.method);
  auto function_error = [=](int status, const char* code,
                            const function_result& result) {
    json doc{{"errorCode", code},
             {"message", result.error_message},
             {"errorType", result.error_type}};
    respond(self, to, status, "application/json", dump_json(doc));
  };
  self->request(i->second, ctx.invoke_timeout, invoke_atom::value, std::move(msg))
    .then(
      [=](function_result& result) {
        answering(self, to, [&] {
          using outcome = function_result::outcome;
          switch (result.status) {
            case outcome::output: {
              auto body = result.output.str();
              // accept() checks without building a document.
              bool is_json = json::accept(body);
              return respond(self, to, 200,
                             is_json ? "application/json"
                                     : "application/octet-stream",
                             body);
            }
            case outcome::nothing:
              return respond(self, to, 204, "", "");
            case outcome::handler_error:
              return function_error(500, "ERR_FUNCTION_HANDLER", result);
            default:
              return function_error(503, "ERR_FUNCTION_UNAVAILABLE", result);
          }
        });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, 503, "ERR_FUNCTION_UNAVAILABLE",
                        "invoking function " + function + " failed: "
                          + error_text(err));
        });
      });
}

} // namespace hubflow::http

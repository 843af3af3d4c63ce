#include "functions/sql/sql_runtime.hpp"

#include "core/json_text.hpp"
#include "functions/sql/sql_evaluator.hpp"
#include "functions/sql/sql_parser.hpp"

namespace hubflow {

namespace {

/// Instances share the parsed statement: evaluation keeps no state, so an
/// instance is just a handle and scaling SQL functions costs nothing.
class sql_instance : public function_instance {
public:
  explicit sql_instance(std::shared_ptr<const sql::statement> stmt)
    : stmt_(std::move(stmt)) {
  }

  function_result invoke(const invocation& call) override {
    auto row = sql::select(*stmt_, call.msg);
    if (!row)
      return function_result::make_nothing();
    // A string literal of the statement need not be UTF-8: never throw.
    return function_result::make_output(dump_json(*row));
  }

private:
  std::shared_ptr<const sql::statement> stmt_;
};

class sql_runtime : public function_runtime {
public:
  explicit sql_runtime(sql::statement stmt)
    : stmt_(std::make_shared<const sql::statement>(std::move(stmt))) {
  }

  std::unique_ptr<function_instance> create_instance(std::string&) override {
    return std::make_unique<sql_instance>(stmt_);
  }

private:
  std::shared_ptr<const sql::statement> stmt_;
};

} // namespace

std::unique_ptr<function_runtime> make_sql_runtime(const function_config& cfg,
                                                   const runtime_options&,
                                                   std::string& error) {
  try {
    return std::make_unique<sql_runtime>(sql::parse(cfg.handler));
  } catch (const sql::parse_error& e) {
    error = std::string{"SQL statement: "} + e.what();
    return nullptr;
  }
}

} // namespace hubflow

// Tokens of hubflow's rule SQL (the `runtime: sql` filter). The lexer keeps
// each token's 1-based column so parse errors can point at it.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace hubflow::sql {

/// A statement that does not lex or parse: `what()` is the whole message
/// ("expected an expression after WHERE at column 17").
class parse_error : public std::runtime_error {
public:
  parse_error(int column, const std::string& message)
    : std::runtime_error(message), column_(column) {
  }
  /// 1-based column of the offending token.
  int column() const noexcept {
    return column_;
  }

private:
  int column_;
};

enum class token_kind {
  identifier,        // id, a_b (keywords are identifiers, matched by text)
  quoted_identifier, // `field name`
  number,            // 12, 1.5, 2e3
  string,            // 'text' or "text" (doubled quote escapes itself)
  symbol,            // , ( ) . [ ] * + - / % = != <> < <= > >= ;
  end,               // end of the statement
};

struct token {
  token_kind kind;
  std::string text; // identifier / string value / number spelling / symbol
  int column;       // 1-based
  int length;       // characters of the statement the token spans

  /// True for an unquoted identifier equal to `keyword`, ignoring case.
  bool is_keyword(std::string_view keyword) const;
  bool is_symbol(std::string_view symbol) const {
    return kind == token_kind::symbol && text == symbol;
  }
  /// How the token reads in an error message: WHERE, '+', 'abc', the end.
  std::string describe() const;
};

/// Splits `statement` into tokens ending with one `end` token. Throws
/// parse_error for an unterminated string or a character SQL does not use.
std::vector<token> tokenize(std::string_view statement);

} // namespace hubflow::sql

#include "functions/sql/sql_lexer.hpp"

#include <cctype>

namespace hubflow::sql {

namespace {

bool ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}

bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

bool digit(char c) {
  return std::isdigit(static_cast<unsigned char>(c)) != 0;
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (auto& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

} // namespace

bool token::is_keyword(std::string_view keyword) const {
  if (kind != token_kind::identifier || text.size() != keyword.size())
    return false;
  for (std::size_t i = 0; i < text.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(text[i]))
        != std::toupper(static_cast<unsigned char>(keyword[i])))
      return false;
  return true;
}

std::string token::describe() const {
  switch (kind) {
    case token_kind::end:
      return "the end of the statement";
    case token_kind::identifier:
      for (auto keyword : {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT",
                           "IN", "LIKE", "IS", "NULL", "TRUE", "FALSE"})
        if (is_keyword(keyword))
          return upper(text);
      return "'" + text + "'";
    case token_kind::quoted_identifier:
      return "`" + text + "`";
    case token_kind::string:
      return "string '" + text + "'";
    default:
      return "'" + text + "'";
  }
}

std::vector<token> tokenize(std::string_view s) {
  std::vector<token> out;
  std::size_t i = 0;
  auto column = [](std::size_t pos) { return static_cast<int>(pos) + 1; };
  // Called once `i` is past the token that started at `start`.
  auto emit = [&](token_kind kind, std::string text, std::size_t start) {
    out.push_back(
      {kind, std::move(text), column(start), static_cast<int>(i - start)});
  };
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    auto start = i;
    if (ident_start(c)) {
      while (i < s.size() && ident_char(s[i]))
        ++i;
      emit(token_kind::identifier, std::string{s.substr(start, i - start)}, start);
    } else if (digit(c) || (c == '.' && i + 1 < s.size() && digit(s[i + 1]))) {
      while (i < s.size() && digit(s[i]))
        ++i;
      if (i < s.size() && s[i] == '.') {
        ++i;
        while (i < s.size() && digit(s[i]))
          ++i;
      }
      if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        auto exp = i + 1;
        if (exp < s.size() && (s[exp] == '+' || s[exp] == '-'))
          ++exp;
        if (exp < s.size() && digit(s[exp])) {
          i = exp;
          while (i < s.size() && digit(s[i]))
            ++i;
        }
      }
      if (i < s.size() && ident_start(s[i]))
        throw parse_error(column(i), "unexpected '" + std::string(1, s[i])
                                       + "' in a number at column "
                                       + std::to_string(column(i)));
      emit(token_kind::number, std::string{s.substr(start, i - start)}, start);
    } else if (c == '\'' || c == '"' || c == '`') {
      // A doubled quote inside the literal stands for the quote itself.
      std::string text;
      ++i;
      for (;;) {
        if (i >= s.size()) {
          auto what = c == '`' ? "quoted field name" : "string";
          throw parse_error(column(start),
                            std::string{"unterminated "} + what
                              + " starting at column "
                              + std::to_string(column(start)));
        }
        if (s[i] == c) {
          if (i + 1 < s.size() && s[i + 1] == c) {
            text += c;
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        text += s[i++];
      }
      emit(c == '`' ? token_kind::quoted_identifier : token_kind::string,
           std::move(text), start);
    } else {
      static constexpr std::string_view two_char[] = {"!=", "<>", "<=", ">="};
      bool matched = false;
      for (auto sym : two_char) {
        if (s.substr(i, 2) == sym) {
          i += 2;
          emit(token_kind::symbol, std::string{sym}, start);
          matched = true;
          break;
        }
      }
      if (matched)
        continue;
      if (std::string_view{",().[]*+-/%=<>;"}.find(c) == std::string_view::npos)
        throw parse_error(column(start), "unexpected character '"
                                           + std::string(1, c) + "' at column "
                                           + std::to_string(column(start)));
      ++i;
      emit(token_kind::symbol, std::string(1, c), start);
    }
  }
  out.push_back({token_kind::end, {}, column(s.size()), 0});
  return out;
}

} // namespace hubflow::sql

// core/base64: RFC 4648's test vectors, all byte values, and what is not
// base64.
#include <gtest/gtest.h>

#include "core/base64.hpp"

using namespace hubflow;

TEST(base64, rfc4648_vectors) {
  const std::pair<const char*, const char*> vectors[] = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
    {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
  };
  for (auto [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), std::optional<std::string>{plain});
  }
}

TEST(base64, every_byte_round_trips_and_padding_is_optional) {
  std::string all;
  for (int i = 0; i < 256; ++i)
    all.push_back(static_cast<char>(i));
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
  EXPECT_EQ(base64_decode("AAEC/w=="), std::string("\x00\x01\x02\xff", 4));
  EXPECT_EQ(base64_decode("AAEC/w"), std::string("\x00\x01\x02\xff", 4));
}

TEST(base64, what_is_not_base64) {
  for (auto text : {"A", "Zg=", "Zm9v!", "Zm 9v", "Zm9v\n", "Zm-_", "=Zm9",
                    "Zg===", "Z=g="})
    EXPECT_FALSE(base64_decode(text)) << text;
}

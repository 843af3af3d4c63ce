// make_uuid: the ids of function invocations (Baetyl's functionInvokeID)
// and of CloudEvents created by Kafka endpoints.
#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "core/uuid.hpp"

TEST(make_uuid, is_a_canonical_version_4_uuid) {
  static const std::regex canonical{
    "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"};
  for (int i = 0; i < 1000; ++i) {
    auto id = hubflow::make_uuid();
    ASSERT_TRUE(std::regex_match(id, canonical)) << id;
  }
}

TEST(make_uuid, does_not_repeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 100000; ++i)
    ASSERT_TRUE(seen.insert(hubflow::make_uuid()).second) << "repeat after " << i;
}

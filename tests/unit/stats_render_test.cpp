// The stats snapshot as text: the JSON the stats port sends (and
// `hubflowctl stats --json` prints), read back by hubflowctl, and the table.
#include <gtest/gtest.h>

#include "stats/stats_render.hpp"

using namespace hubflow;

namespace {

stats_snapshot sample() {
  return {"0.1.0", 61500, {
    {"function", "sayhi", {{"invocations", 3}, {"instances", 1}},
     {{"runtime", "python"}}},
    {"rule", "r1", {{"out", 4}, {"in", 5}, {"in", 6}}, {}},
    {"rule", "r2", {}, {}}}};
}

} // namespace

TEST(stats_render, json_has_the_documented_shape_with_sorted_keys) {
  // The bytes scripts and docs/hubflowctl.md rely on: keys sorted, a name
  // given twice counted once with its later value.
  EXPECT_EQ(stats_to_json(sample()),
            R"({"components":[)"
            R"({"counters":{"instances":1,"invocations":3},"kind":"function",)"
            R"("labels":{"runtime":"python"},"name":"sayhi"},)"
            R"({"counters":{"in":6,"out":4},"kind":"rule","labels":{},)"
            R"("name":"r1"},)"
            R"({"counters":{},"kind":"rule","labels":{},"name":"r2"}],)"
            R"("uptime_ms":61500,"version":"0.1.0"})");
  EXPECT_EQ(component_to_json(sample().components[1]),
            R"({"counters":{"in":6,"out":4},"kind":"rule","labels":{},)"
            R"("name":"r1"})");
}

TEST(stats_render, json_reads_back_to_the_same_snapshot_text) {
  stats_snapshot back;
  std::string error;
  auto text = stats_to_json(sample());
  ASSERT_TRUE(stats_from_json(text, back, error)) << error;
  EXPECT_EQ(back.version, "0.1.0");
  EXPECT_EQ(back.uptime_ms, 61500);
  ASSERT_EQ(back.components.size(), 3u);
  EXPECT_EQ(back.components[1].name, "r1");
  EXPECT_EQ(stats_to_json(back), text);
}

TEST(stats_render, text_that_is_no_snapshot_is_refused_with_a_reason) {
  stats_snapshot out;
  std::string error;
  EXPECT_FALSE(stats_from_json("not json", out, error));
  EXPECT_NE(error.find("not a stats snapshot"), std::string::npos) << error;
  EXPECT_FALSE(stats_from_json(R"({"version":"1"})", out, error));
  EXPECT_NE(error.find("components"), std::string::npos) << error;
  EXPECT_FALSE(stats_from_json(R"({"components":[{"kind":5}]})", out, error));
  EXPECT_FALSE(stats_from_json(std::string(100, '[') + std::string(100, ']'),
                               out, error));
  // Values a newer broker might send are skipped or kept as text.
  ASSERT_TRUE(stats_from_json(
    R"({"components":[{"kind":"k","name":"n","counters":{"a":1.5,"b":2},)"
    R"("labels":{"l":7}}]})",
    out, error))
    << error;
  ASSERT_EQ(out.components[0].counters.size(), 1u);
  EXPECT_EQ(out.components[0].counters[0].first, "b");
  EXPECT_EQ(out.components[0].labels[0].second, "7");
}

TEST(stats_render, table_has_one_block_per_kind) {
  EXPECT_EQ(render_stats_table(sample()),
            "hubflow 0.1.0, up 61 s\n"
            "\nfunction\n"
            "  sayhi\n"
            "    instances=1 invocations=3 runtime=python\n"
            "\nrule\n"
            "  r1\n"
            "    in=6 out=4\n"
            "  r2\n");
}

TEST(stats_render, table_wraps_long_lines_under_80_columns) {
  component_stats c{"rule", "r", {}, {}};
  for (int i = 0; i < 12; ++i)
    c.counters.emplace_back("counter_number_" + std::to_string(i), i);
  auto table = render_stats_table({"0.1.0", 0, {c}});
  std::size_t start = 0, lines = 0;
  for (auto end = table.find('\n'); end != std::string::npos;
       start = end + 1, end = table.find('\n', start), ++lines)
    EXPECT_LE(end - start, 78u) << table;
  EXPECT_GT(lines, 5u) << table;
}

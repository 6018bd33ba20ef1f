#include "node/storage/keys.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace interco::node::keys {
namespace {

TEST(KeysTest, RecordKeysOfARegistryShareItsPrefix) {
  EXPECT_EQ(Record("communes", "01001"), std::string("communes\0" "01001", 14));
  EXPECT_EQ(RecordIdOf(Record("communes", "01001"), "communes"), "01001");
  // A registry whose ID extends another's does not fall in its range.
  EXPECT_NE(Record("communes-x", "1").rfind(RegistryPrefix("communes"), 0), 0u);
}

TEST(KeysTest, TombstoneKeysSortByChangeAndParseBack) {
  const std::string a = Tombstone("services", 200046977, 1, 9, "piscine");
  const std::string b = Tombstone("services", 200046977, 1, 256, "ecole");
  EXPECT_LT(a, b);  // by sequence number, whatever the record
  EXPECT_TRUE(absl::StartsWith(a, TombstonePrefix("services", 200046977, 1)));
  EXPECT_FALSE(absl::StartsWith(a, TombstonePrefix("services", 200046977, 2)));
  std::optional<TombstoneKey> parsed = ParseTombstone(b, "services");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->origin, 200046977u);
  EXPECT_EQ(parsed->epoch, 1u);
  EXPECT_EQ(parsed->seq, 256u);
  EXPECT_EQ(parsed->record, "ecole");
  EXPECT_FALSE(ParseTombstone(b, "service").has_value());
  EXPECT_FALSE(ParseTombstone(TombstonePrefix("services", 1, 1), "services"));
  auto value = DecodeTombstoneValue(EncodeTombstoneValue(4, 0x0102030405060708));
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(value->first, 4u);
  EXPECT_EQ(value->second, 0x0102030405060708u);
  EXPECT_FALSE(DecodeTombstoneValue("short").has_value());
}

TEST(KeysTest, FeedKeysSortBySequence) {
  EXPECT_LT(Feed("r", 9), Feed("r", 10));
  EXPECT_LT(Feed("r", 255), Feed("r", 256));
  EXPECT_EQ(FeedSeqOf(Feed("r", 123456789)), 123456789u);
}

TEST(KeysTest, IndexValuesAreNotPrefixesOfEachOther) {
  const std::string a = EncodeIndexString("ab");
  const std::string b = EncodeIndexString("abc");
  EXPECT_NE(b.rfind(a, 0), 0u);
  interco::v1::Value neg, pos;
  neg.set_int64_value(-1);
  pos.set_int64_value(1);
  EXPECT_LT(*EncodeIndexValue(neg), *EncodeIndexValue(pos));
  interco::v1::Value d;
  d.set_double_value(1.5);
  EXPECT_FALSE(EncodeIndexValue(d).has_value());
}

}  // namespace
}  // namespace interco::node::keys

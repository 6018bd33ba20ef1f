#include "node/storage/keys.h"

#include "gtest/gtest.h"

namespace interco::node::keys {
namespace {

TEST(KeysTest, RecordKeysOfARegistryShareItsPrefix) {
  EXPECT_EQ(Record("communes", "01001"), std::string("communes\0" "01001", 14));
  EXPECT_EQ(RecordIdOf(Record("communes", "01001"), "communes"), "01001");
  // A registry whose ID extends another's does not fall in its range.
  EXPECT_NE(Record("communes-x", "1").rfind(RegistryPrefix("communes"), 0), 0u);
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

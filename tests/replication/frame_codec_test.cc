// Changes by column on the wire: every frame of real changes (all field types, deletes,
// re-creations, policy changes) encodes, and decodes to its exact bytes; a change that is
// not in canonical form is sent as it is; malformed columns are refused, naming why, and
// leave the frame untouched.
#include "replication/frame_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/record_crdt.h"
#include "replication/registry_schema.h"
#include "tests/testing/deflate.h"

namespace interco::replication {
namespace {

using interco::replication::v1::Batch;
using interco::replication::v1::BatchFrame;
using interco::replication::v1::Change;
using interco::testing::Deflated;

class TestHasher final : public Hasher {
 public:
  // Not SHA-256, but a digest all the same for these tests: the body hash must match.
  std::string Sha256(std::string_view data) override {
    std::string out(32, '\0');
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : data) h = (h ^ ch) * 1099511628211ull;
    for (int i = 0; i < 32; ++i) out[static_cast<size_t>(i)] = static_cast<char>(h >> (8 * (i % 8)));
    return out;
  }
};

interco::v1::Schema RichSchema() {
  interco::v1::Schema s;
  auto add = [&](const char* name, interco::v1::FieldType type) {
    auto* f = s.add_fields();
    f->set_name(name);
    f->set_type(type);
  };
  add("nom", interco::v1::FIELD_TYPE_STRING);
  add("adresse", interco::v1::FIELD_TYPE_STRING);
  add("places", interco::v1::FIELD_TYPE_INT64);
  add("canaux", interco::v1::FIELD_TYPE_STRING_SET);
  add("visites", interco::v1::FIELD_TYPE_COUNTER);
  add("ouvert", interco::v1::FIELD_TYPE_BOOL);
  return s;
}

constexpr uint32_t kOrigin = 210100012;

// A frame of `batches` batches of random changes of one origin, as its log holds them.
BatchFrame RandomFrame(uint64_t seed, int batches, const RegistrySchema& schema, Hasher& hasher) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  std::map<std::string, RecordState> records;
  uint64_t hlc = uint64_t{1'790'000'000'000} << 16;
  BatchFrame frame;
  frame.set_stream("equipements");
  uint64_t seq = 1;
  std::string prev(32, 'p');  // the frame continues a chain
  for (int b = 0; b < batches; ++b) {
    std::vector<std::string> changes;
    const int n = 1 + pick(20);
    uint64_t max_hlc = 0;
    for (int i = 0; i < n; ++i) {
      hlc += 1 + (pick(4) == 0 ? (uint64_t{1} << 16) * static_cast<uint64_t>(pick(50)) : 0);
      max_hlc = hlc;
      if (pick(15) == 0) {  // now and then a policy change
        Change c;
        c.mutable_policy()->set_version(hlc);
        c.mutable_policy()->mutable_policy()->mutable_readers()->set_all_authorities(true);
        c.set_author(absl::StrCat(kOrigin, "/admin"));
        changes.push_back(c.SerializeAsString());
        continue;
      }
      const std::string key = absl::StrCat("rec-", pick(12));
      LocalWrite w;
      const int kind = pick(10);
      w.kind = kind == 0 ? LocalWrite::Kind::kDelete
                         : (kind == 1 ? LocalWrite::Kind::kCreate : LocalWrite::Kind::kUpdate);
      w.allow_missing = true;
      if (w.kind != LocalWrite::Kind::kDelete) {
        if (pick(2) == 0) w.fields["nom"].set_string_value(absl::StrCat("Gymnase ", pick(1000)));
        if (pick(2) == 0) w.fields["adresse"].set_string_value(absl::StrCat(pick(300), " rue Carnot"));
        if (pick(3) == 0) w.fields["places"].set_int64_value(pick(500) - 100);
        if (pick(3) == 0) {
          for (int e = pick(4); e > 0; --e) {
            w.fields["canaux"].mutable_string_set_value()->add_values(absl::StrCat("canal-", pick(6)));
          }
        }
        if (pick(3) == 0) w.fields["visites"].set_int64_value(pick(7) - 3);
        if (pick(4) == 0) w.fields["ouvert"].set_bool_value(pick(2) == 0);
        if (w.fields.empty()) w.fields["nom"].set_string_value("");
        for (const auto& [name, v] : w.fields) w.mask.push_back(name);
      }
      absl::StatusOr<std::optional<PlannedWrite>> plan =
          PlanLocalWrite(schema, records[key], w, Stamp{hlc, kOrigin});
      if (!plan.ok() || !plan->has_value()) continue;
      records[key] = (*plan)->merged;
      Change c;
      c.set_key(key);
      *c.mutable_delta() = (*plan)->delta;
      c.set_author(pick(5) == 0 ? absl::StrCat(kOrigin) : absl::StrCat(kOrigin, "/agent-", pick(3)));
      CompactChange(c, kOrigin, hlc);
      changes.push_back(c.SerializeAsString());
    }
    if (changes.empty()) {  // every write a no-op: a policy change keeps the batch
      Change c;
      c.mutable_policy()->set_version(++hlc);
      c.set_author(absl::StrCat(kOrigin, "/admin"));
      changes.push_back(c.SerializeAsString());
      max_hlc = hlc;
    }
    BatchParams p;
    p.origin = kOrigin;
    p.epoch = 1;
    p.stream = frame.stream();
    p.first_seq = seq;
    p.prev_hash = prev;
    p.max_hlc = max_hlc;
    seq += changes.size();
    *frame.add_batches() = *BuildBatch(p, std::move(changes), hasher, nullptr, &prev);
  }
  return frame;
}

class FrameCodecTest : public ::testing::Test {
 protected:
  FrameCodecTest() : schema_(*RegistrySchema::Compile(RichSchema())) {}
  TestHasher hasher_;
  RegistrySchema schema_;
};

// An origin's stamps grow along its chain: a batch whose changes do not is refused.
TEST_F(FrameCodecTest, ABatchWhoseStampsDoNotGrowIsRefused) {
  auto batch = [&](std::vector<uint64_t> stamps, uint64_t max_hlc) {
    std::vector<std::string> changes;
    for (uint64_t v : stamps) {
      Change c;
      c.mutable_policy()->set_version(v);
      c.set_author(absl::StrCat(kOrigin, "/admin"));
      changes.push_back(c.SerializeAsString());
    }
    BatchParams p;
    p.origin = kOrigin;
    p.epoch = 1;
    p.stream = "services";
    p.first_seq = 1;
    p.max_hlc = max_hlc;
    return DecodeBatch(*BuildBatch(p, std::move(changes), hasher_, nullptr, nullptr), hasher_);
  };
  EXPECT_TRUE(batch({10, 11}, 11).ok());
  EXPECT_EQ(batch({10, 10}, 11).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(batch({11, 10}, 11).status().code(), absl::StatusCode::kDataLoss);
  const absl::Status beyond = batch({10, 12}, 11).status();
  EXPECT_EQ(beyond.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(beyond.message()), ::testing::HasSubstr("batch change 1 is stamped 12"));
}

TEST_F(FrameCodecTest, EveryFrameOfRealChangesDecodesToItsExactBytes) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const BatchFrame original = RandomFrame(seed, 1 + static_cast<int>(seed % 5), schema_, hasher_);
    ASSERT_GT(original.batches_size(), 0);
    BatchFrame frame = original;
    ASSERT_TRUE(EncodeColumns(frame, hasher_)) << "seed " << seed;
    for (const Batch& b : frame.batches()) ASSERT_EQ(b.changes_size(), 0);
    ASSERT_TRUE(frame.has_columns());
    ASSERT_TRUE(frame.columns().hashes_elided()) << "seed " << seed;
    ASSERT_TRUE(DecodeColumns(frame, hasher_).ok()) << "seed " << seed;
    ASSERT_EQ(frame.SerializeAsString(), original.SerializeAsString()) << "seed " << seed;
    for (const Batch& b : frame.batches()) ASSERT_TRUE(DecodeBatch(b, hasher_).ok());
    // Encoding twice is refused: the frame is already by column.
    ASSERT_TRUE(EncodeColumns(frame, hasher_));
    BatchFrame twice = frame;
    EXPECT_FALSE(EncodeColumns(twice, hasher_));
    EXPECT_EQ(twice.SerializeAsString(), frame.SerializeAsString());
  }
}

TEST_F(FrameCodecTest, ValuesOfAFieldTravelTogether) {
  const BatchFrame original = RandomFrame(7, 4, schema_, hasher_);
  BatchFrame frame = original;
  ASSERT_TRUE(EncodeColumns(frame, hasher_));
  std::set<std::string> names;
  for (const auto& column : frame.columns().values()) {
    EXPECT_TRUE(names.insert(column.name()).second) << column.name();
    EXPECT_GT(column.values_size(), 0);
  }
  EXPECT_TRUE(names.contains("nom"));
  // Stamps are differences: after the first, small numbers.
  ASSERT_GT(frame.columns().hlc_deltas_size(), 2);
  EXPECT_GT(frame.columns().hlc_deltas(0), int64_t{1} << 40);
  EXPECT_LT(frame.columns().hlc_deltas(1), int64_t{1} << 24);
}

TEST_F(FrameCodecTest, AChangeNotInCanonicalFormIsSentAsItIs) {
  BatchFrame frame = RandomFrame(3, 2, schema_, hasher_);
  // The same change with its key written after its delta: it parses, but serializes
  // back to other bytes.
  Change c;
  ASSERT_TRUE(c.ParseFromString(frame.batches(1).changes(0)));
  Change without_key = c;
  without_key.clear_key();
  Change only_key;
  only_key.set_key(c.key());
  frame.mutable_batches(1)->set_changes(0, without_key.SerializeAsString() + only_key.SerializeAsString());
  const BatchFrame before = frame;
  EXPECT_FALSE(EncodeColumns(frame, hasher_));
  EXPECT_EQ(frame.SerializeAsString(), before.SerializeAsString());
  // And bytes that do not parse at all.
  frame.mutable_batches(0)->set_changes(0, "\xff\xff\xff");
  EXPECT_FALSE(EncodeColumns(frame, hasher_));
  // A frame without changes has nothing to encode.
  BatchFrame empty;
  EXPECT_FALSE(EncodeColumns(empty, hasher_));
}

TEST_F(FrameCodecTest, MalformedColumnsAreRefusedAndLeaveTheFrameAsItWas) {
  BatchFrame encoded = RandomFrame(11, 3, schema_, hasher_);
  ASSERT_TRUE(EncodeColumns(encoded, hasher_));
  ASSERT_GT(encoded.columns().values_size(), 0);
  struct Case {
    const char* what;
    std::function<void(BatchFrame&)> alter;
  };
  const std::vector<Case> cases = {
      {"a key short", [](BatchFrame& f) { f.mutable_columns()->mutable_keys()->RemoveLast(); }},
      {"a stamp short", [](BatchFrame& f) { f.mutable_columns()->mutable_hlc_deltas()->RemoveLast(); }},
      {"an author short", [](BatchFrame& f) { f.mutable_columns()->mutable_authors()->RemoveLast(); }},
      {"one change more than the headers count",
       [](BatchFrame& f) {
         auto* c = f.mutable_columns();
         c->add_skeletons(c->skeletons(0));
         c->add_keys("k");
         c->add_hlc_deltas(1);
         c->add_authors("a");
       }},
      {"a skeleton that does not parse",
       [](BatchFrame& f) { f.mutable_columns()->set_skeletons(0, "\xff\xff\xff"); }},
      {"a value column short", [](BatchFrame& f) {
         f.mutable_columns()->mutable_values(0)->mutable_values()->RemoveLast();
       }},
      {"a value no change takes",
       [](BatchFrame& f) { f.mutable_columns()->mutable_values(0)->add_values(""); }},
      {"a value that does not parse",
       [](BatchFrame& f) { f.mutable_columns()->mutable_values(0)->set_values(0, "\xff\xff"); }},
      {"two columns of one field",
       [](BatchFrame& f) { *f.mutable_columns()->add_values() = f.columns().values(0); }},
      {"a batch carrying its changes too",
       [](BatchFrame& f) { f.mutable_batches(0)->add_changes("x"); }},
      {"more batches than a run",
       [](BatchFrame& f) {
         while (static_cast<size_t>(f.batches_size()) <= limits::kRunBatchesMax) {
           *f.add_batches() = f.batches(0);
         }
       }},
      {"more changes than a run",
       [](BatchFrame& f) {
         auto* c = f.mutable_columns();
         while (static_cast<size_t>(c->skeletons_size()) <= limits::kFrameChangesMax) {
           c->add_skeletons("");
           c->add_keys("");
           c->add_hlc_deltas(0);
           c->add_authors("");
         }
       }},
      {"a header that does not parse",
       [](BatchFrame& f) { f.mutable_batches(0)->set_header("\xff\xff\xff"); }},
  };
  for (const Case& c : cases) {
    BatchFrame frame = encoded;
    c.alter(frame);
    const BatchFrame before = frame;
    const absl::Status s = DecodeColumns(frame, hasher_);
    EXPECT_TRUE(absl::IsDataLoss(s)) << c.what << ": " << s;
    EXPECT_FALSE(s.message().empty()) << c.what;
    EXPECT_EQ(frame.SerializeAsString(), before.SerializeAsString()) << c.what;
  }
  // A frame without columns has nothing to decode.
  BatchFrame plain = RandomFrame(12, 1, schema_, hasher_);
  const std::string bytes = plain.SerializeAsString();
  EXPECT_TRUE(DecodeColumns(plain, hasher_).ok());
  EXPECT_EQ(plain.SerializeAsString(), bytes);
}

TEST_F(FrameCodecTest, HeadersTravelWithoutTheHashesTheReceiverComputes) {
  const BatchFrame original = RandomFrame(9, 4, schema_, hasher_);
  ASSERT_GE(original.batches_size(), 2);
  BatchFrame frame = original;
  ASSERT_TRUE(EncodeColumns(frame, hasher_));
  EXPECT_TRUE(frame.columns().hashes_elided());
  for (int b = 0; b < frame.batches_size(); ++b) {
    v1::BatchHeader h;
    ASSERT_TRUE(h.ParseFromString(frame.batches(b).header()));
    EXPECT_TRUE(h.body_hash().empty()) << b;
    EXPECT_EQ(h.prev_hash().empty(), b > 0) << b << ": only the first keeps its link";
  }
  ASSERT_TRUE(DecodeColumns(frame, hasher_).ok());
  EXPECT_EQ(frame.SerializeAsString(), original.SerializeAsString());

  // A run whose chain does not hold (a relay broke it): its hashes go as they are, so
  // that the receiver sees the break.
  BatchFrame broken = original;
  v1::BatchHeader h;
  ASSERT_TRUE(h.ParseFromString(broken.batches(1).header()));
  h.set_prev_hash(std::string(32, 'x'));
  broken.mutable_batches(1)->set_header(h.SerializeAsString());
  const BatchFrame broken_original = broken;
  ASSERT_TRUE(EncodeColumns(broken, hasher_));
  EXPECT_FALSE(broken.columns().hashes_elided());
  ASSERT_TRUE(DecodeColumns(broken, hasher_).ok());
  EXPECT_EQ(broken.SerializeAsString(), broken_original.SerializeAsString());

  // A header that carries a hash said to be left out is refused.
  BatchFrame lying = original;
  ASSERT_TRUE(EncodeColumns(lying, hasher_));
  lying.mutable_batches(1)->set_header(original.batches(1).header());
  EXPECT_TRUE(absl::IsDataLoss(DecodeColumns(lying, hasher_)));
}

TEST_F(FrameCodecTest, HollowBatchesTravelAmongFullOnesWithTheirHashes) {
  const BatchFrame original = RandomFrame(21, 4, schema_, hasher_);
  ASSERT_GE(original.batches_size(), 3);
  BatchFrame mixed = original;
  *mixed.mutable_batches(0) = Hollow(original.batches(0));
  *mixed.mutable_batches(2) = Hollow(original.batches(2));
  const BatchFrame before = mixed;
  ASSERT_TRUE(EncodeColumns(mixed, hasher_));
  EXPECT_FALSE(mixed.columns().hashes_elided()) << "a hollow batch's body hash is not computable";
  ASSERT_TRUE(DecodeColumns(mixed, hasher_).ok());
  EXPECT_EQ(mixed.SerializeAsString(), before.SerializeAsString());
  for (const Batch& b : mixed.batches()) EXPECT_TRUE(DecodeBatch(b, hasher_).ok());

  // Every batch hollow: nothing to lay out by column.
  BatchFrame all = original;
  for (Batch& b : *all.mutable_batches()) b = Hollow(b);
  EXPECT_FALSE(EncodeColumns(all, hasher_));

  // Columns that say hashes were left out cannot carry a hollow batch.
  BatchFrame lying = original;
  ASSERT_TRUE(EncodeColumns(lying, hasher_));
  ASSERT_TRUE(lying.columns().hashes_elided());
  lying.mutable_batches(0)->set_hollow(true);
  EXPECT_TRUE(absl::IsDataLoss(DecodeColumns(lying, hasher_)));
}

TEST_F(FrameCodecTest, AlteredColumnsRestoreOtherHeadersThanTheOriginSigned) {
  const BatchFrame original = RandomFrame(5, 2, schema_, hasher_);
  BatchFrame frame = original;
  ASSERT_TRUE(EncodeColumns(frame, hasher_));
  frame.mutable_columns()->set_keys(0, "another-record");
  ASSERT_TRUE(DecodeColumns(frame, hasher_).ok());
  // The body hash is computed from what came, so it holds; the header is no longer the
  // origin's, and neither is any header chained after it: the run's signature fails.
  EXPECT_TRUE(DecodeBatch(frame.batches(0), hasher_).ok());
  for (int b = 0; b < frame.batches_size(); ++b) {
    EXPECT_NE(frame.batches(b).header(), original.batches(b).header()) << b;
  }
}

// The wire goal (docs/BENCHMARKS.md): a frame of a directory's records by column deflates
// to at most 1.15 times its names and values deflated alone, plus the run's fixed part.
TEST_F(FrameCodecTest, ColumnsDeflateToAboutTheirPayload) {
  RegistrySchema schema = *RegistrySchema::Compile([] {
    interco::v1::Schema s;
    for (const char* name : {"adresse", "commune", "nom", "telephone"}) {
      auto* f = s.add_fields();
      f->set_name(name);
      f->set_type(interco::v1::FIELD_TYPE_STRING);
    }
    return s;
  }());
  std::string payload;
  std::vector<std::string> changes;
  uint64_t hlc = uint64_t{1'790'000'000'000} << 16;
  for (int i = 0; i < 512; ++i) {
    hlc += i % 40 == 39 ? (uint64_t{1} << 16) : 1;
    LocalWrite w;
    w.kind = LocalWrite::Kind::kCreate;
    w.fields["nom"].set_string_value(absl::StrCat("Mairie annexe numéro ", i));
    w.fields["commune"].set_string_value(absl::StrCat("0", 1000 + i % 500));
    w.fields["adresse"].set_string_value(absl::StrCat(i % 300, " rue de la République"));
    w.fields["telephone"].set_string_value(absl::StrCat("04 74 ", 10 + i % 89, " 00 00"));
    for (const char* name : {"adresse", "commune", "nom", "telephone"}) {  // a fixed order
      absl::StrAppend(&payload, name, w.fields[name].string_value());
    }
    auto plan = PlanLocalWrite(schema, RecordState(), w, Stamp{hlc, kOrigin});
    ASSERT_TRUE(plan.ok() && plan->has_value());
    Change c;
    c.set_key(absl::StrCat("r", i));
    *c.mutable_delta() = (*plan)->delta;
    c.set_author(absl::StrCat(kOrigin, "/import"));
    CompactChange(c, kOrigin, hlc);
    changes.push_back(c.SerializeAsString());
  }
  BatchParams p;
  p.origin = kOrigin;
  p.epoch = 1;
  p.stream = "annuaire";
  p.first_seq = 1;
  p.max_hlc = hlc;
  BatchFrame frame;
  frame.set_stream(p.stream);
  *frame.add_batches() = *BuildBatch(p, std::move(changes), hasher_, nullptr, nullptr);
  frame.mutable_batches(0)->set_signature(std::string(64, 's'));  // its size, not its value
  frame.mutable_batches(0)->set_signer(std::string(32, 'k'));
  const size_t as_changes = Deflated(frame.SerializeAsString());
  ASSERT_TRUE(EncodeColumns(frame, hasher_));
  const size_t by_column = Deflated(frame.SerializeAsString());
  const size_t alone = Deflated(payload);
  ASSERT_GT(alone, 0u);
  EXPECT_LE(static_cast<double>(by_column), 1.15 * static_cast<double>(alone) + 300)
      << "by column " << by_column << ", payload alone " << alone << ", as changes " << as_changes;
  EXPECT_LT(by_column, as_changes);
  std::printf("512 changes deflated: %zu bytes as changes, %zu by column, names and values alone %zu\n",
              as_changes, by_column, alone);
}

}  // namespace
}  // namespace interco::replication

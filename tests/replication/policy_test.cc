// Registry policies and their versions: who may write under which version, and the
// checks of policy changes (replication/policy.h).
#include "replication/policy.h"

#include <gtest/gtest.h>

#include <string>

#include "replication/ids.h"

namespace interco::replication {
namespace {

using interco::replication::v1::Change;
using interco::v1::Policy;

constexpr char kOwner[] = "200071751";   // CA du Bassin de Bourg-en-Bresse
constexpr char kBourg[] = "210100533";   // Bourg-en-Bresse
constexpr char kViriat[] = "210104519";  // Viriat
const uint32_t kOwnerOrigin = *SirenToOrigin(kOwner);
const uint32_t kBourgOrigin = *SirenToOrigin(kBourg);
const uint32_t kViriatOrigin = *SirenToOrigin(kViriat);

Policy Writers(std::initializer_list<const char*> sirens) {
  Policy p;
  for (const char* s : sirens) p.mutable_writers()->add_authorities(s);
  return p;
}

RegistryPolicy Compiled(const Policy& p) { return *RegistryPolicy::Compile(kOwner, p); }

// A batch of `origin` written under `policy_version`, with record changes and/or policy
// changes.
DecodedBatch Batch(uint32_t origin, uint64_t policy_version, uint64_t max_hlc,
                   std::vector<Change> changes) {
  DecodedBatch b;
  b.header.set_origin(origin);
  b.header.set_stream("services");
  b.header.set_policy_version(policy_version);
  b.header.set_max_hlc(max_hlc);
  b.changes = std::move(changes);
  return b;
}

Change RecordChange() {
  Change c;
  c.set_key("mairie");
  return c;
}

Change PolicyChangeOf(const Policy& p, uint64_t version) {
  Change c;
  *c.mutable_policy()->mutable_policy() = p;
  c.mutable_policy()->set_version(version);
  return c;
}

TEST(RegistryPolicyTest, OwnerAlwaysWritesOthersOnlyIfListedOrMembers) {
  Policy p = Writers({kBourg});
  p.mutable_readers()->add_authorities(kViriat);
  const RegistryPolicy policy = Compiled(p);
  EXPECT_TRUE(policy.MayWrite(kOwnerOrigin));
  EXPECT_TRUE(policy.MayWrite(kBourgOrigin));
  EXPECT_FALSE(policy.MayWrite(kViriatOrigin));
  EXPECT_TRUE(policy.MayRead(kViriatOrigin));

  // members_of alone grants nothing: only the members the owner's node resolved count.
  Policy by_epci;
  by_epci.mutable_writers()->add_members_of(kOwner);
  EXPECT_FALSE(Compiled(by_epci).MayWrite(kViriatOrigin));
  by_epci.mutable_writers()->add_members(kViriat);
  EXPECT_TRUE(Compiled(by_epci).MayWrite(kViriatOrigin));
  EXPECT_TRUE(Compiled(by_epci).MayRead(kViriatOrigin)) << "writers may read";
}

TEST(RegistryPolicyTest, BadSirensAreRefusedNamingTheField) {
  Policy p;
  p.mutable_writers()->add_members_of("200071751");
  p.mutable_writers()->add_members_of("123");
  absl::StatusOr<RegistryPolicy> c = RegistryPolicy::Compile(kOwner, p);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("policy.writers.members_of[1]"), std::string::npos)
      << c.status();
  p.mutable_writers()->clear_members_of();
  p.mutable_readers()->add_members("210100534");  // Luhn checksum wrong
  c = RegistryPolicy::Compile(kOwner, p);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("policy.readers.members[0]"), std::string::npos)
      << c.status();
}

TEST(PolicyHistoryTest, TheGreatestVersionIsInForceAndEveryVersionStaysKnown) {
  PolicyHistory h(Compiled(Policy()));
  EXPECT_EQ(h.current_version(), 0u);
  h.Add(500, Compiled(Writers({kBourg})));
  h.Add(300, Compiled(Writers({kViriat})));  // learned late, older
  EXPECT_EQ(h.current_version(), 500u);
  EXPECT_TRUE(h.Current().MayWrite(kBourgOrigin));
  ASSERT_NE(h.At(300), nullptr);
  EXPECT_TRUE(h.At(300)->MayWrite(kViriatOrigin));
  EXPECT_EQ(h.At(400), nullptr);
}

TEST(AuthorizeBatchTest, AWriterIsJudgedByThePolicyVersionItWroteUnder) {
  PolicyHistory h(Compiled(Policy()));     // v0: owner only
  h.Add(100, Compiled(Writers({kBourg})));  // v100: Bourg added
  h.Add(200, Compiled(Policy()));           // v200: Bourg removed
  // Written before Bourg saw its addition: refused.
  EXPECT_EQ(AuthorizeBatch(Batch(kBourgOrigin, 0, 150, {RecordChange()}), h).code(),
            absl::StatusCode::kPermissionDenied);
  // Written after it saw the addition and before it saw the removal: kept, whenever it
  // arrives (even after the removal, or with a later clock).
  EXPECT_TRUE(AuthorizeBatch(Batch(kBourgOrigin, 100, 250, {RecordChange()}), h).ok());
  // Written after it saw the removal: refused.
  EXPECT_EQ(AuthorizeBatch(Batch(kBourgOrigin, 200, 260, {RecordChange()}), h).code(),
            absl::StatusCode::kPermissionDenied);
  // The owner writes under any version.
  EXPECT_TRUE(AuthorizeBatch(Batch(kOwnerOrigin, 0, 300, {RecordChange()}), h).ok());
}

TEST(AuthorizeBatchTest, OnlyTheOwnersBatchesAreMarkedAsCarryingAPolicyChange) {
  PolicyHistory h(Compiled(Writers({kBourg})));
  DecodedBatch marked = Batch(kBourgOrigin, 0, 150, {RecordChange()});
  marked.header.set_carries_policy(true);  // it could then never be compacted
  const absl::Status s = AuthorizeBatch(marked, h);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  DecodedBatch owners = Batch(kOwnerOrigin, 0, 150, {PolicyChangeOf(Writers({kViriat}), 120)});
  owners.header.set_carries_policy(true);
  EXPECT_TRUE(AuthorizeBatch(owners, h).ok());
}

TEST(AuthorizeBatchTest, AVersionNotYetAppliedHereHoldsTheBatchBack) {
  PolicyHistory h(Compiled(Policy()));
  const absl::Status s = AuthorizeBatch(Batch(kBourgOrigin, 100, 150, {RecordChange()}), h);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  h.Add(100, Compiled(Writers({kBourg})));
  EXPECT_TRUE(AuthorizeBatch(Batch(kBourgOrigin, 100, 150, {RecordChange()}), h).ok());
}

TEST(AuthorizeBatchTest, OnlyTheOwnerChangesThePolicyAndOnlyForward) {
  PolicyHistory h(Compiled(Writers({kBourg})));
  // A writer may write records, not the policy.
  absl::Status s =
      AuthorizeBatch(Batch(kBourgOrigin, 0, 150, {PolicyChangeOf(Writers({kViriat}), 120)}), h);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("only its owner"), std::string::npos) << s;
  // The owner's change must come after the version its batch names, within its clock.
  EXPECT_TRUE(
      AuthorizeBatch(Batch(kOwnerOrigin, 0, 150, {PolicyChangeOf(Writers({kViriat}), 120)}), h)
          .ok());
  EXPECT_EQ(
      AuthorizeBatch(Batch(kOwnerOrigin, 120, 150, {PolicyChangeOf(Writers({kViriat}), 120)}), h)
          .code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(
      AuthorizeBatch(Batch(kOwnerOrigin, 0, 110, {PolicyChangeOf(Writers({kViriat}), 120)}), h)
          .code(),
      absl::StatusCode::kPermissionDenied);
  // A version that does not come after those already applied would rewrite history.
  PolicyHistory later(Compiled(Writers({kBourg})));
  later.Add(130, Compiled(Policy()));
  const absl::Status rewrite = AuthorizeBatch(
      Batch(kOwnerOrigin, 0, 150, {PolicyChangeOf(Writers({kViriat}), 120)}), later);
  EXPECT_EQ(rewrite.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(rewrite.message().find("does not come after version 130"), std::string::npos)
      << rewrite;
  EXPECT_EQ(AuthorizeBatch(Batch(kOwnerOrigin, 0, 150, {PolicyChangeOf(Writers({kViriat}), 140),
                                                         PolicyChangeOf(Policy(), 135)}),
                           later)
                .code(),
            absl::StatusCode::kPermissionDenied);
  // A policy that does not compile is refused, not applied half.
  EXPECT_EQ(AuthorizeBatch(Batch(kOwnerOrigin, 0, 150, {PolicyChangeOf(Writers({"12"}), 120)}), h)
                .code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace interco::replication

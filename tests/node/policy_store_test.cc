// Registry policy changes between real stores (RocksDB in temporary directories): the
// owner's node sets a policy version, it travels in the owner's change log, and every
// store judges each batch by the version it was written under. Batches are carried by
// hand from one store's log to the other (the engine's part is tested in
// tests/replication/replicator_trust_test.cc, the processes' in tests/integration/).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/crypto/sha256.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/rocksdb_store.h"
#include "replication/change_log.h"
#include "replication/hlc.h"
#include "tests/testing/test_env.h"

namespace interco::node {
namespace {

using ::interco::testing::FakeClock;
using ::interco::testing::kLyon;
using ::interco::testing::MakeTempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using interco::replication::v1::BatchHeader;
using interco::v1::AuditEvent;
using interco::v1::Policy;
using interco::v1::Registry;
using interco::v1::Value;
using replication::LocalWrite;
using replication::OriginKey;
using replication::Principal;

// CA du Bassin de Bourg-en-Bresse and two of its member communes.
constexpr char kEpci[] = "200071751";
constexpr char kBourgEnBresse[] = "210100533";
constexpr char kViriat[] = "210104519";
constexpr char kRegistry[] = "services";

Registry ServicesDefinition() {
  Registry r;
  r.set_owner(kEpci);
  auto* f = r.mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  return r;
}

Registry EpciDirectoryDefinition() {
  Registry r;
  auto* f = r.mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  f = r.mutable_schema()->add_fields();
  f->set_name(std::string(RecordStore::kDirectoryMembers));
  f->set_type(interco::v1::FIELD_TYPE_STRING_SET);
  return r;
}

LocalWrite Upsert(const std::string& field, Value value) {
  LocalWrite w;
  w.kind = LocalWrite::Kind::kUpdate;
  w.allow_missing = true;
  w.fields[field] = std::move(value);
  w.mask.push_back(field);
  return w;
}

LocalWrite Named(const std::string& nom) {
  Value v;
  v.set_string_value(nom);
  return Upsert("nom", v);
}

Policy WritersPolicy(std::vector<std::string> sirens) {
  Policy p;
  for (const std::string& s : sirens) p.mutable_writers()->add_authorities(s);
  return p;
}

Registry WithPolicy(Policy p) {
  Registry r;
  *r.mutable_policy() = std::move(p);
  return r;
}

using Node = testing::StoreNode;

class PolicyStoreTest : public ::testing::Test {
 protected:
  PolicyStoreTest() {
    for (Node* n : {&epci_, &viriat_}) {
      n->dir = MakeTempDir(absl::StrCat("policy-", n->siren));
      Open(*n);
      auto r = n->store->CreateRegistry(kRegistry, ServicesDefinition(),
                                        Principal{"interco.test", n->siren, ""});
      EXPECT_TRUE(r.ok()) << r.status();
    }
  }

  void Open(Node& n) {
    absl::Status s = n.Open(clock_);
    ASSERT_TRUE(s.ok()) << s;
  }

  // Applies what `from` originated in `registry` and `to` lacks; the first error.
  absl::Status Carry(Node& from, Node& to, const std::string& registry = kRegistry) {
    return testing::CarryBatches(*from.store, *to.store, registry);
  }

  // The header of the newest batch `n` originated in the registry.
  BatchHeader LastHeader(Node& n) {
    const OriginKey key{n.store->origin(), n.store->epoch()};
    const uint64_t seq = (*n.store->Position(kRegistry))[key].seq;
    BatchHeader h;
    h.ParseFromString((*n.store->ReadBatches(kRegistry, key, seq - 1, 1)).front().header());
    return h;
  }

  absl::StatusOr<Registry> SetPolicy(Node& n, Policy p, const Principal& caller) {
    return n.store->UpdateRegistry(kRegistry, WithPolicy(std::move(p)), {"policy"}, "", caller);
  }

  bool HasAuditOf(Node& n, AuditEvent::Action action) {
    auto page = n.store->ListAudit(absl::StrCat("registries/", kRegistry), 100, "");
    if (!page.ok()) return false;
    for (const auto& e : page->events) {
      if (e.event().action() == action && e.event().accepted()) return true;
    }
    return false;
  }

  // The owner's directory of EPCIs: the EPCI and the SIRENs of its member communes.
  void LoadDirectory(const std::vector<std::string>& member_sirens) {
    ASSERT_TRUE(epci_.store
                    ->CreateRegistry(std::string(RecordStore::kDirectoryEpci),
                                     EpciDirectoryDefinition(), epci_.admin())
                    .ok());
    Value members;
    for (const std::string& m : member_sirens) members.mutable_string_set_value()->add_values(m);
    ASSERT_TRUE(epci_.store
                    ->Write(std::string(RecordStore::kDirectoryEpci), kEpci,
                            Upsert(std::string(RecordStore::kDirectoryMembers), members),
                            epci_.admin())
                    .ok());
  }

  FakeClock clock_;
  Sha256Hasher hasher_;
  Node epci_{kEpci, "", nullptr};
  Node viriat_{kViriat, "", nullptr};
};

TEST_F(PolicyStoreTest, TheOwnersNewWriterMayWriteOnceThePolicyChangeReachesIt) {
  EXPECT_EQ(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin())
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);

  const std::string etag_before = epci_.store->GetRegistry(kRegistry)->etag();
  absl::StatusOr<Registry> set = SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin());
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_GT(set->policy_version(), 0u);
  EXPECT_NE(set->etag(), etag_before);
  EXPECT_THAT(set->policy().writers().authorities(), ElementsAre(kViriat));
  EXPECT_TRUE(HasAuditOf(epci_, AuditEvent::UPDATE_REGISTRY));

  // Viriat's node has not seen it yet: still refused there.
  EXPECT_EQ(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin())
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  EXPECT_EQ(viriat_.store->GetRegistry(kRegistry)->policy_version(), set->policy_version());
  EXPECT_TRUE(HasAuditOf(viriat_, AuditEvent::UPDATE_REGISTRY));
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin()).ok());
  EXPECT_EQ(LastHeader(viriat_).policy_version(), set->policy_version());

  // The owner takes Viriat's batch.
  ASSERT_TRUE(Carry(viriat_, epci_).ok());
  EXPECT_EQ(epci_.store->GetRecord(kRegistry, "mairie")->fields().at("nom").string_value(),
            "Mairie");

  // Versions survive restarts on both sides.
  Open(viriat_);
  Open(epci_);
  EXPECT_EQ(viriat_.store->GetRegistry(kRegistry)->policy_version(), set->policy_version());
  EXPECT_TRUE(viriat_.store->CheckAccess(kRegistry, viriat_.admin(), /*write=*/true).ok());
  EXPECT_TRUE(epci_.store->CheckConsistency().ok());
}

TEST_F(PolicyStoreTest, ARemovedWriterKeepsItsConcurrentChangesAndWritesNothingAfter) {
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  // The owner removes Viriat; meanwhile Viriat, cut off, writes.
  ASSERT_TRUE(SetPolicy(epci_, Policy(), epci_.admin()).ok());
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin()).ok());
  // Concurrent with the removal: the owner keeps it.
  ASSERT_TRUE(Carry(viriat_, epci_).ok());
  EXPECT_TRUE(epci_.store->GetRecord(kRegistry, "mairie").ok());
  // Once Viriat has the removal, its writes are refused there.
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  absl::Status refused =
      viriat_.store->Write(kRegistry, "ecole", Named("École"), viriat_.admin()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
}

TEST_F(PolicyStoreTest, WritesCommittedWithARemovalInOneGroupKeepTheVersionTheyWereAllowedUnder) {
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  ASSERT_TRUE(SetPolicy(epci_, Policy(), epci_.admin()).ok());
  const OriginKey owner{epci_.store->origin(), epci_.store->epoch()};
  const uint64_t held = (*viriat_.store->Position(kRegistry))[owner].seq;
  auto removal = replication::DecodeBatch(
      (*epci_.store->ReadBatches(kRegistry, owner, held, 1)).front(), hasher_);
  ASSERT_TRUE(removal.ok());

  // Writes queue up while the removal is applied: the committer takes them in the same
  // groups. Each batch must name a version under which Viriat was a writer.
  constexpr int kWrites = 300;
  absl::Mutex mu;
  int done = 0, accepted = 0;
  for (int i = 0; i < kWrites; ++i) {
    if (i == kWrites / 2) {
      ASSERT_TRUE(viriat_.store->ApplyRemoteBatch(kRegistry, *removal).ok());
    }
    viriat_.store->WriteAsync(kRegistry, absl::StrCat("r", i), Named(absl::StrCat(i)),
                              viriat_.admin(), [&](absl::StatusOr<interco::v1::Record> r) {
                                absl::MutexLock l(&mu);
                                ++done;
                                if (r.ok()) ++accepted;
                              });
  }
  {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(+[](int* d) { return *d == kWrites; }, &done));
  }
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, kWrites);
  // The owner judges each of Viriat's batches by the version its header names: all pass.
  absl::Status carried = Carry(viriat_, epci_);
  EXPECT_TRUE(carried.ok()) << carried;
  replication::VersionVector at_owner = *epci_.store->Position(kRegistry);
  const OriginKey from_viriat{viriat_.store->origin(), 1};
  EXPECT_EQ(at_owner[from_viriat].seq, static_cast<uint64_t>(accepted));
}

// An origin's stamps grow along its chain, from one batch to the next too.
TEST_F(PolicyStoreTest, ABatchStampedNoLaterThanTheOneBeforeIsRefused) {
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin()).ok());
  ASSERT_TRUE(Carry(viriat_, epci_).ok());
  const OriginKey key{viriat_.store->origin(), viriat_.store->epoch()};
  const auto written = *viriat_.store->ReadBatches(kRegistry, key, 0, 1);
  auto first = replication::DecodeBatch(written.front(), hasher_);
  ASSERT_TRUE(first.ok());
  interco::replication::v1::Change again = first->changes.front();
  again.set_key("ecole");  // stamped as the change before it
  replication::BatchParams params;
  params.origin = key.origin;
  params.epoch = key.epoch;
  params.stream = kRegistry;
  params.first_seq = 2;
  params.prev_hash = first->header_hash;
  params.max_hlc = again.hlc();
  params.policy_version = first->header.policy_version();
  auto batch = replication::BuildBatch(params, {again.SerializeAsString()}, hasher_, nullptr,
                                       nullptr);
  ASSERT_TRUE(batch.ok());
  const absl::Status s =
      epci_.store->ApplyRemoteBatch(kRegistry, *replication::DecodeBatch(*batch, hasher_));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not after the batch before it"));
  EXPECT_EQ(epci_.store->GetRecord(kRegistry, "ecole").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(PolicyStoreTest, AMalformedChangeFromAWriterRefusesItsWholeBatch) {
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin()).ok());
  const OriginKey key{viriat_.store->origin(), viriat_.store->epoch()};
  const auto written = *viriat_.store->ReadBatches(kRegistry, key, 0, 1);
  auto good = replication::DecodeBatch(written.front(), hasher_);
  ASSERT_TRUE(good.ok());
  // The same writer's batch with a second change whose field is not in the schema.
  interco::replication::v1::Change bad = good->changes.front();
  bad.set_key("ecole");
  bad.mutable_delta()->mutable_fields(0)->set_name("zzz");
  bad.set_hlc(bad.hlc() + 1);  // stamps grow along a chain
  replication::BatchParams params;
  params.origin = key.origin;
  params.epoch = key.epoch;
  params.stream = kRegistry;
  params.max_hlc = bad.hlc();
  params.policy_version = good->header.policy_version();
  auto batch = replication::BuildBatch(
      params, {good->changes.front().SerializeAsString(), bad.SerializeAsString()}, hasher_,
      nullptr, nullptr);
  ASSERT_TRUE(batch.ok());
  auto decoded = replication::DecodeBatch(*batch, hasher_);
  ASSERT_TRUE(decoded.ok());
  const absl::Status s = epci_.store->ApplyRemoteBatch(kRegistry, *decoded);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("change 1 (record ecole)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("(zzz): no such field"));
  // Nothing of it: not even its valid first change.
  EXPECT_EQ(epci_.store->GetRecord(kRegistry, "mairie").status().code(),
            absl::StatusCode::kNotFound);
  replication::VersionVector at_owner = *epci_.store->Position(kRegistry);
  EXPECT_EQ(at_owner[key].seq, 0u);
  // The genuine batch still applies.
  EXPECT_TRUE(Carry(viriat_, epci_).ok());
  EXPECT_TRUE(epci_.store->GetRecord(kRegistry, "mairie").ok());
}

TEST_F(PolicyStoreTest, AStoreWrittenBeforePolicyVersionsKeepsItsDeclaredPolicy) {
  // Such a store has the declared policy only in the registry definition.
  epci_.store.reset();
  {
    RocksDbOptions o;
    o.path = epci_.dir;
    auto db = RocksDbStore::Open(o);
    ASSERT_TRUE(db.ok()) << db.status();
    rocksdb::WriteBatch wb;
    const std::string key = keys::Policy(kRegistry, 0);
    wb.Delete((*db)->handle(Cf::kMeta), rocksdb::Slice(key.data(), key.size()));
    ASSERT_TRUE((*db)->Write(wb, /*sync=*/true).ok());
  }
  Open(epci_);
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  Open(epci_);  // version 0 and the new version both load
  ASSERT_NE(epci_.store, nullptr);
  const Registry r = *epci_.store->GetRegistry(kRegistry);
  EXPECT_GT(r.policy_version(), 0u);
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  EXPECT_TRUE(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin()).ok());
}

TEST_F(PolicyStoreTest, OnlyTheOwnersNodeAndAuthoritySetThePolicyAndBadUpdatesChangeNothing) {
  absl::Status s = SetPolicy(viriat_, WritersPolicy({kViriat}), viriat_.admin()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("owned by 200071751"));

  const Principal lyon{"interco.test", kLyon, "admin"};
  s = SetPolicy(epci_, WritersPolicy({kLyon}), lyon).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;

  s = SetPolicy(epci_, WritersPolicy({"123456789"}), epci_.admin()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("registry.policy.writers.authorities[0]"));

  s = epci_.store->UpdateRegistry(kRegistry, Registry(), {"schema"}, "", epci_.admin()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("update_mask.paths[0]"));
  s = epci_.store->UpdateRegistry(kRegistry, Registry(), {}, "", epci_.admin()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  s = epci_.store
          ->UpdateRegistry(kRegistry, WithPolicy(WritersPolicy({kViriat})), {"policy"},
                           "0000000000000001", epci_.admin())
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;

  // A valid policy with an invalid second path: all or nothing.
  Registry both = WithPolicy(WritersPolicy({kViriat}));
  both.set_audit_retention_days(-1);
  s = epci_.store->UpdateRegistry(kRegistry, both, {"policy", "audit_retention_days"}, "",
                                  epci_.admin())
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  const Registry after = *epci_.store->GetRegistry(kRegistry);
  EXPECT_EQ(after.policy_version(), 0u);
  EXPECT_EQ(after.policy().writers().authorities_size(), 0);
  EXPECT_EQ(epci_.store->Position(kRegistry)->size(), 0u) << "nothing entered the log";

  // The node's own retention setting, with the etag it has now.
  both.set_audit_retention_days(30);
  absl::StatusOr<Registry> updated = epci_.store->UpdateRegistry(
      kRegistry, both, {"audit_retention_days"}, after.etag(), epci_.admin());
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->audit_retention_days(), 30);
  EXPECT_EQ(updated->policy_version(), 0u);
}

// The etag changes whenever the definition a reader sees changes, even when the owner's
// policy change is older than this node's last change of its own settings.
TEST_F(PolicyStoreTest, APolicyChangeOlderThanALocalSettingStillChangesTheEtag) {
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  Registry retention;
  retention.set_audit_retention_days(30);
  ASSERT_TRUE(viriat_.store
                  ->UpdateRegistry(kRegistry, retention, {"audit_retention_days"}, "",
                                   viriat_.admin())
                  .ok());
  const Registry before = *viriat_.store->GetRegistry(kRegistry);
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  const Registry after = *viriat_.store->GetRegistry(kRegistry);
  ASSERT_GT(after.policy_version(), 0u);
  EXPECT_NE(after.etag(), before.etag()) << "a client holding the old etag would overwrite "
                                            "a definition it has not seen";
  // And an update with the stale etag is refused.
  retention.set_audit_retention_days(60);
  EXPECT_EQ(viriat_.store
                ->UpdateRegistry(kRegistry, retention, {"audit_retention_days"}, before.etag(),
                                 viriat_.admin())
                .status()
                .code(),
            absl::StatusCode::kAborted);
}

TEST_F(PolicyStoreTest, MembersOfAnEpciResolveFromTheDirectoryOnTheOwnersNode) {
  Policy by_epci;
  by_epci.mutable_writers()->add_members_of(kEpci);
  absl::Status s = SetPolicy(epci_, by_epci, epci_.admin()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("registry.policy.writers.members_of[0]"));

  LoadDirectory({kViriat, kBourgEnBresse});

  // A client's `members` is output only: replaced by the directory's.
  by_epci.mutable_writers()->add_members(kLyon);
  absl::StatusOr<Registry> set = SetPolicy(epci_, by_epci, epci_.admin());
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_THAT(set->policy().writers().members(), ElementsAre(kEpci, kBourgEnBresse, kViriat));

  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  EXPECT_THAT(viriat_.store->GetRegistry(kRegistry)->policy().writers().members(),
              ElementsAre(kEpci, kBourgEnBresse, kViriat));
  EXPECT_TRUE(viriat_.store->Write(kRegistry, "mairie", Named("Mairie"), viriat_.admin()).ok());
}

TEST_F(PolicyStoreTest, MembersOfDeclaredAtCreationBecomeTheOwnersFirstPolicyChange) {
  LoadDirectory({kViriat});
  Registry def = ServicesDefinition();
  def.mutable_policy()->mutable_writers()->add_members_of(kEpci);
  absl::StatusOr<Registry> owner_side = epci_.store->CreateRegistry("agenda", def, epci_.admin());
  ASSERT_TRUE(owner_side.ok()) << owner_side.status();
  EXPECT_GT(owner_side->policy_version(), 0u);
  EXPECT_THAT(owner_side->policy().writers().members(), ElementsAre(kEpci, kViriat));

  // The owner's current definition is not a declaration.
  EXPECT_EQ(viriat_.store->CreateRegistry("agenda", *owner_side, Principal{"interco.test", kViriat, ""})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // A member declaring the same registry starts from version 0, without members, until
  // the owner's change arrives.
  absl::StatusOr<Registry> member_side =
      viriat_.store->CreateRegistry("agenda", def, Principal{"interco.test", kViriat, ""});
  ASSERT_TRUE(member_side.ok()) << member_side.status();
  EXPECT_EQ(member_side->policy_version(), 0u);
  EXPECT_EQ(member_side->policy().writers().members_size(), 0);
  ASSERT_TRUE(Carry(epci_, viriat_, "agenda").ok());
  EXPECT_EQ(viriat_.store->GetRegistry("agenda")->policy_version(),
            owner_side->policy_version());
  EXPECT_TRUE(viriat_.store->Write("agenda", "conseil", Named("Conseil"), viriat_.admin()).ok());
}

// Garbage collection (replication/collection.h): the owner collects the tombstones its
// stable frontier covers, with a change of its chain that every store applies at the
// same point, once it holds what the collection requires.
class CollectionStoreTest : public PolicyStoreTest {
 protected:
  CollectionStoreTest() {
    bourg_.dir = MakeTempDir("policy-bourg");
    Open(bourg_);
    EXPECT_TRUE(bourg_.store->CreateRegistry(kRegistry, ServicesDefinition(),
                                             Principal{"interco.test", kBourgEnBresse, ""})
                    .ok());
  }

  void Delete(Node& n, const std::string& id) {
    LocalWrite w;
    w.kind = LocalWrite::Kind::kDelete;
    ASSERT_TRUE(n.store->Write(kRegistry, id, w, n.admin()).ok()) << id;
  }

  // Whether `n` still stores record `id` (a tombstone counts).
  bool Stores(Node& n, const std::string& id) {
    absl::StatusOr<std::optional<replication::RecordState>> s = n.store->StoredState(kRegistry, id);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() && s->has_value();
  }

  replication::VersionVector Position(Node& n) { return *n.store->Position(kRegistry); }

  // n's collection at `frontier`, waited for by the members n's store declares.
  bool CollectOn(Node& n, const replication::VersionVector& frontier,
                 const replication::VersionVector& required) {
    absl::StatusOr<bool> collected =
        n.store->Collect(kRegistry,
            replication::CollectionPlan{frontier, required, n.store->Members(kRegistry)});
    EXPECT_TRUE(collected.ok()) << collected.status();
    return collected.ok() && *collected;
  }

  Node bourg_{kBourgEnBresse, "", nullptr};
};

TEST_F(CollectionStoreTest, TheOwnerCollectsStableTombstonesAndEveryStoreTheSame) {
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "piscine", Named("Piscine"), viriat_.admin()).ok());
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "stade", Named("Stade"), viriat_.admin()).ok());
  Delete(viriat_, "piscine");
  ASSERT_TRUE(epci_.store->Write(kRegistry, "mairie", Named("Mairie"), epci_.admin()).ok());
  Delete(epci_, "mairie");
  ASSERT_TRUE(Carry(viriat_, epci_).ok());
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  // Viriat's last change (its delete) is not under the frontier yet: only Épci's is.
  replication::VersionVector frontier = Position(epci_);
  frontier[OriginKey{viriat_.store->origin(), 1}].seq -= 1;
  const replication::VersionVector held = Position(epci_);

  // Not the owner: nothing.
  EXPECT_FALSE(CollectOn(viriat_, frontier, held));
  ASSERT_TRUE(CollectOn(epci_, frontier, held));
  EXPECT_FALSE(Stores(epci_, "mairie"));
  EXPECT_TRUE(Stores(epci_, "piscine")) << "a delete beyond the frontier was collected";
  EXPECT_TRUE(Stores(epci_, "stade"));
  // Nothing more under that frontier.
  EXPECT_FALSE(CollectOn(epci_, frontier, held));
  // The rest of it, later.
  ASSERT_TRUE(CollectOn(epci_, held, held));
  EXPECT_FALSE(Stores(epci_, "piscine"));

  // Viriat applies both collections in the owner's chain, to the same effect.
  EXPECT_TRUE(Stores(viriat_, "mairie"));
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  EXPECT_FALSE(Stores(viriat_, "mairie"));
  EXPECT_FALSE(Stores(viriat_, "piscine"));
  EXPECT_TRUE(viriat_.store->GetRecord(kRegistry, "stade").ok());
  // The registry's definition did not change (its etag neither).
  EXPECT_EQ(viriat_.store->GetRegistry(kRegistry)->etag(),
            epci_.store->GetRegistry(kRegistry)->etag());
  EXPECT_EQ(viriat_.store->GetRegistry(kRegistry)->policy().writers().authorities_size(), 1);
  // A record created again after the collection starts a new life everywhere.
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "piscine", Named("Piscine neuve"), viriat_.admin()).ok());
  ASSERT_TRUE(Carry(viriat_, epci_).ok());
  EXPECT_EQ(epci_.store->GetRecord(kRegistry, "piscine")->fields().at("nom").string_value(),
            "Piscine neuve");
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"));
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"));
}

TEST_F(CollectionStoreTest, ACollectionWaitsForWhatItRequires) {
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat, kBourgEnBresse}), epci_.admin()).ok());
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  ASSERT_TRUE(Carry(epci_, bourg_).ok());
  ASSERT_TRUE(viriat_.store->Write(kRegistry, "piscine", Named("Piscine"), viriat_.admin()).ok());
  Delete(viriat_, "piscine");
  // Bourg renamed the pool before it saw the delete; the owner has both.
  ASSERT_TRUE(bourg_.store->Write(kRegistry, "piscine", Named("Piscine de Bourg"), bourg_.admin()).ok());
  ASSERT_TRUE(Carry(viriat_, epci_).ok());
  ASSERT_TRUE(Carry(bourg_, epci_).ok());
  const replication::VersionVector held = Position(epci_);
  ASSERT_TRUE(CollectOn(epci_, held, held));
  EXPECT_FALSE(Stores(epci_, "piscine"));

  // Viriat lacks Bourg's rename, concurrent with the delete: collected before it came,
  // the pool would come back with it. The collection waits.
  absl::Status early = Carry(epci_, viriat_);
  EXPECT_EQ(early.code(), absl::StatusCode::kUnavailable) << early;
  EXPECT_TRUE(Stores(viriat_, "piscine"));
  ASSERT_TRUE(Carry(bourg_, viriat_).ok());
  EXPECT_FALSE(viriat_.store->GetRecord(kRegistry, "piscine").ok()) << "the delete won";
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  EXPECT_FALSE(Stores(viriat_, "piscine"));
  // Bourg, which wrote after the collection was made, gets it too.
  ASSERT_TRUE(Carry(viriat_, bourg_).ok());
  ASSERT_TRUE(Carry(epci_, bourg_).ok());
  EXPECT_FALSE(Stores(bourg_, "piscine"));
}

TEST_F(CollectionStoreTest, ARegistryEverOpenToEveryWriterIsNeverCollected) {
  ASSERT_TRUE(epci_.store->Write(kRegistry, "mairie", Named("Mairie"), epci_.admin()).ok());
  Delete(epci_, "mairie");
  Policy open;
  open.mutable_writers()->set_all_authorities(true);
  ASSERT_TRUE(SetPolicy(epci_, open, epci_.admin()).ok());
  EXPECT_FALSE(CollectOn(epci_, Position(epci_), Position(epci_)));
  EXPECT_TRUE(Stores(epci_, "mairie"));
  // Listed again: a batch written under the open version, by a node nobody heard of, may
  // still come (it is judged by the version it names). Still never collected.
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  EXPECT_FALSE(CollectOn(epci_, Position(epci_), Position(epci_)));
  EXPECT_TRUE(Stores(epci_, "mairie"));
}

TEST_F(CollectionStoreTest, AWriterOfAnyVersionIsAMember) {
  EXPECT_EQ(epci_.store->Members(kRegistry), std::vector<uint32_t>{epci_.store->origin()});
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat, kBourgEnBresse}), epci_.admin()).ok());
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  // Bourg may no longer write, but what it wrote before it saw that is still accepted:
  // its report is awaited like the others'.
  std::vector<uint32_t> members = epci_.store->Members(kRegistry);
  std::sort(members.begin(), members.end());
  EXPECT_EQ(members, (std::vector<uint32_t>{*replication::SirenToOrigin(kEpci),
                                            *replication::SirenToOrigin(kBourgEnBresse),
                                            *replication::SirenToOrigin(kViriat)}));
}

TEST_F(CollectionStoreTest, AWriterAddedSinceTheFrontierWasComputedStopsTheCollection) {
  ASSERT_TRUE(epci_.store->Write(kRegistry, "mairie", Named("Mairie"), epci_.admin()).ok());
  Delete(epci_, "mairie");
  const std::vector<uint32_t> members = epci_.store->Members(kRegistry);
  // Viriat becomes a writer between the frontier and the collection: it was not waited
  // for, and may not hold the delete.
  ASSERT_TRUE(SetPolicy(epci_, WritersPolicy({kViriat}), epci_.admin()).ok());
  EXPECT_FALSE(*epci_.store->Collect(kRegistry,
      replication::CollectionPlan{Position(epci_), Position(epci_), members}));
  EXPECT_TRUE(Stores(epci_, "mairie"));
  EXPECT_TRUE(CollectOn(epci_, Position(epci_), Position(epci_)));
  EXPECT_FALSE(Stores(epci_, "mairie"));
}

TEST_F(CollectionStoreTest, DeletesCommittedTogetherAreIndexedByTheirOwnChanges) {
  constexpr int kRecords = 60;
  for (int i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(
        epci_.store->Write(kRegistry, absl::StrCat("r", i), Named("R"), epci_.admin()).ok());
  }
  // Deleted all at once: commit groups then hold several deletes each.
  std::atomic<int> done{0};
  for (int i = 0; i < kRecords; ++i) {
    LocalWrite w;
    w.kind = LocalWrite::Kind::kDelete;
    epci_.store->WriteAsync(kRegistry, absl::StrCat("r", i), w, epci_.admin(),
                            [&](absl::StatusOr<interco::v1::Record> r) {
                              EXPECT_TRUE(r.ok()) << r.status();
                              done++;
                            });
  }
  while (done < kRecords) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Which change deleted which record, from the log.
  const OriginKey own{epci_.store->origin(), epci_.store->epoch()};
  std::map<std::string, uint64_t> deleted_at;
  size_t batches = 0;
  absl::StatusOr<std::vector<interco::replication::v1::Batch>> log =
      epci_.store->ReadBatches(kRegistry, own, 0, 1000);
  ASSERT_TRUE(log.ok()) << log.status();
  for (const interco::replication::v1::Batch& b : *log) {
    BatchHeader h;
    h.ParseFromString(b.header());
    ++batches;
    for (int i = 0; i < b.changes_size(); ++i) {
      interco::replication::v1::Change c;
      c.ParseFromString(b.changes(i));
      if (c.delta().causal_length() == 2) deleted_at[c.key()] = h.first_seq() + i;
    }
  }
  ASSERT_EQ(deleted_at.size(), static_cast<size_t>(kRecords));
  EXPECT_LT(batches, static_cast<size_t>(2 * kRecords)) << "no commit group held two deletes";
  // A frontier half-way through the deletes collects exactly those at or below it.
  const uint64_t cut = (*epci_.store->Position(kRegistry))[own].seq - kRecords / 2;
  replication::VersionVector frontier;
  frontier[own].seq = cut;
  ASSERT_TRUE(CollectOn(epci_, frontier, frontier));
  for (const auto& [id, seq] : deleted_at) {
    EXPECT_EQ(Stores(epci_, id), seq > cut) << id << " deleted by change " << seq;
  }
  EXPECT_EQ(epci_.store->CollectedOf(kRegistry)->records, static_cast<uint64_t>(kRecords / 2));
}

TEST_F(CollectionStoreTest, TombstonesStayIndexedAcrossARestart) {
  ASSERT_TRUE(epci_.store->Write(kRegistry, "mairie", Named("Mairie"), epci_.admin()).ok());
  Delete(epci_, "mairie");
  ASSERT_TRUE(epci_.store->Write(kRegistry, "ecole", Named("École"), epci_.admin()).ok());
  Delete(epci_, "ecole");
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  Open(viriat_);
  replication::VersionVector first = Position(epci_);
  first.begin()->second.seq -= 1;  // the school's delete is not under it
  ASSERT_TRUE(CollectOn(epci_, first, first));
  ASSERT_TRUE(CollectOn(epci_, Position(epci_), Position(epci_)));
  ASSERT_TRUE(Carry(epci_, viriat_).ok());
  EXPECT_FALSE(Stores(viriat_, "mairie"));
  EXPECT_FALSE(Stores(viriat_, "ecole"));
  Open(viriat_);
  EXPECT_FALSE(Stores(viriat_, "mairie"));
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 0 records"));
}

// Removed elements of a string set go with the owner's collections, alike everywhere: a
// remove concurrent with a collected one, arriving after the collection, leaves the record
// as it leaves the owner, where it arrived before; restarts keep the index.
// A registry of the EPCI with a string set, written by the EPCI, Viriat and Bourg.
class SetCollectionStoreTest : public CollectionStoreTest {
 protected:
  static constexpr char kSets[] = "equipements";
  SetCollectionStoreTest() {
    for (Node* n : {&epci_, &viriat_, &bourg_}) {
      Registry def;
      def.set_owner(kEpci);
      for (const char* w : {kEpci, kViriat, kBourgEnBresse}) {
        def.mutable_policy()->mutable_writers()->add_authorities(w);
      }
      auto* f = def.mutable_schema()->add_fields();
      f->set_name("tags");
      f->set_type(interco::v1::FIELD_TYPE_STRING_SET);
      EXPECT_TRUE(n->store->CreateRegistry(kSets, def, n->admin()).ok()) << n->siren;
    }
  }
  void Tags(Node& n, std::vector<std::string> values) {
    auto written = n.store->Write(kSets, "piscine", Tags_(std::move(values)), n.admin());
    ASSERT_TRUE(written.ok()) << n.siren << ": " << written.status();
  }
  // How many removed elements the piscine's set keeps on `n`.
  int Removed(Node& n) {
    auto state = n.store->StoredState(kSets, "piscine");
    EXPECT_TRUE(state.ok() && state->has_value());
    return state.ok() && state->has_value() ? (*state)->fields(0).removed_size() : -1;
  }
  static LocalWrite Tags_(std::vector<std::string> values) {
    Value v;
    for (const std::string& t : values) v.mutable_string_set_value()->add_values(t);
    return Upsert("tags", v);
  }
  std::string StateOf(Node& n) {
    return (*n.store->StoredState(kSets, "piscine"))->SerializeAsString();
  }
  bool CollectAll(Node& n) {
    const replication::VersionVector all = *n.store->Position(kSets);
    absl::StatusOr<bool> collected =
        n.store->Collect(kSets, replication::CollectionPlan{all, all, n.store->Members(kSets)});
    EXPECT_TRUE(collected.ok()) << collected.status();
    return collected.ok() && *collected;
  }
};

TEST_F(SetCollectionStoreTest, RemovedSetElementsAreCollectedAlikeEverywhere) {
  Tags(epci_, {"bassin", "sauna"});
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  // Both remove the sauna without seeing each other's remove.
  Tags(epci_, {"bassin"});
  Tags(viriat_, {"bassin", "plongeoir"});
  ASSERT_TRUE(Carry(viriat_, epci_, kSets).ok());
  ASSERT_EQ(Removed(epci_), 1);
  // A frontier with the EPCI's changes only: its add and its remove of the sauna.
  replication::VersionVector frontier = *epci_.store->Position(kSets);
  frontier.erase(OriginKey{viriat_.store->origin(), 1});
  absl::StatusOr<bool> collected = epci_.store->Collect(
      kSets, replication::CollectionPlan{frontier, frontier, epci_.store->Members(kSets)});
  ASSERT_TRUE(collected.ok()) << collected.status();
  ASSERT_TRUE(*collected);
  EXPECT_EQ(Removed(epci_), 0);
  EXPECT_EQ(epci_.store->CollectedOf(kSets)->removals, 1u);
  // Bourg gets the EPCI's chain, collection included, then Viriat's remove.
  ASSERT_TRUE(Carry(epci_, bourg_, kSets).ok());
  EXPECT_EQ(Removed(bourg_), 0);
  Open(bourg_);
  ASSERT_TRUE(Carry(viriat_, bourg_, kSets).ok());
  EXPECT_EQ(Removed(bourg_), 0) << "a late remove brought a collected removal back";
  EXPECT_EQ(StateOf(bourg_), StateOf(epci_));
  // Viriat, which had both removes, applies the collection: the same again.
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(viriat_.store->CollectedOf(kSets)->removals, 1u);
  // The visible set is untouched.
  auto record = epci_.store->GetRecord(kSets, "piscine");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->fields().at("tags").string_set_value().values_size(), 2);
  // Viriat's remove is indexed too: the next collection, covering it, resolves it.
  ASSERT_TRUE(CollectAll(epci_));
  EXPECT_FALSE(CollectAll(epci_));
  for (Node* n : {&epci_, &viriat_, &bourg_}) {
    Open(*n);
    absl::StatusOr<std::string> check = n->store->CheckConsistency();
    EXPECT_TRUE(check.ok()) << n->siren << ": " << check.status();
  }
}

// A remove whose add is not under the frontier stays: the add may still arrive where the
// collection is applied (changes of different origins travel independently).
TEST_F(SetCollectionStoreTest, ARemoveIsNotCollectedBeforeItsAdd) {
  Tags(bourg_, {"sauna"});
  ASSERT_TRUE(Carry(bourg_, viriat_, kSets).ok());
  Tags(viriat_, {"bassin"});  // removes Bourg's sauna
  // A deleted record of Viriat's, so that there is something to collect.
  ASSERT_TRUE(viriat_.store->Write(kSets, "ecole", Tags_({"cour"}), viriat_.admin()).ok());
  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  ASSERT_TRUE(viriat_.store->Write(kSets, "ecole", del, viriat_.admin()).ok());
  // The EPCI holds Viriat's changes, not Bourg's add; its frontier is Viriat's alone.
  ASSERT_TRUE(Carry(viriat_, epci_, kSets).ok());
  const replication::VersionVector frontier = *viriat_.store->Position(kSets);
  replication::VersionVector viriat_only;
  const OriginKey viriat{viriat_.store->origin(), 1};
  viriat_only[viriat] = frontier.at(viriat);
  ASSERT_TRUE(*epci_.store->Collect(
      kSets, replication::CollectionPlan{viriat_only, viriat_only, epci_.store->Members(kSets)}));
  EXPECT_EQ(epci_.store->CollectedOf(kSets)->records, 1u);
  EXPECT_EQ(epci_.store->CollectedOf(kSets)->removals, 0u);
  EXPECT_EQ(Removed(epci_), 1);
  // Bourg's add arrives: the sauna stays removed.
  ASSERT_TRUE(Carry(bourg_, epci_, kSets).ok());
  auto record = epci_.store->GetRecord(kSets, "piscine");
  ASSERT_TRUE(record.ok());
  const auto& values = record->fields().at("tags").string_set_value().values();
  EXPECT_EQ(std::vector<std::string>(values.begin(), values.end()),
            std::vector<std::string>{"bassin"});
  // Once it is under the frontier, it goes.
  ASSERT_TRUE(CollectAll(epci_));
  EXPECT_EQ(Removed(epci_), 0);
}

// An origin restored from a backup has two epochs; its adds' stamps do not say which: the
// owner names both in the frontier (one at 0 when none of it is under it), and the
// removed elements that origin added stay.
// An origin restored from a backup has two epochs, and a stamp does not say which one
// its change is of: a removed element it added goes only once the frontier covers the
// stamp in every epoch of it; and every node takes that collection (its frontier names
// the epoch under which nothing is stable yet, at 0).
TEST_F(SetCollectionStoreTest, RemovedElementsAddedByARestoredOriginGoOnceEveryEpochCoversThem) {
  Tags(bourg_, {"sauna"});
  ASSERT_TRUE(bourg_.store->StartNewEpoch().ok());  // as after a restore
  Tags(bourg_, {"sauna", "hammam"});
  // Both epochs reach the others (every registry went on in a new epoch above the old).
  ASSERT_EQ(bourg_.store->Position(kSets)->size(), 2u);
  EXPECT_GT(bourg_.store->OriginEpoch(kSets), 2u);
  ASSERT_TRUE(Carry(bourg_, viriat_, kSets).ok());
  ASSERT_TRUE(Carry(bourg_, epci_, kSets).ok());
  ASSERT_EQ(epci_.store->Position(kSets)->size(), 2u);
  Tags(viriat_, {"hammam"});  // removes the sauna, added in Bourg's first epoch
  // A deleted record of Viriat's, so that there is something to collect.
  ASSERT_TRUE(viriat_.store->Write(kSets, "ecole", Tags_({"cour"}), viriat_.admin()).ok());
  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  ASSERT_TRUE(viriat_.store->Write(kSets, "ecole", del, viriat_.admin()).ok());
  ASSERT_TRUE(Carry(viriat_, epci_, kSets).ok());
  ASSERT_EQ(Removed(epci_), 1);
  // A frontier without Bourg's first epoch (as if it were not stable yet): the sauna's
  // stamp may be of that epoch. The tombstone goes; the sauna stays.
  replication::VersionVector frontier = *epci_.store->Position(kSets);
  frontier.erase(OriginKey{bourg_.store->origin(), 1});
  EXPECT_TRUE(*epci_.store->Collect(
      kSets, replication::CollectionPlan{frontier, frontier, epci_.store->Members(kSets)}));
  EXPECT_EQ(Removed(epci_), 1);
  // Its frontier names that epoch at 0; Viriat takes it all the same.
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EXPECT_FALSE(viriat_.store->StoredState(kSets, "ecole")->has_value());
  EXPECT_EQ(Removed(viriat_), 1);
  // Both epochs under the frontier: it goes, here and wherever the collection is applied.
  EXPECT_TRUE(CollectAll(epci_));
  EXPECT_EQ(Removed(epci_), 0);
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EXPECT_EQ(Removed(viriat_), 0);
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
}

// A store of format 5 had no index of removes: it gets it from its change log at open.
TEST_F(SetCollectionStoreTest, AFormatFiveStoreGetsItsRemovesIndexedAtOpen) {
  Tags(epci_, {"bassin", "sauna"});
  Tags(epci_, {"bassin"});
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  Tags(viriat_, {"plongeoir"});
  ASSERT_TRUE(Carry(viriat_, epci_, kSets).ok());
  ASSERT_EQ(Removed(epci_), 2);
  epci_.store.reset();
  {
    RocksDbOptions o;
    o.path = epci_.dir;
    auto db = RocksDbStore::Open(o);
    ASSERT_TRUE(db.ok());
    rocksdb::WriteBatch wb;
    auto it = (*db)->NewIterator(Cf::kRemovals);
    int entries = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++entries) {
      wb.Delete((*db)->handle(Cf::kRemovals), it->key());
    }
    EXPECT_EQ(entries, 2);  // the EPCI's remove and Viriat's
    interco::internal::v1::NodeMeta meta;
    ASSERT_TRUE(meta.ParseFromString(**(*db)->Get(Cf::kMeta, keys::kNodeMeta)));
    meta.set_format_version(5);
    wb.Put((*db)->handle(Cf::kMeta), std::string(keys::kNodeMeta), meta.SerializeAsString());
    ASSERT_TRUE((*db)->Write(wb, true).ok());
  }
  Open(epci_);
  ASSERT_TRUE(CollectAll(epci_));
  EXPECT_EQ(Removed(epci_), 0);
  EXPECT_EQ(epci_.store->CollectedOf(kSets)->removals, 2u);
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_TRUE(epci_.store->CheckConsistency().ok());
}

// Members left out (replication/exclusion.h): the owner's collection leaves Bourg out
// (absent, say) with its chain cut where the EPCI holds it; what Bourg wrote beyond the
// cut before it applied the collection is refused everywhere — refused on receipt, taken
// out again (a replay of the log) where it was applied before the collection came, and,
// on Bourg itself, kept aside while Bourg goes on in a new epoch.
class ExclusionStoreTest : public SetCollectionStoreTest {
 protected:
  ExclusionStoreTest() {
    // Bourg's sauna, everywhere; then its hammam, written while it was cut off.
    Tags(bourg_, {"sauna"});
    EXPECT_TRUE(Carry(bourg_, epci_, kSets).ok());
    EXPECT_TRUE(Carry(bourg_, viriat_, kSets).ok());
    Tags(bourg_, {"sauna", "hammam"});
    // Something to collect: a record the EPCI creates and deletes.
    EXPECT_TRUE(epci_.store->Write(kSets, "ecole", Tags_({"cour"}), epci_.admin()).ok());
    LocalWrite del;
    del.kind = LocalWrite::Kind::kDelete;
    EXPECT_TRUE(epci_.store->Write(kSets, "ecole", del, epci_.admin()).ok());
  }
  // The EPCI's collection of all it holds, leaving Bourg out (and Viriat too, with
  // `viriat`) at what it holds of them.
  void CollectLeavingOutBourg(bool viriat = false, uint64_t journal_before = 0) {
    replication::CollectionPlan plan;
    plan.journal_before = journal_before;
    plan.compaction_changes = journal_before == 0 ? 0 : 1;
    plan.frontier = *epci_.store->Position(kSets);
    plan.required = plan.frontier;
    plan.members = epci_.store->Members(kSets);
    plan.excluded = {bourg_.store->origin()};
    if (viriat) plan.excluded.push_back(viriat_.store->origin());
    std::sort(plan.excluded.begin(), plan.excluded.end());
    for (const auto& [key, pos] : plan.frontier) {
      if (std::find(plan.excluded.begin(), plan.excluded.end(), key.origin) !=
          plan.excluded.end()) {
        plan.cuts[key] = pos;
      }
    }
    absl::StatusOr<bool> collected = epci_.store->Collect(kSets, plan);
    ASSERT_TRUE(collected.ok()) << collected.status();
    ASSERT_TRUE(*collected);
  }
  uint64_t Held(Node& n, const OriginKey& key) { return (*n.store->Position(kSets))[key].seq; }
  // With `n`'s store closed, changes its registry's metadata (and more, in `wb`) on disk,
  // as a crash or a fault would have left them.
  void EditOnDisk(Node& n, const std::function<void(interco::internal::v1::RegistryMeta&,
                                                    RocksDbStore&, rocksdb::WriteBatch&)>& edit) {
    n.store.reset();
    RocksDbOptions o;
    o.path = n.dir;
    auto db = RocksDbStore::Open(o);
    ASSERT_TRUE(db.ok());
    interco::internal::v1::RegistryMeta meta;
    ASSERT_TRUE(meta.ParseFromString(**(*db)->Get(Cf::kRegistries, kSets)));
    rocksdb::WriteBatch wb;
    edit(meta, **db, wb);
    wb.Put((*db)->handle(Cf::kRegistries), kSets, meta.SerializeAsString());
    ASSERT_TRUE((*db)->Write(wb, true).ok());
  }
  OriginKey BourgFirst() const { return OriginKey{bourg_.store->origin(), 1}; }
};

TEST_F(ExclusionStoreTest, WhatAMemberLeftOutWroteBeyondItsCutIsRefused) {
  CollectLeavingOutBourg();
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  // Bourg's hammam names a policy version before the collection: refused.
  const absl::Status refused = Carry(bourg_, viriat_, kSets);
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("was left out of collection"));
  EXPECT_EQ(Held(viriat_, BourgFirst()), 1u);
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(viriat_.store->RefusedOf(kSets)->batches, 0u);  // never applied: nothing to undo
  const replication::Exclusions exclusions = viriat_.store->ExclusionsOf(kSets);
  ASSERT_EQ(exclusions.members().size(), 1u);
  EXPECT_EQ(exclusions.members().begin()->second.cuts(0).seq(), 1u);
}

TEST_F(ExclusionStoreTest, ABatchAppliedBeforeTheCollectionCameIsTakenOutAgain) {
  ASSERT_TRUE(Carry(bourg_, viriat_, kSets).ok());  // Viriat got the hammam, the EPCI not
  ASSERT_EQ(Held(viriat_, BourgFirst()), 2u);
  CollectLeavingOutBourg();
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  // Viriat's log was replayed without the hammam: it holds what the EPCI holds.
  EXPECT_EQ(Held(viriat_, BourgFirst()), 1u);
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_FALSE(viriat_.store->StoredState(kSets, "ecole")->has_value());
  const RecordStore::Refused refused = *viriat_.store->RefusedOf(kSets);
  EXPECT_EQ(refused.batches, 1u);
  EXPECT_EQ(refused.own_changes, 0u);
  ASSERT_EQ(viriat_.store->RefusedBatches(kSets)->size(), 1u);
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok"));
  auto audit = viriat_.store->ListAudit(RecordStore::AuditChainOf(kSets), 10, "");
  ASSERT_TRUE(audit.ok());
  EXPECT_EQ(audit->events.front().event().action(), AuditEvent::REPLAY_LOG);
  EXPECT_EQ(audit->events.front().event().count(), 1u);
  // Reopened, it stays so; the same batch offered again is refused.
  Open(viriat_);
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(Carry(bourg_, viriat_, kSets).code(), absl::StatusCode::kPermissionDenied);
}

// The collection that makes a node replay its log also lets it compact the log: the
// compaction runs once the registry is rebuilt.
TEST_F(ExclusionStoreTest, ALogReplayedForACollectionIsCompactedOnceRebuilt) {
  ASSERT_TRUE(Carry(bourg_, viriat_, kSets).ok());  // Viriat got the hammam
  // ...and the EPCI's school, whole (carried after the collection, it might come hollow:
  // the EPCI compacts its own log meanwhile).
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  clock_.Advance(1000);
  // The journals' cut at now: the EPCI's create of the collected school may go.
  CollectLeavingOutBourg(/*viriat=*/false, replication::HybridLogicalClock::Pack(
                                               static_cast<uint64_t>(clock_.NowMillis()), 0));
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  ASSERT_EQ(viriat_.store->RefusedOf(kSets)->batches, 1u) << "no replay";
  uint64_t hollowed = 0;
  for (int i = 0; i < 300 && hollowed == 0; ++i) {
    hollowed = viriat_.store->CollectedOf(kSets)->hollowed_batches;
    if (hollowed == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(hollowed, 1u) << "the create of the collected record";
  EXPECT_EQ(epci_.store->CollectedOf(kSets)->hollowed_batches, 1u);
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok"));
}

TEST_F(ExclusionStoreTest, AMemberLeftOutKeepsItsRefusedWritesAndGoesOnInANewEpoch) {
  CollectLeavingOutBourg();
  ASSERT_TRUE(Carry(epci_, bourg_, kSets).ok());
  // Bourg's hammam is out of its records, kept aside; its chain there ends at the cut.
  EXPECT_EQ(StateOf(bourg_), StateOf(epci_));
  EXPECT_EQ(Held(bourg_, BourgFirst()), 1u);
  const RecordStore::Refused refused = *bourg_.store->RefusedOf(kSets);
  EXPECT_EQ(refused.batches, 1u);
  EXPECT_EQ(refused.own_changes, 1u);
  const uint32_t epoch = bourg_.store->OriginEpoch(kSets);
  EXPECT_EQ(epoch, (1u << 16) | 1u);
  EXPECT_EQ(bourg_.store->OriginEpoch(kRegistry), 1u);  // other registries go on as before
  // Written again, in the new epoch (under the collection's version): everyone takes it.
  Tags(bourg_, {"sauna", "hammam"});
  EXPECT_EQ(Held(bourg_, OriginKey{bourg_.store->origin(), epoch}), 1u);
  ASSERT_TRUE(Carry(bourg_, epci_, kSets).ok());
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  ASSERT_TRUE(Carry(bourg_, viriat_, kSets).ok());
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(StateOf(bourg_), StateOf(epci_));
  Open(bourg_);
  EXPECT_EQ(bourg_.store->OriginEpoch(kSets), epoch);
  EXPECT_THAT(*bourg_.store->CheckConsistency(), ::testing::StartsWith("ok"));
}

// Writes of a node committed with a collection that leaves it out, in one commit group,
// were made holding everything the collection needs: their batch names its version, and
// every node takes it (under an earlier version, beyond a cut of 0, all would refuse it,
// and the node's chain would stop there).
TEST_F(ExclusionStoreTest, WritesCommittedWithTheCollectionThatLeavesTheirNodeOutAreTaken) {
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  CollectLeavingOutBourg(/*viriat=*/true);  // Viriat never wrote here: no cut of it
  std::atomic<int> pending{0};
  std::atomic<int> failed{0};
  auto write_async = [&](int i) {
    pending++;
    viriat_.store->WriteAsync(kSets, absl::StrCat("salle-", i), Tags_({"chaises"}),
                              viriat_.admin(), [&](absl::StatusOr<interco::v1::Record> r) {
                                if (!r.ok()) failed++;
                                pending--;
                              });
  };
  // The collection queues behind writes (groups take up to 512 operations, in order): it
  // shares its group with some of them.
  for (int i = 0; i < 1500; ++i) write_async(i);
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  for (int i = 1500; i < 1600; ++i) write_async(i);
  while (pending > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(failed, 0);
  // Every batch of Viriat's enters the EPCI's store.
  const absl::Status carried = Carry(viriat_, epci_, kSets);
  ASSERT_TRUE(carried.ok()) << carried;
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(replication::Missing(*viriat_.store->Position(kSets), *epci_.store->Position(kSets)),
            0u);
}

// A replay cut short (a crash) is done when the store opens again.
TEST_F(ExclusionStoreTest, AnInterruptedReplayIsDoneAtOpen) {
  ASSERT_TRUE(Carry(bourg_, viriat_, kSets).ok());
  CollectLeavingOutBourg();
  // As if Viriat had committed the collection and stopped before replaying: the
  // exclusion and the replay mark are in its registry's metadata, the hammam in its log.
  const replication::Exclusions exclusions = epci_.store->ExclusionsOf(kSets);
  EditOnDisk(viriat_, [&](interco::internal::v1::RegistryMeta& meta, RocksDbStore&,
                          rocksdb::WriteBatch&) {
    exclusions.Write(*meta.mutable_exclusions());
    auto* cut = meta.add_replay();
    cut->set_origin(bourg_.store->origin());
    cut->set_epoch(1);
    cut->set_seq(1);
  });
  Open(viriat_);
  EXPECT_EQ(Held(viriat_, BourgFirst()), 1u);
  EXPECT_EQ(viriat_.store->RefusedOf(kSets)->batches, 1u);
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok"));
  // The collection itself then comes, and changes nothing more.
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(viriat_.store->RefusedOf(kSets)->batches, 1u);
}

// A repair merges values whose batches the log does not hold yet: one may be a write the
// next collection refuses. That collection rebuilds the state from the log, so the
// refused value goes; a value whose batch is still to come comes back with it.
TEST_F(ExclusionStoreTest, ACollectionAfterARepairRebuildsTheStateFromTheLog) {
  // Viriat repairs from Bourg's copy: the hammam comes without its batch.
  const replication::RecordState bourgs = **bourg_.store->StoredState(kSets, "piscine");
  ASSERT_EQ(*viriat_.store->Repair(kSets, bourg_.store->origin(), 0, {{"piscine", bourgs}},
                                   viriat_.admin()),
            1u);
  ASSERT_NE(StateOf(viriat_), StateOf(epci_));
  CollectLeavingOutBourg();
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(viriat_.store->RefusedOf(kSets)->batches, 0u);  // nothing left the log
}

// The first slices of a large batch committed before a crash (RecordStore::
// StageRemoteChanges) are values no batch of the log holds, as repaired ones are: a
// collection that leaves their origin out rebuilds the state from the log without them.
TEST_F(ExclusionStoreTest, ACollectionAfterAPartlyMergedBatchRebuildsTheStateFromTheLog) {
  const replication::RecordState bourgs = **bourg_.store->StoredState(kSets, "piscine");
  EditOnDisk(viriat_, [&](interco::internal::v1::RegistryMeta& meta, RocksDbStore& db,
                          rocksdb::WriteBatch& wb) {
    const std::string key = keys::Record(kSets, "piscine");
    wb.Put(db.handle(Cf::kRecords), rocksdb::Slice(key.data(), key.size()),
           bourgs.SerializeAsString());
    interco::internal::v1::PartialBatch& m = *meta.add_partial();
    m.set_origin(bourg_.store->origin());
    m.set_epoch(1);
    m.set_first_seq(2);
    m.set_merged(1);
  });
  Open(viriat_);
  ASSERT_NE(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(viriat_.store->Digest(kSets).status().code(), absl::StatusCode::kUnavailable);
  CollectLeavingOutBourg();
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EXPECT_EQ(StateOf(viriat_), StateOf(epci_));
  EXPECT_EQ(viriat_.store->RefusedOf(kSets)->batches, 0u);  // nothing left the log
  EXPECT_TRUE(viriat_.store->Digest(kSets).ok());           // the mark went with the rebuild
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok"));
}

// A replay that cannot finish (here: a batch missing from the log) leaves the registry
// fenced, its reads and writes UNAVAILABLE, rather than serving or writing on a partial
// state; the node's other registries go on.
TEST_F(ExclusionStoreTest, AReplayThatCannotFinishKeepsTheRegistryFenced) {
  ASSERT_TRUE(Carry(epci_, viriat_, kSets).ok());
  EditOnDisk(viriat_, [&](interco::internal::v1::RegistryMeta& meta, RocksDbStore& db,
                          rocksdb::WriteBatch& wb) {
    meta.set_rebuild(true);
    // The EPCI's first batch of the registry is lost: its later ones can never apply.
    wb.Delete(db.handle(Cf::kLog), keys::Log(kSets, epci_.store->origin(), 1, 1));
  });
  Open(viriat_);
  EXPECT_EQ(viriat_.store->GetRecord(kSets, "piscine").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(viriat_.store->Write(kSets, "piscine", Tags_({"bassin"}), viriat_.admin()).status().code(),
            absl::StatusCode::kUnavailable);
  Registry own = ServicesDefinition();
  own.set_owner(kViriat);
  ASSERT_TRUE(viriat_.store->CreateRegistry("salles", own, viriat_.admin()).ok());
  const auto written = viriat_.store->Write("salles", "polyvalente", Named("Salle"), viriat_.admin());
  EXPECT_TRUE(written.ok()) << written.status();
}

}  // namespace
}  // namespace interco::node

#include "node/trust/provenance.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "interco/replication/v1/state.pb.h"
#include "node/crypto/sha256.h"
#include "node/crypto/x509.h"
#include "node/trust/certificate_store.h"
#include "replication/change_log.h"
#include "replication/hlc.h"
#include "replication/ids.h"
#include "replication/record_crdt.h"

namespace interco::node {
namespace {

using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;

absl::Status Invalid(const std::string& what) { return absl::InvalidArgumentError(what); }

// The record ID of "registries/{registry}/records/{record}".
std::string RecordIdOf(const std::string& name) {
  const size_t at = name.rfind("/records/");
  return at == std::string::npos ? "" : name.substr(at + 9);
}

}  // namespace

absl::StatusOr<std::string> VerifyProvenance(const interco::v1::RecordProvenance& p,
                                             const std::string& ca_file,
                                             const std::string& crl_dir) {
  if (p.certificates().empty()) return Invalid("no certificates");
  // The federation is the one of the first certificate; the CA bundle vouches for it.
  absl::StatusOr<X509Ptr> first = ParseDerCertificate(p.certificates(0));
  if (!first.ok()) return Invalid("certificates[0]: not a DER certificate");
  absl::StatusOr<std::string> uri = SpiffeIdOf(first->get());
  if (!uri.ok()) return Invalid("certificates[0]: no SPIFFE ID");
  absl::StatusOr<replication::Principal> principal = replication::ParseSpiffeId(*uri);
  if (!principal.ok()) return Invalid(absl::StrCat("certificates[0]: ", principal.status().message()));

  CertificateStoreOptions o;
  o.federation = principal->federation;
  o.ca_file = ca_file;
  if (!crl_dir.empty()) o.revocation = std::make_shared<RevocationList>(crl_dir, ca_file);
  absl::StatusOr<std::unique_ptr<CertificateStore>> certs = CertificateStore::Open(o);
  if (!certs.ok()) return certs.status();
  for (int i = 0; i < p.certificates_size(); ++i) {
    if (absl::StatusOr<std::string> id = (*certs)->AddCertificate(p.certificates(i)); !id.ok()) {
      return absl::Status(id.status().code(),
                          absl::StrCat("certificates[", i, "]: ", id.status().message()));
    }
  }

  const std::string record_id = RecordIdOf(p.record().name());
  if (record_id.empty()) return Invalid("record.name is not a record name");
  std::vector<Change> changes(static_cast<size_t>(p.batches_size()));
  std::vector<BatchHeader> headers(static_cast<size_t>(p.batches_size()));
  for (int i = 0; i < p.batches_size(); ++i) {
    const interco::v1::ProvenanceBatch& b = p.batches(i);
    const std::string where = absl::StrCat("batches[", i, "]");
    BatchHeader& h = headers[static_cast<size_t>(i)];
    if (!h.ParseFromString(b.header())) return Invalid(absl::StrCat(where, ": header does not parse"));
    if (static_cast<uint32_t>(b.change_digests_size()) != h.count() ||
        b.change_index() >= h.count()) {
      return Invalid(absl::StrCat(where, ": change digests do not match the header's count"));
    }
    std::string digests;
    for (const std::string& d : b.change_digests()) digests += d;
    if (Sha256(digests) != h.body_hash()) {
      return Invalid(absl::StrCat(where, ": change digests do not match the signed body hash"));
    }
    if (Sha256(b.change()) != b.change_digests(static_cast<int>(b.change_index()))) {
      return Invalid(absl::StrCat(where, ": the change shown is not the one at its index"));
    }
    // Signed itself, or covered by the signed batch its chain leads to.
    const bool own = !b.signature().empty();
    if (own != b.following_headers().empty() || own != b.following_signature().empty()) {
      return Invalid(absl::StrCat(where, own ? ": a signed batch with a chain proof"
                                             : ": an unsigned batch without its chain proof"));
    }
    Sha256Hasher hasher;
    const std::vector<std::string> following(b.following_headers().begin(),
                                             b.following_headers().end());
    if (absl::Status s = replication::VerifyCovered(
            b.header(), following, own ? b.signer() : b.following_signer(),
            own ? b.signature() : b.following_signature(), b.signed_at_ms(), hasher, **certs);
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
    }
    Change& c = changes[static_cast<size_t>(i)];
    if (!c.ParseFromString(b.change()) || c.key() != record_id) {
      return Invalid(absl::StrCat(where, ": the change is not about record ", record_id));
    }
    replication::ExpandChange(c, h.origin());
  }

  // Every value shown is proven, and every visible value has a proof.
  std::set<std::pair<std::string, std::string>> proven;
  std::map<std::string, std::map<std::string, int64_t>> counter_shares;  // field -> authority -> share
  std::set<std::string> authorities;
  for (int i = 0; i < p.values_size(); ++i) {
    const interco::v1::ValueProvenance& v = p.values(i);
    const std::string where = absl::StrCat("values[", i, "] (", v.field(),
                                           v.element().empty() ? "" : absl::StrCat(" ", v.element()), ")");
    if (v.batch() < 0 || v.batch() >= p.batches_size()) {
      return Invalid(absl::StrCat(where, ": no signed batch carries it"));
    }
    const Change& c = changes[static_cast<size_t>(v.batch())];
    const BatchHeader& h = headers[static_cast<size_t>(v.batch())];
    if (replication::OriginToSiren(h.origin()) != v.authority() || c.author() != v.author()) {
      return Invalid(absl::StrCat(where, ": authority or author differs from the signed change"));
    }
    auto record_field = p.record().fields().find(v.field());
    if (record_field == p.record().fields().end()) {
      return Invalid(absl::StrCat(where, ": the record has no such field"));
    }
    bool writes = false;
    for (const auto& f : c.delta().fields()) {
      if (f.name() != v.field()) continue;
      if (v.counter()) {
        for (const auto& e : f.counter()) {
          writes |= e.origin() == h.origin() && e.hlc() == v.hlc() &&
                    static_cast<int64_t>(e.increments() - e.decrements()) == v.share();
        }
      } else if (v.element().empty()) {
        writes = f.hlc() == v.hlc() && f.origin() == h.origin() &&
                 f.value().SerializeAsString() == record_field->second.SerializeAsString();
      } else {
        for (const auto& e : f.elements()) {
          writes |= e.value() == v.element() && e.hlc() == v.hlc() && e.origin() == h.origin();
        }
      }
    }
    if (!writes) return Invalid(absl::StrCat(where, ": the signed change does not write this value"));
    if (v.counter()) {
      // A counter is proven by one share per authority that adds up to its value.
      if (!counter_shares[v.field()].emplace(v.authority(), v.share()).second) {
        return Invalid(absl::StrCat(where, ": a second share of the same authority"));
      }
    } else {
      proven.emplace(v.field(), v.element());
    }
    authorities.insert(v.authority());
  }
  for (const auto& [field, shares] : counter_shares) {
    // Shares are sums of int64 totals' differences: compared in 128 bits, no overflow.
    __extension__ typedef __int128 Wide;
    Wide sum = 0;
    for (const auto& [authority, share] : shares) sum += share;
    auto record_field = p.record().fields().find(field);
    // The value shown is the sum clamped to int64 (replication/record_crdt.cc).
    sum = std::clamp<Wide>(sum, std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::max());
    if (record_field == p.record().fields().end() ||
        sum != static_cast<Wide>(record_field->second.int64_value())) {
      return Invalid(absl::StrCat("field ", field, ": the proven shares do not add up to its value"));
    }
    proven.emplace(field, "");
  }
  for (const auto& [name, value] : p.record().fields()) {
    if (value.has_string_set_value()) {
      for (const std::string& e : value.string_set_value().values()) {
        if (!proven.contains({name, e})) return Invalid(absl::StrCat("field ", name, " element ", e, ": no provenance"));
      }
    } else if (!proven.contains({name, ""})) {
      return Invalid(absl::StrCat("field ", name, ": no provenance"));
    }
  }
  return absl::StrCat("verified: ", p.record().name(), ", ", p.values_size(), " values from ",
                      authorities.size(), " authorities in ", p.batches_size(),
                      " signed batches, ", p.certificates_size(), " certificates chaining to ",
                      ca_file);
}

}  // namespace interco::node

#include "replication/ids.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace interco::replication {
namespace {

using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// --- SIREN -----------------------------------------------------------------------------

TEST(ValidateSirenTest, AcceptsRealSirens) {
  EXPECT_TRUE(ValidateSiren("200046977").ok());  // Métropole de Lyon
  EXPECT_TRUE(ValidateSiren("217400423").ok());
  EXPECT_TRUE(ValidateSiren("210100012").ok());
  EXPECT_TRUE(ValidateSiren("356000000").ok());  // La Poste
}

TEST(ValidateSirenTest, AcceptsLeadingZeros) {
  EXPECT_TRUE(ValidateSiren("012345674").ok());
  EXPECT_TRUE(ValidateSiren("001234566").ok());
}

TEST(ValidateSirenTest, RejectsWrongLength) {
  for (const char* s : {"", "20004697", "2000469770", "20004697 ", " 200046977"}) {
    const absl::Status st = ValidateSiren(s);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << "\"" << s << "\"";
  }
  EXPECT_THAT(Message(ValidateSiren("12345")), HasSubstr("9 digits"));
}

TEST(ValidateSirenTest, RejectsNonDigits) {
  for (const char* s : {"20004697A", "A00046977", "2000-6977", "20004697\xC3", "２00046977"}) {
    EXPECT_EQ(ValidateSiren(s).code(), absl::StatusCode::kInvalidArgument) << s;
  }
}

TEST(ValidateSirenTest, RejectsBadLuhn) {
  const absl::Status s = ValidateSiren("200046978");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("Luhn"));
  EXPECT_THAT(Message(s), HasSubstr("200046978"));
  // Swapping two adjacent digits breaks the checksum.
  EXPECT_FALSE(ValidateSiren("200046797").ok());
  EXPECT_FALSE(ValidateSiren("217400424").ok());
  EXPECT_FALSE(ValidateSiren("123456789").ok());
}

TEST(ValidateSirenTest, RejectsBadLuhnWithLaPostePrefix) {
  // Neither passes Luhn and neither is La Poste's 356000000.
  EXPECT_EQ(ValidateSiren("356000001").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateSiren("356000010").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SirenToOrigin("356000001").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SirenToOriginTest, ConvertsValidSiren) {
  absl::StatusOr<uint32_t> o = SirenToOrigin("200046977");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(*o, 200046977u);
}

TEST(SirenToOriginTest, RejectsInvalidSiren) {
  EXPECT_EQ(SirenToOrigin("200046978").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SirenToOrigin("abc").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SirenToOriginTest, RoundTripsIncludingLeadingZeros) {
  for (const char* siren :
       {"200046977", "217400423", "210100012", "356000000", "012345674", "001234566"}) {
    absl::StatusOr<uint32_t> o = SirenToOrigin(siren);
    ASSERT_TRUE(o.ok()) << siren << ": " << o.status();
    EXPECT_EQ(OriginToSiren(*o), siren);
  }
  absl::StatusOr<uint32_t> o = SirenToOrigin("012345674");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(*o, 12345674u);
}

TEST(OriginToSirenTest, PadsToNineDigits) {
  EXPECT_EQ(OriginToSiren(0), "000000000");
  EXPECT_EQ(OriginToSiren(18), "000000018");
  EXPECT_EQ(OriginToSiren(999999999), "999999999");
}

// --- INSEE codes -------------------------------------------------------------------------

TEST(ValidateInseeCodeTest, AcceptsValidCodes) {
  for (const char* c : {"01001", "2A004", "2B033", "97105", "75056", "69123"}) {
    EXPECT_TRUE(ValidateInseeCode(c).ok()) << c;
  }
}

TEST(ValidateInseeCodeTest, RejectsInvalidCodes) {
  for (const char* c : {"2C001", "1234", "0100A", "", "123456", "2a004", "A2004", "3A004", "2B03X",
                        "01 01", "2AB01"}) {
    const absl::Status s = ValidateInseeCode(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c;
  }
  EXPECT_THAT(Message(ValidateInseeCode("1234")), HasSubstr("5 characters"));
  EXPECT_THAT(Message(ValidateInseeCode("2C001")), HasSubstr("2A or 2B"));
  EXPECT_THAT(Message(ValidateInseeCode("0100A")), HasSubstr("3 digits"));
}

// --- Registry IDs ------------------------------------------------------------------------

TEST(ValidateRegistryIdTest, AcceptsValidIds) {
  for (const char* id : {"abc", "communes", "points-de-collecte", "r2d2", "a-1"}) {
    EXPECT_TRUE(ValidateRegistryId(id).ok()) << id;
  }
  EXPECT_TRUE(ValidateRegistryId(std::string(63, 'a')).ok());
}

TEST(ValidateRegistryIdTest, EnforcesLengthLimits) {
  EXPECT_FALSE(ValidateRegistryId("").ok());
  EXPECT_FALSE(ValidateRegistryId("ab").ok());
  EXPECT_TRUE(ValidateRegistryId("abc").ok());
  EXPECT_TRUE(ValidateRegistryId(std::string(63, 'z')).ok());
  const absl::Status s = ValidateRegistryId(std::string(64, 'z'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("3 to 63"));
}

TEST(ValidateRegistryIdTest, RejectsBadCharacters) {
  for (const char* id :
       {"Communes", "comMunes", "1abc", "-abc", "abc-", "ab_c", "ab.c", "ab c", "abc/d", "abé"}) {
    EXPECT_EQ(ValidateRegistryId(id).code(), absl::StatusCode::kInvalidArgument) << id;
  }
  EXPECT_THAT(Message(ValidateRegistryId("abc-")), HasSubstr("must not end with '-'"));
  EXPECT_THAT(Message(ValidateRegistryId("1abc")), HasSubstr("lowercase letter"));
}

// --- Record IDs --------------------------------------------------------------------------

TEST(ValidateRecordIdTest, AcceptsValidIds) {
  for (const char* id : {"a", "69123", "2A004", "x.y", "a_b~c:d@e-f", "A", "a.", "0"}) {
    EXPECT_TRUE(ValidateRecordId(id).ok()) << id;
  }
}

TEST(ValidateRecordIdTest, EnforcesLengthLimits) {
  EXPECT_EQ(ValidateRecordId("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateRecordId(std::string(128, 'R')).ok());
  const absl::Status s = ValidateRecordId(std::string(129, 'R'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("1 to 128"));
}

TEST(ValidateRecordIdTest, RejectsLeadingDotAndForbiddenCharacters) {
  EXPECT_THAT(Message(ValidateRecordId(".hidden")), HasSubstr("must not start with '.'"));
  EXPECT_EQ(ValidateRecordId(".").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateRecordId("..").code(), absl::StatusCode::kInvalidArgument);
  for (const char* id : {"a/b", "a b", "a?b", "a#b", "a%20", "é", "a+b", "a,b", "a\"b"}) {
    EXPECT_EQ(ValidateRecordId(id).code(), absl::StatusCode::kInvalidArgument) << id;
  }
  EXPECT_EQ(ValidateRecordId(std::string("a\0b", 3)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateRecordIdTest, ErrorQuotesOffendingValueEscaped) {
  const absl::Status s = ValidateRecordId("a\nb");
  EXPECT_THAT(Message(s), HasSubstr("a\\nb"));
  // A long value is cut to 80 bytes in the message.
  const absl::Status long_status = ValidateRecordId(std::string(200, 'x'));
  EXPECT_THAT(Message(long_status), HasSubstr(std::string(80, 'x')));
  EXPECT_THAT(Message(long_status), ::testing::Not(HasSubstr(std::string(81, 'x'))));
}

// --- Field names -------------------------------------------------------------------------

TEST(ValidateFieldNameTest, AcceptsValidNames) {
  for (const char* n : {"a", "nom", "code_insee", "population2020", "a_"}) {
    EXPECT_TRUE(ValidateFieldName(n).ok()) << n;
  }
  EXPECT_TRUE(ValidateFieldName(std::string(63, 'f')).ok());
}

TEST(ValidateFieldNameTest, EnforcesLengthLimits) {
  EXPECT_EQ(ValidateFieldName("").code(), absl::StatusCode::kInvalidArgument);
  const absl::Status s = ValidateFieldName(std::string(64, 'f'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("1 to 63"));
}

TEST(ValidateFieldNameTest, RejectsUppercaseAndForbiddenCharacters) {
  for (const char* n :
       {"Nom", "nOm", "_nom", "1nom", "nom-insee", "nom.insee", "nom insee", "nom\xC3\xA9"}) {
    EXPECT_EQ(ValidateFieldName(n).code(), absl::StatusCode::kInvalidArgument) << n;
  }
}

// --- SPIFFE IDs and principals -------------------------------------------------------------

TEST(ParseSpiffeIdTest, ParsesAuthority) {
  absl::StatusOr<Principal> p = ParseSpiffeId("spiffe://interco.example/collectivite/200046977");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->federation, "interco.example");
  EXPECT_EQ(p->siren, "200046977");
  EXPECT_EQ(p->client, "");
  EXPECT_EQ(p->Author(), "200046977");
}

TEST(ParseSpiffeIdTest, ParsesClient) {
  absl::StatusOr<Principal> p =
      ParseSpiffeId("spiffe://interco.example/collectivite/217400423/client/sig-app_2.0");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, (Principal{"interco.example", "217400423", "sig-app_2.0"}));
  EXPECT_EQ(p->Author(), "217400423/sig-app_2.0");
}

TEST(ParseSpiffeIdTest, ClientNameLengthLimits) {
  const std::string base = "spiffe://fed/collectivite/200046977/client/";
  absl::StatusOr<Principal> p = ParseSpiffeId(base + std::string(64, 'c'));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->client, std::string(64, 'c'));
  EXPECT_EQ(ParseSpiffeId(base + std::string(65, 'c')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSpiffeId(base).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseSpiffeIdTest, RejectsMalformedIds) {
  const char* bad[] = {
      "",
      "spiffe:/",
      "https://fed/collectivite/200046977",                  // wrong scheme
      "SPIFFE://fed/collectivite/200046977",                 // scheme is lowercase
      "spiffe//fed/collectivite/200046977",                  // no colon
      "spiffe://fed/200046977",                              // missing collectivite
      "spiffe://fed/commune/200046977",                      // wrong segment
      "spiffe://fed/collectivite",                           // missing SIREN
      "spiffe://fed/collectivite/",                          // empty SIREN
      "spiffe://fed/collectivite/200046978",                 // bad SIREN checksum
      "spiffe://fed/collectivite/20004697",                  // short SIREN
      "spiffe://fed/collectivite/200046977/",                // trailing slash
      "spiffe://fed/collectivite/200046977/client",          // missing client name
      "spiffe://fed/collectivite/200046977/app/x",           // wrong client segment
      "spiffe://fed/collectivite/200046977/client/App",      // uppercase client
      "spiffe://fed/collectivite/200046977/client/my app",   // space in client
      "spiffe://fed/collectivite/200046977/client/a:b",      // forbidden character
      "spiffe://fed/collectivite/200046977/client/x/extra",  // extra segment
      "spiffe://fed/collectivite/200046977/client/x/y/z",    // extra segments
      "spiffe:///collectivite/200046977",                    // empty federation
      "spiffe:///collectivite/200046977/client/app",         // empty federation
  };
  for (const char* uri : bad) {
    absl::StatusOr<Principal> p = ParseSpiffeId(uri);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << uri;
  }
}

TEST(ParseSpiffeIdTest, ErrorMessagesExplainTheProblem) {
  EXPECT_THAT(Message(ParseSpiffeId("https://fed/collectivite/200046977").status()),
              HasSubstr("spiffe://"));
  EXPECT_THAT(Message(ParseSpiffeId("spiffe:///collectivite/200046977").status()),
              HasSubstr("empty federation"));
  EXPECT_THAT(Message(ParseSpiffeId("spiffe://fed/collectivite/200046978").status()),
              HasSubstr("SIREN"));
  EXPECT_THAT(Message(ParseSpiffeId("spiffe://fed/collectivite/200046977/client/A").status()),
              HasSubstr("[a-z0-9._-]"));
}

TEST(PrincipalTest, AuthorWithAndWithoutClient) {
  Principal p{"fed", "210100012", ""};
  EXPECT_EQ(p.Author(), "210100012");
  p.client = "gestion";
  EXPECT_EQ(p.Author(), "210100012/gestion");
}

TEST(PrincipalTest, Equality) {
  const Principal a{"fed", "210100012", "x"};
  EXPECT_EQ(a, (Principal{"fed", "210100012", "x"}));
  EXPECT_NE(a, (Principal{"fed", "210100012", "y"}));
  EXPECT_NE(a, (Principal{"other", "210100012", "x"}));
  EXPECT_NE(a, (Principal{"fed", "217400423", "x"}));
}

}  // namespace
}  // namespace interco::replication

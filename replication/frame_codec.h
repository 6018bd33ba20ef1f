// The wire layout of a frame's changes by column (interco.replication.v1.ChangeColumns).
//
// A batch's changes are stored and signed as a list of serialized Change messages. Sent
// as they are, gzip sees each change's key, stamp, author and framing between its field
// values, and compresses them change by change; laid out by column (every key, then every
// stamp as a difference from the previous one, every author, the changes' skeletons, then
// the values of each field name together), the same bytes compress to about their payload
// compressed alone. The hashes in the headers that the receiver can compute (64 bytes per
// batch that no compression shrinks) are left out too. The layout exists only on the
// wire: the receiver restores the exact change and header bytes, and the batch's body
// hash and the run's signature (checked next, as for any batch) prove them.
//
// Pure functions; thread-safe. docs/REPLICATION.md, "Columnar frames".
#ifndef INTERCO_REPLICATION_FRAME_CODEC_H_
#define INTERCO_REPLICATION_FRAME_CODEC_H_

#include "absl/status/status.h"
#include "interco/replication/v1/peer.pb.h"
#include "replication/env.h"

namespace interco::replication {

// Moves the changes of `frame`'s batches into frame.columns. Only if every change parses
// and serializes back to its exact bytes (a change written otherwise, by another encoder,
// is sent as it is): returns false and leaves the frame unchanged if not, or if it holds
// no change or is already encoded. If moreover every header serializes back to its bytes
// and holds the hashes the receiver would compute, they are left out of the headers
// (ChangeColumns.hashes_elided).
bool EncodeColumns(interco::replication::v1::BatchFrame& frame, Hasher& hasher);

// Restores the changes of `frame`'s batches from frame.columns and clears them; nothing
// to do for a frame without columns. DATA_LOSS, naming what is wrong, for columns that do
// not fit the batches' headers (counts, lengths, unparseable skeletons or values); the
// frame is then left as it was.
absl::Status DecodeColumns(interco::replication::v1::BatchFrame& frame, Hasher& hasher);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_FRAME_CODEC_H_

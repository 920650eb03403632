//! The unit tests of the chaos soak's pure core (`examples/soak/model.rs`): the record mix,
//! the expected time of each record (the point-identity rule), the fault schedule and the
//! comparison of stored points. The soak itself is `scripts/soak.sh` (docs/RELIABILITY.md).

#[path = "../examples/soak/model.rs"]
#[allow(dead_code)]
mod model;

//! Pure: what the writer (`writer.rs` `store`) does with each answer to a write of a part of
//! its batch: acknowledge the part, learn the types a rejection names and convert its lines,
//! send it through InfluxDB 3's v3 API to find a bad line, split it, settle a partial write or
//! a refused line, wait and write it again, or wait out a fatal answer.
//!
//! `store` performs each [`Step`] and asks [`StorePlan`] for the next one, the way ureq drives
//! its protocol state machine apart from its IO: no IO, no logging and no clock read here, so
//! the rules are unit-tested below against the answers InfluxDB v1, v2 and v3 send, as
//! `influx/answer.rs` classifies them.

use std::time::Duration;

use crate::influx::{plan_partial, PartialPlan, WriteError};
use crate::schema::{self, Conflict};

/// Backoff for passing failures: from `FIRST_BACKOFF`, doubling, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Retry period while InfluxDB gives a fatal answer (bad credentials, missing database).
const FATAL_BACKOFF: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured as given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Conversion rounds before splitting: each round needs a conflict InfluxDB named and a line
/// it fixed, but InfluxDB 1.x keeps types per shard, so two time ranges may disagree and keep
/// undoing each other's conversions.
const CONVERSION_ROUNDS: u32 = 3;

/// Where a part is written: the configured API, or, for a body InfluxDB 3 refused through
/// its v1 or v2 API, the v3 API that names the bad line (`Influx::diagnose`), or, for the
/// lines of a write to InfluxDB 3 whose rejection it could not answer ([`cut_at_risk`]), its
/// v2 API (`Influx::write_v2_of_v3`), never diagnosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Configured,
    Diagnose,
    V2OfV3,
}

/// How many bytes of a line [`cut_at_risk`] looks at; see there why 32.
const AT_RISK_BYTES: usize = 32;

/// Whether InfluxDB 3.6.0 could panic while answering a rejection of `line` through its v3
/// API: the answer quotes the first 20 bytes of the line as the server renders it
/// (`&original_line[..20]`), which panics when byte 20 falls inside a multi-byte character;
/// the connection then closes with no answer, and the write would be retried forever
/// (docs/INFLUXDB3.md). A coarse rule: any non-ASCII byte among the line's first 32 bytes.
///
/// Why 32 and not 20: the rendering keeps the measurement and tags as sent, but drops the
/// quotes of string field values, so a character of the line sent at byte `p` is at byte `p`
/// less the quotes before it in the rendering. For it to reach byte 19 or less from byte 32
/// or more, 13 quotes or more must come before it: six string fields and the opening quote of
/// its own, each field at least 5 bytes (`,k=""`) after a measurement and a space, which puts
/// the character at byte 35 at least, needing yet more quotes: each field adds 5 bytes for 2
/// quotes, so it never catches up. Looking 12 bytes further than 20 is that margin with room
/// to spare; a line safe by this rule but unlucky in a rendering not foreseen here would
/// stall as before. Lines with a non-ASCII byte among their first 32 are rare (a non-ASCII
/// measurement name or first tags): they cost one more request per part holding them, and,
/// when rejected, the server's own reason (its v2 API names none).
pub fn cut_at_risk(line: &[u8]) -> bool {
    !line[..line.len().min(AT_RISK_BYTES)].is_ascii()
}

/// Sorts `part` (batch indices, ascending) into the lines at risk ([`cut_at_risk`]) and the
/// others, `line` giving each line's bytes; both stay ascending. `None` when no line is at
/// risk, so the part is written as it is.
pub fn apart_at_risk<'a>(
    part: &[usize],
    line: impl Fn(usize) -> &'a [u8],
) -> Option<(Vec<usize>, Vec<usize>)> {
    if !part.iter().any(|&i| cut_at_risk(line(i))) {
        return None;
    }
    Some(part.iter().partition(|&&i| cut_at_risk(line(i))))
}

/// What `store` does next with its part (batch indices, ascending).
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Write the part (again) in one request, through [`StorePlan::route`].
    Write,
    /// Stored: acknowledge every record of the part.
    Acknowledge,
    /// Rejected: learn the `conflicts` the answer names; when `convert`, rewrite the lines of
    /// the part whose values convert without loss; then tell [`StorePlan::converted`] how
    /// many lines changed, with `error`.
    Learn {
        conflicts: Vec<Conflict>,
        convert: bool,
        error: WriteError,
    },
    /// Split the part in halves, each stored on its own, until each bad line stands alone and
    /// is dead-lettered with `error` (rewriting the good lines is harmless: InfluxDB
    /// overwrites a point with the same series and time). `shrink`: the body was over the
    /// server's size limit, so the batch size must come down below it too.
    Split { error: WriteError, shrink: bool },
    /// A v3 partial write: acknowledge the stored records, settle the rejected ones, write
    /// the unknown ones again.
    SettlePartial(Partial),
    /// InfluxDB 3 refused the whole part for its line at batch index `index`, storing
    /// nothing: settle that line with `message` (dead-lettered, or converted and kept), then
    /// write what is left of the part again.
    SettleLine { index: usize, message: String },
    /// A passing failure: wait, keeping the held records alive, then write again.
    Retry { reason: String, wait: Duration },
    /// A failure no retry fixes until an operator acts: `text` says what to fix; wait, then
    /// write again, never acknowledging meanwhile.
    Fatal { text: String, wait: Duration },
}

impl Step {
    /// What the answer that led to this step says about InfluxDB's health: a rejection of
    /// bad lines still shows a working database; only a passing failure or a fatal answer
    /// does not.
    pub fn health(&self) -> Result<(), String> {
        match self {
            Step::Retry { reason, .. } => Err(reason.clone()),
            Step::Fatal { text, .. } => Err(text.clone()),
            _ => Ok(()),
        }
    }
}

/// What `store` keeps across the writes of one part. A split or a partial write stores its
/// pieces with plans of their own: each piece is a new body, with its own answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePlan {
    route: Route,
    /// The wait before the next retry of a passing failure, before jitter.
    backoff: Duration,
    conversion_rounds: u32,
}

impl Default for StorePlan {
    fn default() -> StorePlan {
        StorePlan {
            route: Route::Configured,
            backoff: FIRST_BACKOFF,
            conversion_rounds: CONVERSION_ROUNDS,
        }
    }
}

impl StorePlan {
    /// A plan whose writes go through `route` from the first.
    pub fn through(route: Route) -> StorePlan {
        StorePlan {
            route,
            ..StorePlan::default()
        }
    }

    pub fn route(&self) -> Route {
        self.route
    }

    /// The step after InfluxDB's `answer` to a write of `part`; `jitter_state` spreads the
    /// retries of several collectors apart (see `jitter`).
    pub fn answer(
        &mut self,
        answer: Result<(), WriteError>,
        part: &[usize],
        jitter_state: &mut u64,
    ) -> Step {
        let error = match answer {
            Ok(()) => return Step::Acknowledge,
            Err(error) => error,
        };
        match error {
            WriteError::Rejected { status, message } => Step::Learn {
                conflicts: schema::conflicts(&message),
                convert: self.conversion_rounds > 0,
                error: WriteError::Rejected { status, message },
            },
            WriteError::TooLarge => Step::Split {
                error,
                shrink: true,
            },
            WriteError::Partial { rejected, complete } => {
                match sort_partial(part, plan_partial(part.len(), rejected, complete)) {
                    Some(partial) => Step::SettlePartial(partial),
                    // An answer that names no line of the body explains nothing.
                    None => Step::Split {
                        error: WriteError::Rejected {
                            status: 400,
                            message: "partial write naming no line of the request".into(),
                        },
                        shrink: false,
                    },
                }
            }
            WriteError::Refused { line } => match refused_index(part, line.number) {
                Some(index) => Step::SettleLine {
                    index,
                    message: line.message,
                },
                None => Step::Split {
                    error: WriteError::Rejected {
                        status: 400,
                        message: line.message,
                    },
                    shrink: false,
                },
            },
            WriteError::Retry {
                reason,
                retry_after,
            } => {
                let wait = retry_wait(retry_after, self.backoff, jitter(jitter_state));
                self.backoff = next_backoff(self.backoff);
                Step::Retry { reason, wait }
            }
            WriteError::Fatal { .. } => Step::Fatal {
                text: error.to_string(),
                wait: FATAL_BACKOFF,
            },
        }
    }

    /// The step after a [`Step::Learn`] that rewrote `changed` lines of the part, for its
    /// `error`; `diagnoses`: whether the client can send the part through the v3 API that
    /// names a bad line (`Influx::diagnoses`).
    pub fn converted(&mut self, changed: usize, diagnoses: bool, error: WriteError) -> Step {
        if changed > 0 && self.conversion_rounds > 0 {
            self.conversion_rounds -= 1;
            return Step::Write;
        }
        if self.route == Route::Configured && diagnoses {
            // InfluxDB 3's v1 and v2 APIs name neither the line nor the reason, and bisecting
            // waits for a log flush per half: its v3 API names the first bad line at once,
            // storing nothing, one request per bad line, and stores the rest whole.
            self.route = Route::Diagnose;
            return Step::Write;
        }
        Step::Split {
            error,
            shrink: false,
        }
    }
}

/// The batch index of the line a refusal names by its `number` (from 1) in the body of
/// `part`; `None` when the number is outside the body.
fn refused_index(part: &[usize], number: usize) -> Option<usize> {
    number.checked_sub(1).and_then(|i| part.get(i)).copied()
}

/// How long to wait before retrying a passing failure: the server's `Retry-After` (at least
/// [`FIRST_BACKOFF`], at most [`MAX_RETRY_AFTER`]), else `backoff` scaled by the jitter
/// `fraction`. The floor: a server or proxy answering every write 503 with `Retry-After: 0`
/// would otherwise be sent the batch again in a tight loop, as fast as it can answer.
fn retry_wait(retry_after: Option<Duration>, backoff: Duration, fraction: f64) -> Duration {
    match retry_after {
        Some(after) => after.clamp(FIRST_BACKOFF, MAX_RETRY_AFTER),
        None => backoff.mul_f64(fraction),
    }
}

/// The backoff after `backoff`: doubled, up to [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// Spreads retries of several collectors apart: a fraction between 0.5 and 1 from an
/// xorshift64 `state` (plenty for jitter; no need for a random crate).
fn jitter(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    0.5 + (x % 1000) as f64 / 2000.0
}

/// A v3 partial write of a part, sorted by what happens to each record (batch indices).
#[derive(Debug, PartialEq, Eq)]
pub struct Partial {
    /// Stored: acknowledged.
    pub stored: Vec<usize>,
    /// Named by InfluxDB with its message: converted and written again, or dead-lettered.
    pub rejected: Vec<(usize, String)>,
    /// After the last line named in a list that may be cut short: written again.
    pub unknown: Vec<usize>,
}

/// Maps a [`PartialPlan`] (positions in the body of `part`) onto batch indices; `None` when
/// it names no line, so it explains nothing.
fn sort_partial(part: &[usize], plan: PartialPlan) -> Option<Partial> {
    if plan.rejected.is_empty() {
        return None;
    }
    let rejected: Vec<(usize, String)> = plan
        .rejected
        .into_iter()
        .map(|(position, message)| (part[position], message))
        .collect();
    let stored = part[..plan.explained]
        .iter()
        .copied()
        .filter(|i| rejected.binary_search_by_key(i, |(n, _)| *n).is_err())
        .collect();
    let unknown = part[plan.explained..].to_vec();
    Some(Partial {
        stored,
        rejected,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::{classify, classify_v3};
    use crate::schema::FieldType;

    /// The writer's jitter seed, less its process id.
    const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

    /// The step a fresh plan draws from `answer` to a write of `part`.
    fn first(answer: Result<(), WriteError>, part: &[usize]) -> Step {
        let mut state = SEED;
        StorePlan::default().answer(answer, part, &mut state)
    }

    fn rejected(status: u16, message: &str) -> WriteError {
        WriteError::Rejected {
            status,
            message: message.into(),
        }
    }

    fn split(error: WriteError) -> Step {
        Step::Split {
            error,
            shrink: false,
        }
    }

    // Bodies as each API sends them: influxd 1.6.7 (v1), the InfluxDB v2 API reference (as
    // `tests/v2_double` answers), InfluxDB 3 Core 3.6.0 through its v1, v2 and v3 APIs.
    const V1_CONFLICT: &str = r#"{"error":"partial write: field type conflict: input field \"latency\" on measurement \"api\" is type integer, already exists as type float dropped=1"}"#;
    const V2_CONFLICT: &str = r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict: input field \"n\" on measurement \"m, x\" is type float, already exists as type integer dropped=3"}"#;
    const V1_UNPARSABLE: &str = r#"{"error":"unable to parse 'm x': invalid field format"}"#;
    const V2_UNPARSABLE: &str = r#"{"code":"invalid","message":"partial write error (2 written): unable to parse 'm reject=1 1': invalid field"}"#;
    /// InfluxDB 3's `/api/v2/write` refusing a body for one bad line, naming neither.
    const V3_THROUGH_V2: &str =
        r#"{"code":"invalid","message":"write buffer error: parsing for line protocol failed"}"#;
    /// InfluxDB 3 refusing a whole body naming its first bad line: `/api/v3/write_lp` with
    /// `accept_partial=false` (the diagnosis) and `/write`.
    const V3_REFUSED: &str = r#"{"error":"parsing failed for write_lp endpoint","data":{"original_line":"m v=","line_number":3,"error_message":"No fields were provided"}}"#;
    const V3_PARTIAL: &str = r#"{"error":"partial write of line protocol occurred","data":[{"original_line":"home,room=Sunroom temp=hi 1735549200","line_number":2,"error_message":"invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::string"},{"original_line":"x","line_number":7,"error_message":"No fields were\nprovided"}]}"#;
    const V3_TYPE: &str = "invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::string";

    #[test]
    fn a_stored_part_is_acknowledged() {
        for answer in [
            classify(204, "", None),
            classify(200, "", None),
            classify_v3(204, "", None),
        ] {
            let step = first(answer, &[0, 1]);
            assert_eq!(step, Step::Acknowledge);
            assert_eq!(step.health(), Ok(()));
        }
    }

    /// The first answer to a part of eight lines (batch indices 10..18), for the statuses and
    /// bodies of the three APIs, classified as the client classifies them.
    #[test]
    fn each_answer_of_the_three_apis_leads_to_its_step() {
        let part: Vec<usize> = (10..18).collect();
        let learn = |conflicts: Vec<Conflict>, error| Step::Learn {
            conflicts,
            convert: true,
            error,
        };
        let conflict = |measurement: &str, field: &str, stored| Conflict {
            measurement: measurement.into(),
            field: field.into(),
            stored,
        };
        let too_large = || Step::Split {
            error: WriteError::TooLarge,
            shrink: true,
        };
        let table_limit = "Update to schema would exceed number of tables limit of 2000 tables";
        for (what, answer, step) in [
            (
                "v1 type conflict",
                classify(400, V1_CONFLICT, None),
                learn(
                    vec![conflict("api", "latency", FieldType::Float)],
                    rejected(400, r#"partial write: field type conflict: input field "latency" on measurement "api" is type integer, already exists as type float dropped=1"#),
                ),
            ),
            (
                "v2 type conflict",
                classify(422, V2_CONFLICT, None),
                learn(
                    vec![conflict("m, x", "n", FieldType::Integer)],
                    rejected(422, r#"failure writing points to database: partial write: field type conflict: input field "n" on measurement "m, x" is type float, already exists as type integer dropped=3"#),
                ),
            ),
            (
                "v1 unparsable line",
                classify(400, V1_UNPARSABLE, None),
                learn(vec![], rejected(400, "unable to parse 'm x': invalid field format")),
            ),
            (
                "v2 unparsable line",
                classify(400, V2_UNPARSABLE, None),
                learn(
                    vec![],
                    rejected(400, "partial write error (2 written): unable to parse 'm reject=1 1': invalid field"),
                ),
            ),
            (
                "InfluxDB 3 through v2",
                classify(400, V3_THROUGH_V2, None),
                learn(vec![], rejected(400, "write buffer error: parsing for line protocol failed")),
            ),
            (
                "v3 limit naming no line",
                classify_v3(422, &format!(r#"{{"error":"{table_limit}"}}"#), None),
                learn(vec![], rejected(422, table_limit)),
            ),
            ("v1/v2 413", classify(413, "", None), too_large()),
            (
                "v2 413",
                classify(413, r#"{"code":"request too large","message":"max request size (1000 bytes) exceeded"}"#, None),
                too_large(),
            ),
            (
                "v3 500 over the size limit",
                classify_v3(500, "max request size (10485760 bytes) exceeded", None),
                too_large(),
            ),
            (
                "v3 partial write",
                classify_v3(400, V3_PARTIAL, None),
                Step::SettlePartial(Partial {
                    stored: vec![10, 12, 13, 14, 15, 17],
                    rejected: vec![(11, V3_TYPE.into()), (16, "No fields were provided".into())],
                    unknown: vec![],
                }),
            ),
            (
                "v3 partial write at the table limit",
                classify_v3(
                    422,
                    &format!(r#"{{"error":"partial write of line protocol occurred","data":[{{"error_message":"{table_limit}","line_number":8,"original_line":"newtab a=1 3"}}]}}"#),
                    None,
                ),
                Step::SettlePartial(Partial {
                    stored: (10..17).collect(),
                    rejected: vec![(17, table_limit.into())],
                    unknown: vec![],
                }),
            ),
            (
                "v3 partial write naming no line of the part",
                classify_v3(
                    400,
                    r#"{"error":"partial write of line protocol occurred","data":[{"original_line":"m","line_number":9,"error_message":"bad"}]}"#,
                    None,
                ),
                split(rejected(400, "partial write naming no line of the request")),
            ),
            (
                "v3 (or /write of InfluxDB 3) refusing line 3",
                classify_v3(400, V3_REFUSED, None),
                Step::SettleLine {
                    index: 12,
                    message: "No fields were provided".into(),
                },
            ),
            (
                "v3 refusing a line past the part",
                classify_v3(
                    400,
                    r#"{"error":"parsing failed for write_lp endpoint","data":{"original_line":"m v=","line_number":9,"error_message":"No fields were provided"}}"#,
                    None,
                ),
                split(rejected(400, "No fields were provided")),
            ),
            (
                "v2 429 with Retry-After",
                classify(429, "slow down", Some("7")),
                Step::Retry {
                    reason: "429: slow down".into(),
                    wait: Duration::from_secs(7),
                },
            ),
            (
                "v3 503 with Retry-After",
                classify_v3(503, "", Some("1")),
                Step::Retry {
                    reason: "503: no reason given".into(),
                    wait: Duration::from_secs(1),
                },
            ),
            (
                "a Retry-After past the longest honoured",
                classify(503, "", Some("3600")),
                Step::Retry {
                    reason: "503: no reason given".into(),
                    wait: MAX_RETRY_AFTER,
                },
            ),
        ] {
            assert_eq!(first(answer, &part), step, "{what}");
        }
    }

    /// A conversion buys another write of the same part, three times at most: InfluxDB 1.x
    /// keeps types per shard, so two time ranges can keep undoing each other's conversions.
    #[test]
    fn type_conflicts_are_converted_for_three_rounds_then_split() {
        let part = [0, 1, 2];
        let mut plan = StorePlan::default();
        let mut state = SEED;
        for round in 0..3 {
            let Step::Learn {
                conflicts,
                convert,
                error,
            } = plan.answer(classify(400, V1_CONFLICT, None), &part, &mut state)
            else {
                panic!("round {round}: not a rejection");
            };
            assert_eq!(conflicts.len(), 1);
            assert!(convert, "round {round}");
            assert_eq!(
                plan.converted(2, false, error),
                Step::Write,
                "round {round}"
            );
            assert_eq!(plan.route(), Route::Configured);
        }
        let Step::Learn { convert, error, .. } =
            plan.answer(classify(400, V1_CONFLICT, None), &part, &mut state)
        else {
            panic!("not a rejection");
        };
        assert!(!convert, "rounds exhausted");
        // Lines said to have changed without a round left change nothing.
        assert_eq!(plan.converted(1, false, error.clone()), split(error));
        // The jitter is drawn for retries only.
        assert_eq!(state, SEED);
    }

    #[test]
    fn a_rejection_that_converts_nothing_is_split_at_once() {
        for answer in [
            classify(400, V1_UNPARSABLE, None),
            classify(400, V2_UNPARSABLE, None),
            classify(400, V1_CONFLICT, None),
        ] {
            let mut plan = StorePlan::default();
            let mut state = SEED;
            let Step::Learn { error, .. } = plan.answer(answer, &[4, 5], &mut state) else {
                panic!("not a rejection");
            };
            assert_eq!(plan.converted(0, false, error.clone()), split(error));
        }
    }

    /// InfluxDB 3's v1 and v2 APIs refuse a body for one bad line naming neither it nor why:
    /// the part goes once through the v3 API (`Influx::diagnose`), which names its first bad
    /// line; a body the v3 API rejects without naming one is split like any other.
    #[test]
    fn influxdb_3s_refusal_through_v1_or_v2_is_diagnosed_through_v3_once() {
        let part = [3, 5, 8];
        let mut state = SEED;
        let mut plan = StorePlan::default();
        let Step::Learn { error, .. } =
            plan.answer(classify(400, V3_THROUGH_V2, None), &part, &mut state)
        else {
            panic!("not a rejection");
        };
        // Against a server that does not diagnose (InfluxDB 1.x, 2.x, VictoriaMetrics): split.
        assert_eq!(
            plan.clone().converted(0, false, error.clone()),
            split(error.clone())
        );
        // A conversion comes first: it may be all that was wrong.
        let mut converting = plan.clone();
        assert_eq!(converting.converted(1, true, error.clone()), Step::Write);
        assert_eq!(converting.route(), Route::Configured);

        assert_eq!(plan.converted(0, true, error), Step::Write);
        assert_eq!(plan.route(), Route::Diagnose);
        // On the diagnose route each refused line is settled and the rest written again, on
        // the same route.
        assert_eq!(
            plan.answer(classify_v3(400, V3_REFUSED, None), &part, &mut state),
            Step::SettleLine {
                index: 8,
                message: "No fields were provided".into()
            }
        );
        assert_eq!(plan.route(), Route::Diagnose);
        let bare =
            r#"{"error":"Update to schema would exceed number of tables limit of 2000 tables"}"#;
        let Step::Learn { error, .. } =
            plan.answer(classify_v3(400, bare, None), &part, &mut state)
        else {
            panic!("not a rejection");
        };
        assert_eq!(plan.converted(0, true, error.clone()), split(error));
        // The diagnosis answers as it stores: the part is acknowledged.
        assert_eq!(
            plan.answer(classify_v3(204, "", None), &part, &mut state),
            Step::Acknowledge
        );
    }

    /// Without `Retry-After` a passing failure waits from 200 ms, doubling up to 30 s, each
    /// wait scaled by a jitter between 0.5 and 1 so that collectors retry apart; a
    /// `Retry-After` is honoured as given, and the backoff doubles behind it all the same.
    #[test]
    fn passing_failures_back_off_and_honour_retry_after() {
        let unreachable = WriteError::Retry {
            reason: "http://db:8086 unreachable: io: Connection refused".into(),
            retry_after: None,
        };
        let answers = [
            classify(503, "", None),
            classify(500, r#"{"error":"timeout"}"#, None),
            classify_v3(
                500,
                "error decoding gzip stream: unexpected end of file",
                None,
            ),
            classify(302, "", None),
            Err(unreachable),
        ];
        let mut plan = StorePlan::default();
        let mut state = SEED;
        let mut jitters = SEED;
        let mut backoff = Duration::from_millis(200);
        for i in 0..12 {
            let answer = answers[i % answers.len()].clone();
            let Err(WriteError::Retry { reason, .. }) = &answer else {
                panic!("{answer:?}");
            };
            let reason = reason.clone();
            let step = plan.answer(answer, &[0], &mut state);
            assert_eq!(step.health(), Err(reason.clone()));
            let Step::Retry { reason: said, wait } = step else {
                panic!("{i}: {step:?}");
            };
            assert_eq!(said, reason);
            assert!(
                wait >= backoff / 2 && wait < backoff,
                "{i}: {wait:?} of {backoff:?}"
            );
            assert_eq!(wait, backoff.mul_f64(jitter(&mut jitters)), "{i}");
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        assert_eq!(backoff, MAX_BACKOFF);

        let mut plan = StorePlan::default();
        assert_eq!(
            plan.answer(classify(429, "slow down", Some("7")), &[0], &mut state),
            Step::Retry {
                reason: "429: slow down".into(),
                wait: Duration::from_secs(7)
            }
        );
        let Step::Retry { wait, .. } = plan.answer(classify(503, "", None), &[0], &mut state)
        else {
            panic!("not a retry");
        };
        assert!(
            wait >= FIRST_BACKOFF && wait < 2 * FIRST_BACKOFF,
            "{wait:?}"
        );
    }

    #[test]
    fn fatal_answers_are_waited_out_saying_what_to_fix() {
        let database_limit =
            r#"{"error":"Adding a new database would exceed limit of 5 databases"}"#;
        for (answer, fix) in [
            (
                classify(
                    401,
                    r#"{"code":"unauthorized","message":"unauthorized access"}"#,
                    None,
                ),
                "check influx.token (v2)",
            ),
            (
                classify(
                    403,
                    r#"{"error":"user is not authorized to write to database"}"#,
                    None,
                ),
                "write permission",
            ),
            (
                classify(
                    404,
                    r#"{"code":"not found","message":"bucket \"x\" not found"}"#,
                    None,
                ),
                "create the bucket",
            ),
            (
                classify(404, r#"{"error":"database not found: \"x\""}"#, None),
                "create the bucket",
            ),
            (
                classify(500, r#"{"error":"retention policy not found: week"}"#, None),
                "create the retention policy",
            ),
            (classify_v3(401, "", None), "a token of this InfluxDB 3"),
            (classify_v3(403, "", None), "a token with write permission"),
            (classify_v3(422, database_limit, None), "delete a database"),
            (
                classify(
                    400,
                    &format!(
                        r#"{{"code":"invalid","message":"write buffer error: catalog update error: {}"}}"#,
                        "Adding a new database would exceed limit of 5 databases"
                    ),
                    None,
                ),
                "delete a database",
            ),
        ] {
            let Err(error) = answer else {
                panic!("stored");
            };
            let mut plan = StorePlan::default();
            let mut state = SEED;
            let step = plan.answer(Err(error.clone()), &[0], &mut state);
            let text = error.to_string();
            assert!(text.contains(fix), "{text}");
            assert_eq!(step.health(), Err(text.clone()));
            assert_eq!(
                step,
                Step::Fatal {
                    text,
                    wait: FATAL_BACKOFF
                }
            );
            assert_eq!(plan, StorePlan::default(), "no backoff: the wait is fixed");
        }
    }

    #[test]
    fn only_passing_and_fatal_failures_count_against_health() {
        let part: Vec<usize> = (0..8).collect();
        for answer in [
            classify(204, "", None),
            classify(400, V1_UNPARSABLE, None),
            classify(413, "", None),
            classify_v3(400, V3_PARTIAL, None),
            classify_v3(400, V3_REFUSED, None),
        ] {
            assert_eq!(first(answer.clone(), &part).health(), Ok(()), "{answer:?}");
        }
        assert_eq!(
            first(classify(503, "busy", None), &part).health(),
            Err("503: busy".into())
        );
        assert!(first(classify(401, "", None), &part).health().is_err());
    }

    /// An answer that may be cut short (100 lines named or more) explains the part only up to
    /// the last line it names: the lines after it are written again.
    #[test]
    fn a_partial_write_cut_short_leaves_the_lines_after_it_unknown() {
        // Every second line of 210 rejected: lines 2, 4, …, 200 named.
        let items: Vec<String> = (1..=100)
            .map(|n| {
                format!(
                    r#"{{"original_line":"m","line_number":{},"error_message":"bad"}}"#,
                    2 * n
                )
            })
            .collect();
        let body = format!(
            r#"{{"error":"partial write of line protocol occurred","data":[{}]}}"#,
            items.join(",")
        );
        let part: Vec<usize> = (1000..1210).collect();
        let Step::SettlePartial(partial) = first(classify_v3(400, &body, None), &part) else {
            panic!("not a partial write");
        };
        let odd: Vec<usize> = (1000..1200).step_by(2).collect();
        assert_eq!(partial.stored, odd);
        assert_eq!(partial.rejected.len(), 100);
        assert_eq!(partial.rejected[99], (1199, "bad".into()));
        assert_eq!(partial.unknown, (1200..1210).collect::<Vec<_>>());
    }

    #[test]
    fn a_refusal_names_a_line_of_the_part_from_one() {
        let part = [3, 5, 8];
        assert_eq!(refused_index(&part, 1), Some(3));
        assert_eq!(refused_index(&part, 3), Some(8));
        assert_eq!(refused_index(&part, 0), None);
        assert_eq!(refused_index(&part, 4), None);
    }

    #[test]
    fn retries_back_off_with_jitter_and_honour_retry_after() {
        let second = Duration::from_secs(1);
        assert_eq!(retry_wait(None, second, 0.5), second / 2);
        assert_eq!(retry_wait(Some(7 * second), second, 0.5), 7 * second);
        assert_eq!(
            retry_wait(Some(Duration::ZERO), second, 0.5),
            FIRST_BACKOFF,
            "Retry-After: 0 is no tight loop"
        );
        assert_eq!(
            retry_wait(Some(Duration::from_secs(3600)), second, 0.5),
            MAX_RETRY_AFTER
        );
        let mut backoff = FIRST_BACKOFF;
        for _ in 0..20 {
            backoff = next_backoff(backoff);
        }
        assert_eq!(backoff, MAX_BACKOFF);
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..1000 {
            let fraction = jitter(&mut state);
            assert!((0.5..1.0).contains(&fraction), "{fraction}");
        }
    }

    #[test]
    fn a_partial_write_sorts_the_part_into_stored_rejected_and_unknown() {
        // Batch indices 10..16; the answer names body lines 2 and 4 (positions 1 and 3) and
        // may be cut short after the 4th.
        let part: Vec<usize> = (10..16).collect();
        let plan = PartialPlan {
            rejected: vec![(1, "bad".into()), (3, "worse".into())],
            explained: 4,
        };
        assert_eq!(
            sort_partial(&part, plan),
            Some(Partial {
                stored: vec![10, 12],
                rejected: vec![(11, "bad".into()), (13, "worse".into())],
                unknown: vec![14, 15],
            })
        );
        let nothing = PartialPlan {
            rejected: Vec::new(),
            explained: 0,
        };
        assert_eq!(sort_partial(&part, nothing), None);
    }

    #[test]
    fn a_line_is_at_risk_with_a_non_ascii_byte_among_its_first_32() {
        // The test's line: `志` is bytes 19..22, across byte 20.
        assert!(cut_at_risk(
            "m,host=日志日志日志 latency=\"slow\" 1\n".as_bytes()
        ));
        // Across byte 20 only once the quotes are dropped: `日` sent at bytes 20..23 (byte 20
        // a boundary), rendered at 19..22 (`s="aaaaaaaaaaa日"` → `s=aaaaaaaaaaa日`).
        let shifted = "m,t=a s=\"aaaaaaaaaaa日\" 1\n";
        assert_eq!(shifted.find('日'), Some(20));
        assert!(cut_at_risk(shifted.as_bytes()));
        // Byte 31 is looked at, byte 32 not.
        let at = |n: usize| format!("{}é v=1 1\n", "m".repeat(n));
        assert!(cut_at_risk(at(31).as_bytes()));
        assert!(!cut_at_risk(at(32).as_bytes()));
        // Short lines, ASCII lines, and characters well past the quote.
        assert!(cut_at_risk("é v=1".as_bytes()));
        assert!(!cut_at_risk(b"m,host=a latency=1.5 1\n"));
        assert!(!cut_at_risk(b""));
        assert!(!cut_at_risk(
            "m,host=abcdefghijklmnopqrstuvwxyz msg=\"日志\" 1\n".as_bytes()
        ));
    }

    #[test]
    fn the_lines_at_risk_are_sorted_apart_in_order() {
        let lines: [&[u8]; 5] = [
            b"m,host=a v=1 1\n",
            "m,host=日志日志日志 v=1 1\n".as_bytes(),
            b"m,host=b v=1 1\n",
            "é v=1 1\n".as_bytes(),
            b"m,host=c v=1 1\n",
        ];
        let line = |i: usize| lines[i];
        assert_eq!(
            apart_at_risk(&[0, 1, 2, 3, 4], line),
            Some((vec![1, 3], vec![0, 2, 4]))
        );
        assert_eq!(apart_at_risk(&[1, 3], line), Some((vec![1, 3], vec![])));
        assert_eq!(apart_at_risk(&[0, 2, 4], line), None);
        assert_eq!(apart_at_risk(&[], line), None);
    }

    #[test]
    fn a_plan_through_a_route_keeps_it() {
        let mut plan = StorePlan::through(Route::V2OfV3);
        assert_eq!(plan.route(), Route::V2OfV3);
        // A rejection there is split, never diagnosed, as on the v3 API.
        let error = rejected(400, "write buffer error: parsing for line protocol failed");
        assert_eq!(plan.converted(0, false, error.clone()), split(error));
        assert_eq!(plan.route(), Route::V2OfV3);
    }
}

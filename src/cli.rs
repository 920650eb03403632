//! The command line: raw arguments parsed into [`LowArgs`], then validated into [`Args`]
//! (ripgrep's two steps), plus the usage text of every command. Each command is declared
//! once, in `COMMANDS`, and each option once, in `Flag::spec`: the usage texts, the words
//! that name a command and the options it accepts are all read from there.
//!
//! Pure: no IO. `main` hands the process arguments to [`parse`] and gets back what to do — run
//! a command, print a usage text, or print the version. Every refusal is an
//! [`Error::Usage`] carrying the problem and the usage of the (sub)command it concerns, so
//! `main` prints it and exits 2. `-c/--config` is global: it may stand before or after the
//! command.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Number, Value};

use crate::config::is_valid_name;
use crate::error::{Error, Result};
use crate::record::parse_rfc3339_ns;

/// Where the configuration file is looked for without `--config` (relative to the working
/// directory, as in the seed's container image).
pub const DEFAULT_CONFIG: &str = "config/config.yml";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Run a command.
    Command(Args),
    /// Print the usage of a command (`--help`, `collector help COMMAND`).
    Help(Topic),
    /// Print the version.
    Version,
}

/// A validated command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub config: PathBuf,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the service (`collector` or `collector run`).
    Run,
    StreamsList {
        format: Format,
    },
    StreamsSet {
        measurement: String,
        /// `None` keeps the description the measurement has (empty for a new one).
        description: Option<String>,
    },
    StreamsRemove {
        measurement: String,
        waiting: Waiting,
    },
    Publish(Publish),
    Check,
    DlqList {
        measurement: Option<String>,
        format: Format,
    },
    DlqReplay {
        measurement: Option<String>,
    },
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// A JSON array for scripts.
    Json,
}

/// What `streams remove` does when records are still waiting in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Refuse (the default).
    Refuse,
    /// Delete them with the stream (`--yes`).
    Discard,
}

/// `collector publish`.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub measurement: String,
    pub source: Source,
}

/// Where the records to publish come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// One record built from `--tag`, `--field` and `--time`.
    Record {
        tags: BTreeMap<String, String>,
        fields: BTreeMap<String, Value>,
        /// RFC 3339, already checked; `None` lets the collector use the stream's timestamp.
        time: Option<String>,
    },
    /// JSON objects read from stdin, one per line.
    Stdin,
}

impl Source {
    /// The payload of a `Record`, as the Transfer client writes it.
    pub fn payload(&self) -> Option<Value> {
        let Source::Record { tags, fields, time } = self else {
            return None;
        };
        let mut payload = serde_json::Map::new();
        if !tags.is_empty() {
            let tags = tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            payload.insert("tags".into(), Value::Object(tags));
        }
        let fields = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        payload.insert("fields".into(), Value::Object(fields));
        if let Some(time) = time {
            payload.insert("time".into(), Value::String(time.clone()));
        }
        Some(Value::Object(payload))
    }
}

/// A command or command group, for its usage text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Main,
    Run,
    Streams,
    StreamsList,
    StreamsSet,
    StreamsRemove,
    Publish,
    Check,
    Dlq,
    DlqList,
    DlqReplay,
}

impl Topic {
    /// This command's line of [`COMMANDS`].
    fn spec(self) -> &'static Spec {
        COMMANDS
            .iter()
            .find(|spec| spec.topic == self)
            .expect("every topic has a line in COMMANDS")
    }

    /// The command as typed, for messages.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The usage text: the synopsis, what the command does, then its options and the ones
    /// every command takes, each written as `Flag::spec` says.
    pub fn usage(self) -> String {
        let spec = self.spec();
        let own_options = spec.flags.iter().filter(|flag| !flag.is_global());
        let synopsis: Vec<String> = [spec.name, spec.operands]
            .into_iter()
            .filter(|part| !part.is_empty())
            .map(String::from)
            .chain(own_options.map(|flag| flag.synopsis()))
            .collect();
        // Only the options of `collector` alone are all global ones, which stand anywhere.
        let header = match self {
            Topic::Main => "options (before or after the command)",
            _ => "options",
        };
        let options: Vec<String> = spec
            .flags
            .iter()
            .chain(&[Flag::Config, Flag::Help])
            .map(|flag| flag.usage_line())
            .collect();
        format!(
            "usage: {}\n\n{}\n\n{header}:\n{}",
            synopsis.join(" "),
            spec.about,
            options.join("\n")
        )
    }
}

/// A command or command group: its name, its usage and its own options. The usage texts, the
/// words that name a command and the check of its options all read [`COMMANDS`], so each is
/// written once.
struct Spec {
    topic: Topic,
    /// The command as typed: `collector` and the words that name it.
    name: &'static str,
    /// What stands in the synopsis after the name, before the options (`MEASUREMENT`).
    operands: &'static str,
    /// What the command does, and its subcommands for a group.
    about: &'static str,
    /// The options of this command beyond the global ones, in the order the usage lists them.
    flags: &'static [Flag],
}

const COMMANDS: [Spec; 11] = [
    Spec {
        topic: Topic::Main,
        name: "collector",
        operands: "[-c PATH] [COMMAND]",
        about: "Collects log records from NATS JetStream into InfluxDB.\n\n\
                commands:\n  \
                run                  run the service (the default)\n  \
                streams              list, set and remove the measurements of the namespace\n  \
                publish              publish records to a measurement's stream\n  \
                check                check the configuration, NATS and InfluxDB\n  \
                dlq                  list and replay dead letters\n  \
                help [COMMAND]       print the help of a command",
        flags: &[Flag::Version],
    },
    Spec {
        topic: Topic::Run,
        name: "collector run",
        operands: "[-c PATH]",
        about: "Runs the service until SIGTERM or SIGINT (the same as `collector` alone).",
        flags: &[],
    },
    Spec {
        topic: Topic::Streams,
        name: "collector streams",
        operands: "(list | set | remove) ...",
        about: "The measurements of the namespace: keys of the KV bucket `<ns>_logs`, each\n\
                with its stream `<ns>:logs:<m>`.\n\n\
                commands:\n  \
                list                 each measurement with its stream and consumer state\n  \
                set MEASUREMENT      add a measurement or change its description\n  \
                remove MEASUREMENT   remove a measurement and delete its stream",
        flags: &[],
    },
    Spec {
        topic: Topic::StreamsList,
        name: "collector streams list",
        operands: "",
        about: "Lists each measurement of the bucket `<ns>_logs` with its description, the\n\
                messages waiting in its stream and the state of the shared consumer\n\
                `collector` (`-` where the stream or consumer does not exist).",
        flags: &[Flag::Json],
    },
    Spec {
        topic: Topic::StreamsSet,
        name: "collector streams set",
        operands: "MEASUREMENT",
        about:
            "Does what the Transfer client's Set does: puts {\"measurement\", \"description\"}\n\
                under key MEASUREMENT of the bucket `<ns>_logs` and creates the work-queue\n\
                stream `<ns>:logs:MEASUREMENT`. Running it again changes nothing; a new\n\
                description updates the key and the stream.",
        flags: &[Flag::Description],
    },
    Spec {
        topic: Topic::StreamsRemove,
        name: "collector streams remove",
        operands: "MEASUREMENT",
        about: "Does what the Transfer client's Remove does: deletes key MEASUREMENT of the\n\
                bucket `<ns>_logs` and the stream `<ns>:logs:MEASUREMENT`. Refuses while\n\
                records wait in the stream, unless --yes.",
        flags: &[Flag::Yes],
    },
    Spec {
        topic: Topic::Publish,
        name: "collector publish",
        operands: "MEASUREMENT",
        about: "Publishes a record to `<ns>.logs.MEASUREMENT` and waits for the stream to\n\
                acknowledge it. Without --field, reads records from stdin instead: one JSON\n\
                object per line, all checked before any is published.\n\n\
                Field values are typed without quotes: 12 is an integer, 1.5 and 1e3 are\n\
                floats, true and false are booleans, anything else is a string. Surround a\n\
                value with double quotes to force a string: --field 'code=\"12\"'.",
        flags: &[Flag::Tag, Flag::Field, Flag::Time],
    },
    Spec {
        topic: Topic::Check,
        name: "collector check",
        operands: "[-c PATH]",
        about: "Checks the configuration file, then NATS (connection and credentials,\n\
                JetStream, the bucket `<ns>_logs`) and InfluxDB (/ping, credentials and the\n\
                database or bucket, write permission with a write of nothing). Prints one\n\
                line per check; exits 1 if any failed, 2 if the configuration is bad.",
        flags: &[],
    },
    Spec {
        topic: Topic::Dlq,
        name: "collector dlq",
        operands: "(list | replay) ...",
        about: "The dead letters: records the collector could never write, kept with the\n\
                reason in the stream `<ns>:dlq`.\n\n\
                commands:\n  \
                list                 list the dead letters\n  \
                replay               publish them again to their stream and remove them",
        flags: &[],
    },
    Spec {
        topic: Topic::DlqList,
        name: "collector dlq list",
        operands: "",
        about: "Lists the dead letters of the stream `<ns>:dlq`: sequence, measurement,\n\
                reason and payload (cut short in the table, whole in --json).",
        flags: &[Flag::Measurement, Flag::Json],
    },
    Spec {
        topic: Topic::DlqReplay,
        name: "collector dlq replay",
        operands: "",
        about: "Publishes each dead letter again to the subject it came from, waits for the\n\
                stream's acknowledgement, then deletes it from `<ns>:dlq`. Fix the cause\n\
                first (a field type, a payload), or the collector dead-letters it again.",
        flags: &[Flag::Measurement],
    },
];

/// The options every command knows, and the ones that belong to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Config,
    Help,
    Version,
    Json,
    Yes,
    Description,
    Measurement,
    Tag,
    Field,
    Time,
}

/// How an option is written and what it does.
struct FlagSpec {
    short: Option<char>,
    long: &'static str,
    /// The name of its value in the usage (`PATH`); `None` for an option without a value.
    value: Option<&'static str>,
    /// Whether it may be given more than once (`[--tag K=V]...`, "(repeatable)").
    repeats: bool,
    /// What it does; a second line stands under the first.
    help: &'static str,
}

/// The column where the usage writes what an option does.
const HELP_COLUMN: usize = 23;

impl Flag {
    const ALL: [Flag; 10] = [
        Flag::Config,
        Flag::Help,
        Flag::Version,
        Flag::Json,
        Flag::Yes,
        Flag::Description,
        Flag::Measurement,
        Flag::Tag,
        Flag::Field,
        Flag::Time,
    ];

    /// The one place an option is declared: parsing and every usage text read it.
    fn spec(self) -> FlagSpec {
        let (short, long, value, help) = match self {
            Flag::Config => (
                Some('c'),
                "config",
                Some("PATH"),
                "configuration file (default: ./config/config.yml)",
            ),
            Flag::Help => (Some('h'), "help", None, "print this help"),
            Flag::Version => (Some('V'), "version", None, "print the version"),
            Flag::Json => (None, "json", None, "print a JSON array instead of a table"),
            Flag::Yes => (
                Some('y'),
                "yes",
                None,
                "delete the stream even with records waiting in it",
            ),
            Flag::Description => (
                Some('d'),
                "description",
                Some("TEXT"),
                "the description (default: keep the current one)",
            ),
            Flag::Measurement => (
                Some('m'),
                "measurement",
                Some("M"),
                "only the dead letters of measurement M",
            ),
            Flag::Tag => (None, "tag", Some("K=V"), "a tag"),
            Flag::Field => (None, "field", Some("K=V"), "a field"),
            Flag::Time => (
                None,
                "time",
                Some("RFC3339"),
                "the record's time, e.g. 2022-08-01T10:00:00.123456789+08:00\n\
                 (default: when the stream stores it)",
            ),
        };
        FlagSpec {
            short,
            long,
            value,
            repeats: matches!(self, Flag::Tag | Flag::Field),
            help,
        }
    }

    fn is_global(self) -> bool {
        matches!(self, Flag::Config | Flag::Help | Flag::Version)
    }

    /// The option in a synopsis: `[--tag K=V]...`.
    fn synopsis(self) -> String {
        let spec = self.spec();
        let value = spec.value.map(|v| format!(" {v}")).unwrap_or_default();
        let repeats = if spec.repeats { "..." } else { "" };
        format!("[--{}{value}]{repeats}", spec.long)
    }

    /// The option's lines in a usage: `  -y, --yes            delete ...`, what it does on the
    /// next line when the option is too long to leave two spaces before the column.
    fn usage_line(self) -> String {
        let spec = self.spec();
        let mut spelled = match spec.short {
            Some(c) => format!("  -{c}, --{}", spec.long),
            None => format!("  --{}", spec.long),
        };
        if let Some(value) = spec.value {
            spelled = format!("{spelled} {value}");
        }
        let indent = " ".repeat(HELP_COLUMN);
        let mut help = spec.help.replace('\n', &format!("\n{indent}"));
        if spec.repeats {
            help.push_str(" (repeatable)");
        }
        match spelled.len() + 2 <= HELP_COLUMN {
            true => format!("{spelled:HELP_COLUMN$}{help}"),
            false => format!("{spelled}\n{indent}{help}"),
        }
    }
}

/// The command line as typed: every option found anywhere, and the words in order. Nothing
/// is checked against the command yet; the first problem met is kept for [`LowArgs::validate`],
/// which knows which command's usage to print with it.
#[derive(Debug, Default)]
pub struct LowArgs {
    config: Option<PathBuf>,
    help: bool,
    version: bool,
    json: bool,
    yes: bool,
    description: Option<String>,
    measurement: Option<String>,
    tags: Vec<String>,
    fields: Vec<String>,
    time: Option<String>,
    words: Vec<String>,
    /// Options given, as typed, in order (for "not an option of this command").
    given: Vec<(Flag, String)>,
    /// The first malformed option (unknown, missing or unexpected value).
    problem: Option<String>,
}

impl LowArgs {
    /// Splits the arguments (without the program name) into options and words.
    pub fn parse(args: impl IntoIterator<Item = String>) -> LowArgs {
        let mut low = LowArgs::default();
        let mut args = args.into_iter();
        let mut only_words = false;
        while let Some(arg) = args.next() {
            if only_words || arg == "-" || !arg.starts_with('-') {
                low.words.push(arg);
                continue;
            }
            if arg == "--" {
                only_words = true;
                continue;
            }
            let (flag, inline) = match arg.strip_prefix("--") {
                Some(long) => {
                    let (name, inline) = match long.split_once('=') {
                        Some((name, value)) => (name, Some(value.to_string())),
                        None => (long, None),
                    };
                    (
                        Flag::ALL.into_iter().find(|f| f.spec().long == name),
                        inline,
                    )
                }
                None => {
                    let mut chars = arg[1..].chars();
                    let c = chars.next();
                    let flag = match (c, chars.next()) {
                        (Some(c), None) => {
                            Flag::ALL.into_iter().find(|f| f.spec().short == Some(c))
                        }
                        _ => None,
                    };
                    (flag, None)
                }
            };
            let Some(flag) = flag else {
                low.problem
                    .get_or_insert_with(|| format!("unknown option `{arg}`"));
                continue;
            };
            let spelled = arg.split('=').next().unwrap_or(&arg).to_string();
            let value = match (flag.spec().value.is_some(), inline) {
                (true, Some(value)) => Some(value),
                (true, None) => match args.next() {
                    Some(value) => Some(value),
                    None => {
                        low.problem
                            .get_or_insert_with(|| format!("`{spelled}` needs a value"));
                        continue;
                    }
                },
                (false, Some(_)) => {
                    low.problem
                        .get_or_insert_with(|| format!("`{spelled}` takes no value"));
                    continue;
                }
                (false, None) => None,
            };
            low.given.push((flag, spelled));
            match flag {
                Flag::Config => low.config = value.map(PathBuf::from),
                Flag::Help => low.help = true,
                Flag::Version => low.version = true,
                Flag::Json => low.json = true,
                Flag::Yes => low.yes = true,
                Flag::Description => low.description = value,
                Flag::Measurement => low.measurement = value,
                Flag::Tag => low.tags.extend(value),
                Flag::Field => low.fields.extend(value),
                Flag::Time => low.time = value,
            }
        }
        low
    }

    /// Checks the words and options against the command they name.
    pub fn validate(self) -> Result<Parsed> {
        let words: Vec<&str> = self.words.iter().map(String::as_str).collect();
        let (topic, rest) = match words.as_slice() {
            ["help", rest @ ..] => {
                let topic = match topic_of(rest) {
                    Ok((topic, [])) => topic,
                    Ok((topic, [extra, ..])) => {
                        return Err(usage(topic, format!("unexpected argument `{extra}`")))
                    }
                    Err(e) => return Err(e),
                };
                return Ok(Parsed::Help(topic));
            }
            words => topic_of(words)?,
        };
        if self.help {
            return Ok(Parsed::Help(topic));
        }
        if self.version {
            return Ok(Parsed::Version);
        }
        if let Some(problem) = &self.problem {
            return Err(usage(topic, problem.clone()));
        }
        let allowed = topic.spec().flags;
        if let Some((_, spelled)) = self
            .given
            .iter()
            .find(|(flag, _)| !flag.is_global() && !allowed.contains(flag))
        {
            return Err(usage(
                topic,
                format!("`{spelled}` is not an option of `{}`", topic.name()),
            ));
        }
        let format = match self.json {
            true => Format::Json,
            false => Format::Table,
        };
        let command = match topic {
            Topic::Main | Topic::Run => {
                no_more(topic, rest)?;
                Command::Run
            }
            Topic::Streams | Topic::Dlq => {
                let problem = match rest.first() {
                    None => "which command? see below".to_string(),
                    Some(word) => format!("unknown command `{word}`"),
                };
                return Err(usage(topic, problem));
            }
            Topic::StreamsList => {
                no_more(topic, rest)?;
                Command::StreamsList { format }
            }
            Topic::StreamsSet => Command::StreamsSet {
                measurement: measurement_word(topic, rest)?,
                description: self.description,
            },
            Topic::StreamsRemove => Command::StreamsRemove {
                measurement: measurement_word(topic, rest)?,
                waiting: match self.yes {
                    true => Waiting::Discard,
                    false => Waiting::Refuse,
                },
            },
            Topic::Publish => {
                let measurement = measurement_word(topic, rest)?;
                let source = if self.fields.is_empty() {
                    if let Some((_, spelled)) = self
                        .given
                        .iter()
                        .find(|(flag, _)| matches!(flag, Flag::Tag | Flag::Time))
                    {
                        return Err(usage(
                            topic,
                            format!(
                                "`{spelled}` needs at least one --field (without --field, \
                                 records are read from stdin)"
                            ),
                        ));
                    }
                    Source::Stdin
                } else {
                    record_source(&self.tags, &self.fields, self.time)
                        .map_err(|problem| usage(topic, problem))?
                };
                Command::Publish(Publish {
                    measurement,
                    source,
                })
            }
            Topic::Check => {
                no_more(topic, rest)?;
                Command::Check
            }
            Topic::DlqList | Topic::DlqReplay => {
                no_more(topic, rest)?;
                let measurement = match self.measurement {
                    Some(m) if is_valid_name(&m) => Some(m),
                    Some(m) => return Err(usage(topic, bad_name(&m))),
                    None => None,
                };
                match topic {
                    Topic::DlqList => Command::DlqList {
                        measurement,
                        format,
                    },
                    _ => Command::DlqReplay { measurement },
                }
            }
        };
        Ok(Parsed::Command(Args {
            config: self.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
            command,
        }))
    }
}

/// Parses and validates the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed> {
    LowArgs::parse(args).validate()
}

fn usage(topic: Topic, problem: impl AsRef<str>) -> Error {
    Error::Usage(format!(
        "{}: {}\n\n{}",
        topic.name(),
        problem.as_ref(),
        topic.usage()
    ))
}

/// The command the leading words name (the longest name in [`COMMANDS`] they start with),
/// and the words after it.
fn topic_of<'a, 'b>(words: &'a [&'b str]) -> Result<(Topic, &'a [&'b str])> {
    let (topic, n_words) = COMMANDS
        .iter()
        .map(|spec| {
            let own: Vec<&str> = spec.name.split(' ').skip(1).collect();
            (spec.topic, own)
        })
        .filter(|(_, own)| words.starts_with(own))
        .map(|(topic, own)| (topic, own.len()))
        .max_by_key(|(_, n_words)| *n_words)
        .expect("`collector` alone names a command");
    match (topic, words.first()) {
        (Topic::Main, Some(word)) => Err(usage(Topic::Main, format!("unknown command `{word}`"))),
        _ => Ok((topic, &words[n_words..])),
    }
}

fn no_more(topic: Topic, rest: &[&str]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(word) => Err(usage(topic, format!("unexpected argument `{word}`"))),
    }
}

fn bad_name(name: &str) -> String {
    format!("`{name}` is not a measurement name: use letters, digits, `_` and `-`")
}

/// The one MEASUREMENT word a command takes.
fn measurement_word(topic: Topic, rest: &[&str]) -> Result<String> {
    match rest {
        [] => Err(usage(topic, "MEASUREMENT is missing")),
        [m] if is_valid_name(m) => Ok(m.to_string()),
        [m] => Err(usage(topic, bad_name(m))),
        [_, extra, ..] => Err(usage(topic, format!("unexpected argument `{extra}`"))),
    }
}

/// Splits `K=V`; the key may not be empty.
fn key_value<'a>(option: &str, text: &'a str) -> Result<(&'a str, &'a str), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(format!("`{option} {text}` is not KEY=VALUE")),
    }
}

fn record_source(
    tags: &[String],
    fields: &[String],
    time: Option<String>,
) -> Result<Source, String> {
    let mut tag_map = BTreeMap::new();
    for text in tags {
        let (key, value) = key_value("--tag", text)?;
        if tag_map.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("tag `{key}` is given twice"));
        }
    }
    let mut field_map = BTreeMap::new();
    for text in fields {
        let (key, value) = key_value("--field", text)?;
        let value = field_value(value).map_err(|problem| format!("field `{key}`: {problem}"))?;
        if field_map.insert(key.to_string(), value).is_some() {
            return Err(format!("field `{key}` is given twice"));
        }
    }
    if let Some(time) = &time {
        parse_rfc3339_ns(time)
            .map_err(|e| format!("--time: {e}; write e.g. 2022-08-01T10:00:00.5+08:00"))?;
    }
    Ok(Source::Record {
        tags: tag_map,
        fields: field_map,
        time,
    })
}

/// Types a `--field` value: `"..."` a string (quotes removed), `true`/`false` a boolean, an
/// integer that fits in 64 bits an integer, any other number a float, anything else a string.
pub fn field_value(text: &str) -> Result<Value, String> {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        return Ok(Value::String(text[1..text.len() - 1].to_string()));
    }
    match text {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Value::Number(n.into()));
    }
    // Only what reads as a decimal number is one: Rust would also take `inf` and `NaN`.
    let numeric = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if numeric {
        if let Ok(x) = text.parse::<f64>() {
            return Number::from_f64(x).map(Value::Number).ok_or_else(|| {
                format!("`{text}` is out of range for a float; write \"{text}\" for a string")
            });
        }
    }
    Ok(Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_line(line: &str) -> Result<Parsed> {
        parse(line.split_whitespace().map(String::from))
    }

    fn command(config: &str, command: Command) -> Parsed {
        Parsed::Command(Args {
            config: PathBuf::from(config),
            command,
        })
    }

    /// Asserts that `line` parses to `expected`.
    fn check(line: &str, expected: Parsed) {
        match parse_line(line) {
            Ok(parsed) => assert_eq!(parsed, expected, "{line}"),
            Err(e) => panic!("{line}: {e}"),
        }
    }

    /// Asserts that `line` is refused with a message holding `needle` and the usage of `topic`.
    fn refused(line: &str, topic: Topic, needle: &str) {
        match parse_line(line) {
            Err(Error::Usage(text)) => {
                assert!(text.contains(needle), "{line}: {text:?} lacks {needle:?}");
                assert!(
                    text.ends_with(&topic.usage()),
                    "{line}: {text:?} should end with the usage of {}",
                    topic.name()
                );
                assert_eq!(Error::Usage(text).exit_code(), 2);
            }
            other => panic!("{line}: expected a usage error, got {other:?}"),
        }
    }

    fn record(tags: &[(&str, &str)], fields: Value, time: Option<&str>) -> Source {
        Source::Record {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            time: time.map(String::from),
        }
    }

    #[test]
    fn commands() {
        use Command::*;
        let table: Vec<(&str, Parsed)> = vec![
            ("", command(DEFAULT_CONFIG, Run)),
            ("run", command(DEFAULT_CONFIG, Run)),
            ("-c a.yml", command("a.yml", Run)),
            ("--config=a.yml run", command("a.yml", Run)),
            ("run --config a.yml", command("a.yml", Run)),
            (
                "streams list",
                command(
                    DEFAULT_CONFIG,
                    StreamsList {
                        format: Format::Table,
                    },
                ),
            ),
            (
                "-c x streams list --json",
                command(
                    "x",
                    StreamsList {
                        format: Format::Json,
                    },
                ),
            ),
            (
                "streams set access",
                command(
                    DEFAULT_CONFIG,
                    StreamsSet {
                        measurement: "access".into(),
                        description: None,
                    },
                ),
            ),
            (
                "streams set access -d web --config c.yml",
                command(
                    "c.yml",
                    StreamsSet {
                        measurement: "access".into(),
                        description: Some("web".into()),
                    },
                ),
            ),
            (
                "streams set --description=web access",
                command(
                    DEFAULT_CONFIG,
                    StreamsSet {
                        measurement: "access".into(),
                        description: Some("web".into()),
                    },
                ),
            ),
            (
                "streams remove access",
                command(
                    DEFAULT_CONFIG,
                    StreamsRemove {
                        measurement: "access".into(),
                        waiting: Waiting::Refuse,
                    },
                ),
            ),
            (
                "streams remove access --yes",
                command(
                    DEFAULT_CONFIG,
                    StreamsRemove {
                        measurement: "access".into(),
                        waiting: Waiting::Discard,
                    },
                ),
            ),
            (
                "streams remove -y -- -odd-",
                command(
                    DEFAULT_CONFIG,
                    StreamsRemove {
                        measurement: "-odd-".into(),
                        waiting: Waiting::Discard,
                    },
                ),
            ),
            ("check", command(DEFAULT_CONFIG, Check)),
            (
                "dlq list",
                command(
                    DEFAULT_CONFIG,
                    DlqList {
                        measurement: None,
                        format: Format::Table,
                    },
                ),
            ),
            (
                "dlq list -m access --json",
                command(
                    DEFAULT_CONFIG,
                    DlqList {
                        measurement: Some("access".into()),
                        format: Format::Json,
                    },
                ),
            ),
            (
                "dlq replay --measurement=access",
                command(
                    DEFAULT_CONFIG,
                    DlqReplay {
                        measurement: Some("access".into()),
                    },
                ),
            ),
            (
                "publish access",
                command(
                    DEFAULT_CONFIG,
                    Publish(super::Publish {
                        measurement: "access".into(),
                        source: Source::Stdin,
                    }),
                ),
            ),
            (
                "publish access --tag host=a --field n=12 --field x=1.5 --field ok=true --field msg=hi --field code=\"12\" --field e=1e3 --tag empty=",
                command(
                    DEFAULT_CONFIG,
                    Publish(super::Publish {
                        measurement: "access".into(),
                        source: record(
                            &[("empty", ""), ("host", "a")],
                            json!({"n": 12, "x": 1.5, "ok": true, "msg": "hi", "code": "12", "e": 1000.0}),
                            None,
                        ),
                    }),
                ),
            ),
            ("--help", Parsed::Help(Topic::Main)),
            ("-h run", Parsed::Help(Topic::Run)),
            ("streams --help", Parsed::Help(Topic::Streams)),
            ("streams set --help", Parsed::Help(Topic::StreamsSet)),
            ("streams remove x -h --bogus", Parsed::Help(Topic::StreamsRemove)),
            ("publish --help", Parsed::Help(Topic::Publish)),
            ("check --help", Parsed::Help(Topic::Check)),
            ("dlq -h", Parsed::Help(Topic::Dlq)),
            ("dlq list --help", Parsed::Help(Topic::DlqList)),
            ("dlq replay --help", Parsed::Help(Topic::DlqReplay)),
            ("help", Parsed::Help(Topic::Main)),
            ("help dlq replay", Parsed::Help(Topic::DlqReplay)),
            ("streams list --json -c x --help", Parsed::Help(Topic::StreamsList)),
            ("-V", Parsed::Version),
            ("--version", Parsed::Version),
        ];
        for (line, expected) in table {
            check(line, expected);
        }
    }

    #[test]
    fn usage_errors_carry_the_usage_of_their_command() {
        let table = [
            ("bogus", Topic::Main, "unknown command `bogus`"),
            ("--bogus", Topic::Main, "unknown option `--bogus`"),
            ("-x", Topic::Main, "unknown option `-x`"),
            ("-cfoo", Topic::Main, "unknown option `-cfoo`"),
            ("--config", Topic::Main, "`--config` needs a value"),
            ("run extra", Topic::Run, "unexpected argument `extra`"),
            (
                "run --json",
                Topic::Run,
                "`--json` is not an option of `collector run`",
            ),
            ("--help=yes", Topic::Main, "`--help` takes no value"),
            ("streams", Topic::Streams, "which command"),
            ("streams drop", Topic::Streams, "unknown command `drop`"),
            (
                "streams list extra",
                Topic::StreamsList,
                "unexpected argument `extra`",
            ),
            (
                "streams list --yes",
                Topic::StreamsList,
                "`--yes` is not an option",
            ),
            ("streams set", Topic::StreamsSet, "MEASUREMENT is missing"),
            (
                "streams set a.b",
                Topic::StreamsSet,
                "`a.b` is not a measurement name",
            ),
            (
                "streams set a b",
                Topic::StreamsSet,
                "unexpected argument `b`",
            ),
            (
                "streams set a --json",
                Topic::StreamsSet,
                "`--json` is not an option",
            ),
            (
                "streams set a --description",
                Topic::StreamsSet,
                "`--description` needs a value",
            ),
            (
                "streams remove",
                Topic::StreamsRemove,
                "MEASUREMENT is missing",
            ),
            (
                "streams remove a* --yes",
                Topic::StreamsRemove,
                "not a measurement name",
            ),
            (
                "streams remove a --yes=1",
                Topic::StreamsRemove,
                "`--yes` takes no value",
            ),
            ("publish", Topic::Publish, "MEASUREMENT is missing"),
            (
                "publish a --tag h=1",
                Topic::Publish,
                "`--tag` needs at least one --field",
            ),
            (
                "publish a --time 2022-08-01T00:00:00Z",
                Topic::Publish,
                "`--time` needs at least one --field",
            ),
            (
                "publish a --field n",
                Topic::Publish,
                "`--field n` is not KEY=VALUE",
            ),
            (
                "publish a --field =1",
                Topic::Publish,
                "`--field =1` is not KEY=VALUE",
            ),
            (
                "publish a --field n=1 --field n=2",
                Topic::Publish,
                "field `n` is given twice",
            ),
            (
                "publish a --field n=1 --tag h=a --tag h=b",
                Topic::Publish,
                "tag `h` is given twice",
            ),
            ("publish a --field n=1e999", Topic::Publish, "out of range"),
            (
                "publish a --field n=1 --time yesterday",
                Topic::Publish,
                "--time: time",
            ),
            (
                "publish a --field n=1 --json",
                Topic::Publish,
                "`--json` is not an option",
            ),
            (
                "publish a --field n=1 -m a",
                Topic::Publish,
                "`-m` is not an option",
            ),
            ("check now", Topic::Check, "unexpected argument `now`"),
            ("check --yes", Topic::Check, "`--yes` is not an option"),
            ("dlq", Topic::Dlq, "which command"),
            ("dlq purge", Topic::Dlq, "unknown command `purge`"),
            (
                "dlq list -m a.b",
                Topic::DlqList,
                "`a.b` is not a measurement name",
            ),
            (
                "dlq list extra",
                Topic::DlqList,
                "unexpected argument `extra`",
            ),
            (
                "dlq replay --json",
                Topic::DlqReplay,
                "`--json` is not an option",
            ),
            ("dlq replay -m", Topic::DlqReplay, "`-m` needs a value"),
            ("help bogus", Topic::Main, "unknown command `bogus`"),
            (
                "help check extra",
                Topic::Check,
                "unexpected argument `extra`",
            ),
        ];
        for (line, topic, needle) in table {
            refused(line, topic, needle);
        }
    }

    #[test]
    fn field_values_are_typed() {
        let table = [
            ("12", json!(12)),
            ("-7", json!(-7)),
            ("+3", json!(3)),
            ("1.5", json!(1.5)),
            ("1.0", json!(1.0)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("18446744073709551616", json!(18446744073709551616.0)),
            ("true", json!(true)),
            ("false", json!(false)),
            ("True", json!("True")),
            ("hello world", json!("hello world")),
            ("", json!("")),
            ("\"12\"", json!("12")),
            ("\"true\"", json!("true")),
            ("\"", json!("\"")),
            ("\"a", json!("\"a")),
            ("inf", json!("inf")),
            ("NaN", json!("NaN")),
            ("1.2.3", json!("1.2.3")),
            ("-", json!("-")),
            ("0x10", json!("0x10")),
        ];
        for (text, expected) in table {
            assert_eq!(field_value(text), Ok(expected.clone()), "{text}");
            // The type survives the trip through JSON text the payload takes.
            let back: Value = serde_json::from_str(&expected.to_string()).unwrap();
            assert_eq!(back, expected, "{text}");
        }
        assert!(field_value("1e400").is_err());
    }

    #[test]
    fn record_payloads_follow_the_transfer_client() {
        let source = record(&[("host", "a")], json!({"n": 1, "x": 1.0}), Some("T"));
        assert_eq!(
            source.payload().unwrap().to_string(),
            r#"{"fields":{"n":1,"x":1.0},"tags":{"host":"a"},"time":"T"}"#
        );
        let source = record(&[], json!({"msg": "hi"}), None);
        assert_eq!(
            source.payload().unwrap().to_string(),
            r#"{"fields":{"msg":"hi"}}"#
        );
        assert_eq!(Source::Stdin.payload(), None);
    }

    #[test]
    fn every_usage_names_its_command_and_the_config_option() {
        for topic in [
            Topic::Main,
            Topic::Run,
            Topic::Streams,
            Topic::StreamsList,
            Topic::StreamsSet,
            Topic::StreamsRemove,
            Topic::Publish,
            Topic::Check,
            Topic::Dlq,
            Topic::DlqList,
            Topic::DlqReplay,
        ] {
            let text = topic.usage();
            assert!(
                text.starts_with(&format!("usage: {}", topic.name())),
                "{text}"
            );
            assert!(text.contains("--config PATH"), "{text}");
            assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        }
    }
}

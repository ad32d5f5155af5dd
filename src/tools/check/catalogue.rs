//! The catalogue: every case as one value (id, level, the assignment clause it checks, what it
//! needs, when it runs and its run function), and what is generated from it: the README's table,
//! `--help`'s list, the `--only`/`--skip` selection.

use std::fmt::Write as _;

use super::cases;
use super::model::{CaseId, CheckConfig, Clause, Level, Need, Schedule};
use super::runner::Case;
use crate::client::ClientError;

const PORT: Clause = Clause {
    source: "1.a",
    original: Some("Membuka port di port 45000 dengan transport TCP"),
    english: "open port 45000 with TCP transport",
};
const CONCURRENT: Clause = Clause {
    source: "1.b",
    original: Some("Server harus dapat melayani request yang concurrent"),
    english: "the server must be able to serve concurrent requests",
};
const REQUEST: Clause = Clause {
    source: "1.c.i",
    original: Some(
        "Diawali dengan string \"TIME\" dan diakhiri dengan karakter 13 dan karakter 10",
    ),
    english: "a request starts with the string TIME and ends with the characters 13 and 10 (CR LF)",
};
const QUIT: Clause = Clause {
    source: "1.c.ii",
    original: Some(
        "Setiap request dapat diakhiri dengan string \"QUIT\" yang diakhiri dengan karakter 13 dan 10",
    ),
    english: "a session can be ended with the string QUIT, ending with 13 and 10",
};
const REPLY: Clause = Clause {
    source: "1.d",
    original: Some(
        "Dalam bentuk string (UTF-8), diawali dengan \"JAM<spasi><jam>\"; <jam> berisikan info jam \
         dalam format \"hh:mm:ss\" dan diakhiri dengan karakter 13 dan karakter 10",
    ),
    english: "a UTF-8 string starting with \"JAM<space><time>\", the time as hh:mm:ss, ending with 13 \
              and 10",
};
const TIME_VALUE: Clause = Clause {
    source: "1.d.iii",
    original: Some("<jam> berisikan info jam"),
    english: "<time> holds the time (the server's clock, as it reads it)",
};
const TESTING: Clause = Clause {
    source: "testing",
    original: Some("menggunakan netcat ... lalu ketik perintah TIME, command random, dan QUIT"),
    english: "the course tests servers with nc and telnet, typing TIME, a random command and QUIT",
};
const BYTE_STREAM: Clause = Clause {
    source: "TCP",
    original: None,
    english: "TCP is a byte stream: a line may come in pieces, or several lines in one read",
};
const ANY_BYTES: Clause = Clause {
    source: "TCP",
    original: None,
    english: "TCP carries any bytes: a line that is not UTF-8 must not end the session",
};
const OBSERVATION: Clause = Clause {
    source: "-",
    original: None,
    english: "an observation for the report; never fails",
};

/// Every case, in the order they are reported. `CATALOGUE[id as usize].id == id` (a test checks).
pub static CATALOGUE: [Case; 16] = [
    Case {
        id: CaseId::Connect,
        level: Level::Must,
        title: "a TCP connection is accepted",
        clause: PORT,
        needs: &[],
        schedule: Schedule::First,
        run: cases::CONNECT,
    },
    Case {
        id: CaseId::TimeFormat,
        level: Level::Must,
        title: "TIME CR LF gets exactly JAM hh:mm:ss CR LF (24 h, zero-padded)",
        clause: REPLY,
        needs: &[Need::Connection],
        schedule: Schedule::Lead,
        run: cases::TIME_FORMAT,
    },
    Case {
        id: CaseId::Repeat,
        level: Level::Must,
        title: "three TIMEs on one connection get three replies",
        clause: REQUEST,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Sequence,
        run: cases::REPEAT,
    },
    Case {
        id: CaseId::Quit,
        level: Level::Must,
        title: "after QUIT CR LF the server closes the connection",
        clause: QUIT,
        needs: &[Need::Connection],
        schedule: Schedule::Sequence,
        run: cases::QUIT,
    },
    Case {
        id: CaseId::Concurrent,
        level: Level::Must,
        title: "while client A holds a connection with half a line sent, client B's TIME is answered",
        clause: CONCURRENT,
        needs: &[Need::Connection, Need::AnyReply],
        schedule: Schedule::Lead,
        run: cases::CONCURRENT,
    },
    Case {
        id: CaseId::SplitLine,
        level: Level::Must,
        title: "TI, a pause, ME CR LF gets exactly one reply, a time",
        clause: BYTE_STREAM,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Sequence,
        run: cases::SPLIT_LINE,
    },
    Case {
        id: CaseId::Pipelined,
        level: Level::Must,
        title: "three TIME CR LF in one write get three replies",
        clause: BYTE_STREAM,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::Passed(CaseId::Repeat),
            Need::After(CaseId::SplitLine),
        ],
        schedule: Schedule::Sequence,
        run: cases::PIPELINED,
    },
    Case {
        id: CaseId::TimeCorrect,
        level: Level::Should,
        title: "the time is this machine's clock (a zone difference removed only across machines)",
        clause: TIME_VALUE,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::NoGreeting,
            Need::Passed(CaseId::Repeat),
        ],
        schedule: Schedule::Beside,
        run: cases::TIME_CORRECT,
    },
    Case {
        id: CaseId::ManyClients,
        level: Level::Should,
        title: "clients connecting at once are each answered",
        clause: CONCURRENT,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Last,
        run: cases::MANY_CLIENTS,
    },
    Case {
        id: CaseId::UnknownCommand,
        level: Level::Should,
        title: "an unknown line gets an error line (CR LF), and the session goes on",
        clause: TESTING,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::Passed(CaseId::Repeat),
        ],
        schedule: Schedule::Sequence,
        run: cases::UNKNOWN_COMMAND,
    },
    Case {
        id: CaseId::LfOnly,
        level: Level::Should,
        title: "TIME LF (what nc sends) is answered",
        clause: TESTING,
        needs: &[Need::Connection, Need::TimeReply],
        schedule: Schedule::Sequence,
        run: cases::LF_ONLY,
    },
    Case {
        id: CaseId::BadBytes,
        level: Level::Should,
        title: "a line of invalid UTF-8 and control bytes does not end the session",
        clause: ANY_BYTES,
        needs: &[
            Need::Connection,
            Need::TimeReply,
            Need::Passed(CaseId::Repeat),
        ],
        schedule: Schedule::Sequence,
        run: cases::BAD_BYTES,
    },
    Case {
        id: CaseId::Zone,
        level: Level::Info,
        title: "the zone difference between the server's time and this machine's UTC",
        clause: OBSERVATION,
        needs: &[Need::Observed(CaseId::TimeCorrect)],
        schedule: Schedule::Report,
        run: cases::ZONE,
    },
    Case {
        id: CaseId::Date,
        level: Level::Info,
        title: "whether the reply includes a date",
        clause: OBSERVATION,
        needs: &[Need::Observed(CaseId::TimeFormat)],
        schedule: Schedule::Report,
        run: cases::DATE,
    },
    Case {
        id: CaseId::Latency,
        level: Level::Info,
        title: "how long replies take",
        clause: OBSERVATION,
        needs: &[],
        schedule: Schedule::Report,
        run: cases::LATENCY,
    },
    Case {
        id: CaseId::AfterQuit,
        level: Level::Info,
        title: "what the server sends after QUIT",
        clause: OBSERVATION,
        needs: &[Need::Observed(CaseId::Quit)],
        schedule: Schedule::Report,
        run: cases::AFTER_QUIT,
    },
];

/// The README's and the man page's table of cases, from the catalogue (a test keeps the README's
/// copy in sync).
pub fn cases_markdown() -> String {
    let mut out =
        String::from("| id | level | what passes | assignment clause |\n|---|---|---|---|\n");
    for case in &CATALOGUE {
        let clause = match case.clause.original {
            Some(original) => format!(
                "{}: *{}* ({})",
                case.clause.source, original, case.clause.english
            ),
            None => format!("{}: {}", case.clause.source, case.clause.english),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            case.id,
            case.level.name(),
            case.title,
            clause
                .replace('|', "\\|")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        );
    }
    out
}

/// `jam check --help`'s list of cases, from the catalogue.
pub fn cases_help() -> String {
    super::model::case_list(&CATALOGUE)
}

impl CaseId {
    /// The case itself.
    pub fn case(self) -> &'static Case {
        &CATALOGUE[self as usize]
    }
}

impl CheckConfig {
    /// Selects cases with `--only` and `--skip` lists; an unknown id or an empty selection is a
    /// usage error (a run of no case must never look like a pass).
    pub fn select(&mut self, only: &[String], skip: &[String]) -> Result<(), ClientError> {
        let parse = |ids: &[String]| -> Result<Vec<CaseId>, ClientError> {
            ids.iter()
                .map(|id| {
                    CaseId::parse(id).ok_or_else(|| {
                        let known: Vec<&str> = CATALOGUE.iter().map(|c| c.id.as_str()).collect();
                        ClientError::Usage(format!(
                            "unknown case {id:?}; the cases are: {}",
                            known.join(", ")
                        ))
                    })
                })
                .collect()
        };
        let (only, skip) = (parse(only)?, parse(skip)?);
        if skip.contains(&CaseId::Connect) {
            return Err(ClientError::Usage(
                "connect cannot be skipped: every other case needs a connection".into(),
            ));
        }
        // connect always runs: every other case needs it.
        self.selected = CATALOGUE
            .iter()
            .map(|c| c.id)
            .filter(|id| *id == CaseId::Connect || only.is_empty() || only.contains(id))
            .filter(|id| !skip.contains(id))
            .collect();
        let chosen = only.is_empty() || only.contains(&CaseId::Connect);
        let graded = self
            .selected
            .iter()
            .any(|id| *id != CaseId::Connect && id.case().level != Level::Info);
        if !chosen && !graded {
            return Err(ClientError::Usage(
                "--only and --skip leave no must or should case to run (info cases only report \
                 what the others observed)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_case_sits_at_its_ids_index_and_ids_round_trip() {
        assert_eq!(CATALOGUE.map(|c| c.id), CaseId::ALL);
        for (i, case) in CATALOGUE.iter().enumerate() {
            assert_eq!(case.id as usize, i, "{}", case.id);
            assert_eq!(CaseId::parse(case.id.as_str()), Some(case.id));
        }
        assert_eq!(CaseId::parse("time-fromat"), None);
    }

    #[test]
    fn a_case_needs_only_cases_that_run_before_it() {
        for case in &CATALOGUE {
            for need in case.needs {
                if let Need::Passed(id) | Need::After(id) | Need::Observed(id) = need {
                    let before = id.case().schedule != Schedule::Report
                        && (case.schedule == Schedule::Report || *id < case.id);
                    assert!(before, "{} needs {id}, which runs later", case.id);
                }
            }
        }
    }

    #[test]
    fn the_markdown_table_has_a_row_per_case_with_its_clause() {
        let table = cases_markdown();
        assert_eq!(table.lines().count(), 2 + CATALOGUE.len());
        assert!(table.contains("| `time-format` | must |"));
        assert!(table.contains("diawali dengan \"JAM&lt;spasi&gt;&lt;jam&gt;\""));
    }
}

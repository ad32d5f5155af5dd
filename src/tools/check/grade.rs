//! Grades for the gradebook: points per case (`--points`) and each server's score. Pure: the
//! report formats (text, JSON, CSV, Gradescope, HTML) all take their scores from here, so they
//! cannot disagree.

use std::fmt;

use super::model::{Graded, Level, Status, TargetReport};

/// Points a passed case earns: by level, overridden per case id.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    must: f64,
    should: f64,
    info: f64,
    /// Per-case overrides, by id.
    cases: Vec<(String, f64)>,
    /// Given on the command line (not the default): the score is worth showing in the text table.
    pub given: bool,
}

impl Default for Points {
    /// One point per must and per should case, none for info cases.
    fn default() -> Self {
        Points {
            must: 1.0,
            should: 1.0,
            info: 0.0,
            cases: Vec::new(),
            given: false,
        }
    }
}

/// Most points one case may be worth: more is a typo.
const MAX_POINTS: f64 = 1000.0;

impl Points {
    /// Parses `must=N,should=M` (and `info=K`, `CASE-ID=P`), separated by commas or new lines,
    /// `#` starting a comment: the same text on the command line or in a points file. `ids` are
    /// the catalogue's case ids; a key that is neither a level nor one of them is an error.
    pub fn parse(text: &str, ids: &[&str]) -> Result<Points, String> {
        let mut points = Points {
            given: true,
            ..Points::default()
        };
        let entries = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        let mut any = false;
        for entry in entries {
            let Some((key, value)) = entry.split_once('=') else {
                return Err(format!(
                    "`{entry}` is not KEY=POINTS (e.g. must=2,should=1 or time-format=3)"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            let n: f64 = value
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite() && (0.0..=MAX_POINTS).contains(n))
                .ok_or_else(|| {
                    format!(
                        "points for `{key}` must be a number from 0 to {MAX_POINTS}, not `{value}`"
                    )
                })?;
            match key {
                "must" => points.must = n,
                "should" => points.should = n,
                "info" => points.info = n,
                id if ids.contains(&id) => {
                    points.cases.retain(|(known, _)| known != id);
                    points.cases.push((id.to_string(), n));
                }
                other => {
                    return Err(format!(
                        "`{other}` is neither a level (must, should, info) nor a case id ({})",
                        ids.join(", ")
                    ));
                }
            }
            any = true;
        }
        if !any {
            return Err("no points given (e.g. must=2,should=1)".into());
        }
        Ok(points)
    }

    /// What a passed case with this id and level earns.
    pub fn of(&self, id: &str, level: Level) -> f64 {
        if let Some((_, n)) = self.cases.iter().find(|(known, _)| known == id) {
            return *n;
        }
        match level {
            Level::Must => self.must,
            Level::Should => self.should,
            Level::Info => self.info,
        }
    }

    /// The points as one line, the way they are written (`must=1,should=1,info=0`).
    pub fn spec(&self) -> String {
        let mut parts = vec![
            format!("must={}", number(self.must)),
            format!("should={}", number(self.should)),
            format!("info={}", number(self.info)),
        ];
        parts.extend(
            self.cases
                .iter()
                .map(|(id, n)| format!("{id}={}", number(*n))),
        );
        parts.join(",")
    }
}

/// A server's score: the points of the cases it passed, of the points of every selected case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Score {
    /// Points earned.
    pub earned: f64,
    /// Points possible.
    pub max: f64,
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", number(self.earned), number(self.max))
    }
}

/// One case's points: what it earned, of what it was worth (`None` when not selected).
pub(crate) fn case_points<C: Graded>(
    result: &super::model::CaseResult<C>,
    points: &Points,
) -> Option<(f64, f64)> {
    if result.not_selected() {
        return None;
    }
    let worth = points.of(result.case.name(), result.case.level());
    let earned = if result.status == Status::Pass {
        worth
    } else {
        0.0
    };
    Some((earned, worth))
}

/// A server's score. A server that could not be checked earns nothing of the same maximum, so
/// every row of a class has the same maximum.
pub(crate) fn score<C: Graded>(report: &TargetReport<C>, points: &Points) -> Score {
    let mut score = Score {
        earned: 0.0,
        max: 0.0,
    };
    for (earned, worth) in report.cases.iter().filter_map(|r| case_points(r, points)) {
        score.earned += earned;
        score.max += worth;
    }
    score
}

/// A number of points as people write it: `2`, `0.5`, `2.25` (at most two decimals).
pub(crate) fn number(n: f64) -> String {
    let text = format!("{n:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &[&str] = &["connect", "time-format", "quit"];

    #[test]
    fn levels_and_case_ids_take_points_on_one_line_or_in_a_file() {
        let line = Points::parse("must=2, should=0.5,quit=3", IDS).expect("valid points");
        let file = Points::parse(
            "# lab 3\nmust = 2\nshould=0.5\n\nquit=3 # QUIT matters\n",
            IDS,
        )
        .expect("valid points");
        assert_eq!(line, file);
        assert_eq!(line.of("connect", Level::Must), 2.0);
        assert_eq!(line.of("time-format", Level::Should), 0.5);
        assert_eq!(line.of("quit", Level::Should), 3.0);
        assert_eq!(line.of("connect", Level::Info), 0.0);
        assert_eq!(line.spec(), "must=2,should=0.5,info=0,quit=3");
    }

    #[test]
    fn the_last_of_two_entries_for_one_key_wins() {
        let points = Points::parse("quit=1,must=4,quit=2,must=5", IDS).expect("valid points");
        assert_eq!(points.of("quit", Level::Should), 2.0);
        assert_eq!(points.of("connect", Level::Must), 5.0);
        assert_eq!(points.spec(), "must=5,should=1,info=0,quit=2");
    }

    #[test]
    fn a_wrong_points_text_says_what_is_wrong() {
        let error = |text| Points::parse(text, IDS).expect_err("refused");
        assert!(
            error("must").contains("not KEY=POINTS"),
            "{}",
            error("must")
        );
        assert!(error("must=-1").contains("from 0 to 1000"));
        assert!(error("must=1001").contains("from 0 to 1000"));
        assert!(error("must=NaN").contains("from 0 to 1000"));
        assert!(error("must=two").contains("not `two`"));
        let unknown = error("qiut=1");
        assert!(
            unknown.contains("`qiut` is neither") && unknown.contains("connect, time-format, quit")
        );
        assert!(error("# nothing\n").contains("no points given"));
        assert!(error("").contains("no points given"));
    }

    #[test]
    fn by_default_must_and_should_cases_earn_a_point_and_info_cases_none() {
        let points = Points::default();
        assert_eq!(points.of("connect", Level::Must), 1.0);
        assert_eq!(points.of("quit", Level::Should), 1.0);
        assert_eq!(points.of("x", Level::Info), 0.0);
        assert!(!points.given);
        assert!(Points::parse("must=1", IDS).expect("valid points").given);
    }

    #[test]
    fn points_read_without_trailing_zeros() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(2.25), "2.25");
        assert_eq!(number(1.0 / 3.0), "0.33");
        assert_eq!(number(0.0), "0");
        assert_eq!(
            Score {
                earned: 7.5,
                max: 10.0
            }
            .to_string(),
            "7.5/10"
        );
    }
}

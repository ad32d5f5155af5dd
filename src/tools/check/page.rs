//! The class board as one self-contained HTML page: the page (`board/`: HTML, CSS and a small
//! script, written here, no build step) with the run's JSON document inside it. The script draws
//! the matrix from that document, the same one `--json` prints, so the formats never disagree;
//! the live board serves the same page and the document again at `board.json`.

use serde_json::{Value, json};

use super::model::Graded;
use super::report::{Run, json};

const TEMPLATE: &str = include_str!("board/board.html");
const CSS: &str = include_str!("board/board.css");
const SCRIPT: &str = include_str!("board/board.js");

/// What the page says about the run besides its results.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// When the run finished, as people read it.
    pub generated_at: String,
    /// The command line that made it.
    pub command: String,
}

/// The board's document: the run's `--json` document plus the page's own `board` entry (when,
/// the command; `live` is filled by the live board).
pub fn document<C: Graded>(run: &Run<'_, C>, meta: &Meta) -> Value {
    let mut doc = json(run);
    doc["board"] = json!({
        "generated_at": meta.generated_at,
        "command": meta.command,
        "live": null,
    });
    doc
}

/// The page with `doc` inside.
pub fn html(doc: &Value) -> String {
    TEMPLATE
        .replacen("/*@CSS@*/", CSS, 1)
        .replacen("/*@JS@*/", SCRIPT, 1)
        .replacen("@DATA@", &embedded(doc), 1)
}

/// `doc` as JSON that can sit inside `<script type="application/json">`: `<`, `>` and `&` only
/// occur inside JSON strings, where `\u003c` means the same, so no server's bytes can close the
/// element (`</script>`) or open a comment (`<!--`). U+2028/2029 are escaped too, for old parsers.
fn embedded(doc: &Value) -> String {
    let text = doc.to_string();
    let mut out = String::with_capacity(text.len() + 64);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Now, in the machine's zone, as the board's header shows it (`2026-12-03 18:20:05 +07`).
pub fn now_text() -> String {
    jiff::Zoned::now()
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_answer_cannot_leave_the_data_element() {
        let hostile = "</script><script>alert(1)</script><!-- & \u{2028}";
        let doc = json!({"targets": [{"detail": hostile}], "board": {}});
        let page = html(&doc);
        let start = page.find("@DATA@").map_or_else(
            || page.find("id=\"board-data\"").expect("data element"),
            |_| panic!("placeholder left in the page"),
        );
        let body = &page[start..];
        let open = body.find('>').expect("element opens") + 1;
        let close = body.find("</script>").expect("element closes");
        let data = &body[open..close];
        assert!(!data.contains('<') && !data.contains('>') && !data.contains('&'));
        let back: Value = serde_json::from_str(data).expect("still JSON");
        assert_eq!(back, doc, "the escaped document means the same");
        assert!(!page.contains("<script>alert"));
    }

    #[test]
    fn the_page_holds_its_style_and_script_and_loads_nothing() {
        let page = html(&json!({}));
        assert!(!page.contains("/*@CSS@*/") && !page.contains("/*@JS@*/"));
        assert!(page.contains("border-collapse") && page.contains("function render()"));
        for remote in ["http://", "https://", "src=\"", "href=\""] {
            assert!(!page.contains(remote), "the page refers to {remote}");
        }
        assert!(
            page.contains("default-src 'none'"),
            "a policy forbids loading"
        );
    }
}

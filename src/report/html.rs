//! Small pieces of HTML the report's sections share (pure): a section's opening with its title
//! and note, a chart's legend, the text shown instead of an empty chart. Every text is escaped.

use super::svg::esc;
use std::fmt::Write;

/// A chart's legend: one swatch and name per item (name, CSS colour).
pub(super) fn legend(out: &mut String, items: &[(String, String)]) {
    out.push_str(r#"<ul class="legend">"#);
    for (name, color) in items {
        let _ = write!(
            out,
            r#"<li><i style="background:{}"></i>{}</li>"#,
            esc(color),
            esc(name)
        );
    }
    out.push_str("</ul>");
}

/// Open `<section id>` with its title and note (closed by the caller).
pub(super) fn section_open(out: &mut String, id: &str, title: &str, note: &str) {
    let _ = write!(
        out,
        r#"<section id="{id}"><h2>{}</h2><p class="note">{}</p>"#,
        esc(title),
        esc(note)
    );
}

/// What stands where a chart has nothing to show.
pub(super) fn empty(out: &mut String, text: &str) {
    let _ = write!(out, r#"<p class="empty">{}</p>"#, esc(text));
}

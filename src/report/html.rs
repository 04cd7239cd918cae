//! `index.html`: one static page with every table and figure of a report and links to the raw
//! files. After loading, an inline script counts images that failed to load into
//! `<body data-broken-images="N">`, which the browser test reads.

use anyhow::Result;

use super::claims::{self, ClaimRow};
use super::tables::{Mark, Table, MARKS};
use super::{Formats, ReportOutput};
use crate::util::write_atomic;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A table as HTML, marked as [`MARKS`] says, `(n=k)` where seeds are missing.
pub fn table_html(t: &Table) -> String {
    let mut s = format!(
        "<h3 id=\"{}\">{}</h3>\n<table>\n<thead>",
        t.name,
        escape(&t.title)
    );
    if t.columns.iter().any(|c| c.group.is_some()) {
        s.push_str("<tr><th></th>");
        let mut runs: Vec<(Option<String>, usize)> = Vec::new();
        for c in &t.columns {
            match runs.last_mut() {
                Some((g, k)) if *g == c.group => *k += 1,
                _ => runs.push((c.group.clone(), 1)),
            }
        }
        for (g, k) in runs {
            s.push_str(&format!(
                "<th colspan=\"{k}\">{}</th>",
                escape(g.as_deref().unwrap_or(""))
            ));
        }
        s.push_str("</tr>");
    }
    s.push_str(&format!("<tr><th>{}</th>", t.corner()));
    for c in &t.columns {
        s.push_str(&format!("<th>{}</th>", escape(&c.title)));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for (i, r) in t.rows.iter().enumerate() {
        s.push_str(&format!("<tr><td>{}</td>", escape(&r.title)));
        for j in 0..t.columns.len() {
            let text = escape(&t.cell_text(i, j));
            match t.mark(i, j) {
                Mark::Best => s.push_str(&format!("<td><b>{text}</b></td>")),
                Mark::NotDistinguishable => s.push_str(&format!("<td><i>{text}</i></td>")),
                Mark::None => s.push_str(&format!("<td>{text}</td>")),
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str(&format!(
        "</tbody></table>\n<p class=\"marks\">{}</p>\n",
        escape(
            &MARKS
                .replace("**bold**", "bold")
                .replace("*italic*", "italic")
        )
    ));
    s
}

/// The claims table as HTML, with how to read it.
fn claims_html(rows: &[ClaimRow]) -> String {
    let mut s = String::from(
        "<h2 id=\"claims\">Claims: paired comparisons over seeds</h2>\n<table>\n<thead><tr>",
    );
    for h in claims::HEADERS {
        s.push_str(&format!("<th>{}</th>", escape(h)));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        s.push_str(&format!("<tr><td>{}</td>", escape(&row.name())));
        for cell in row.cells() {
            s.push_str(&format!("<td>{}</td>", escape(&cell)));
        }
        s.push_str("</tr>\n");
    }
    s.push_str(&format!(
        "</tbody></table>\n<p class=\"marks\">{}</p>\n<p><a href=\"tables/claims.md\">md</a> · \
         <a href=\"tables/claims.tex\">tex</a> · <a href=\"tables/claims.csv\">csv</a></p>\n",
        escape(claims::READING)
    ));
    s
}

/// Converts a Markdown pipe table (as in the methods legend) to HTML.
fn markdown_table_html(md: &str) -> String {
    let mut s = String::from("<table>\n");
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    for (i, line) in rows.iter().enumerate() {
        if i == 1 {
            continue; // the |---| separator
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in cells {
            s.push_str(&format!("<{tag}>{}</{tag}>", escape(c)));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}\
th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}\
figure{display:inline-block;margin:0.5em;vertical-align:top}img{width:400px;max-width:100%;border:1px solid #eee}\
figcaption{font-size:0.85em;color:#555}";

/// Writes `index.html` into the report folder.
pub fn write_index(
    out: &ReportOutput,
    name: &str,
    legend_md: &str,
    formats: Formats,
) -> Result<()> {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0} — icm report</title>\
         <style>{STYLE}</style></head>\n<body data-broken-images=\"pending\">\n<h1>{0}</h1>\n",
        escape(name)
    );
    if !out.running.is_empty() {
        s.push_str(&format!(
            "<p class=\"running\" id=\"running\">{}</p>\n",
            escape(&super::running_line(out.running.len()))
        ));
    }
    if !out.notes.is_empty() {
        s.push_str(&format!(
            "<p class=\"warn\"><b><a href=\"#notes\">{} notes</a> about these runs: read them \
             before the tables.</b></p>\n",
            out.notes.len()
        ));
    }
    if !out.claims.is_empty() {
        s.push_str(&claims_html(&out.claims));
    }
    s.push_str("<p>Raw files: <a href=\"runs.csv\">runs.csv</a> · <a href=\"runs.parquet\">runs.parquet</a> · \
                <a href=\"table.md\">table.md</a></p>\n<h2>Tables</h2>\n");
    for t in &out.tables {
        s.push_str(&table_html(t));
        let mut links = Vec::new();
        for (on, ext) in [
            (formats.md, "md"),
            (formats.tex, "tex"),
            (formats.csv, "csv"),
        ] {
            if on {
                links.push(format!(
                    "<a href=\"tables/{}.{ext}\">{ext}</a>",
                    escape(&t.name)
                ));
            }
        }
        if !links.is_empty() {
            s.push_str(&format!("<p>{}</p>\n", links.join(" · ")));
        }
    }
    s.push_str("<h2>Methods</h2>\n");
    s.push_str(&markdown_table_html(legend_md));
    if !out.notes.is_empty() {
        s.push_str("<h2 id=\"notes\">Notes</h2>\n<ul>\n");
        for note in &out.notes {
            s.push_str(&format!("<li>{}</li>\n", escape(note)));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<h2>Figures</h2>\n");
    for f in &out.figures {
        let svg = f.trim_end_matches(".png").to_string() + ".svg";
        s.push_str(&format!(
            "<figure><a href=\"{svg}\"><img src=\"{f}\" alt=\"{f}\" loading=\"eager\"></a><figcaption>{f} (<a href=\"{svg}\">svg</a>)</figcaption></figure>\n"
        ));
    }
    s.push_str(
        "<script>window.addEventListener('load',function(){var b=0;\
         document.querySelectorAll('img').forEach(function(i){if(!i.complete||i.naturalWidth===0)b++;});\
         document.body.setAttribute('data-broken-images',String(b));});</script>\n</body></html>\n",
    );
    write_atomic(&out.dir.join("index.html"), s.as_bytes())
}

//! The report's `index.html`: plain HTML and CSS, relative image paths (works from `file://`),
//! and every string from a user file escaped.

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One image on the page.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name relative to the page.
    pub file: String,
    pub title: String,
    pub caption: String,
}

/// A table: header cells and rows of cells (all plain text, escaped when rendered).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A section of the page.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: String,
    pub title: String,
    /// Paragraphs of plain text.
    pub notes: Vec<String>,
    pub tables: Vec<Table>,
    pub figures: Vec<Figure>,
}

impl Section {
    pub fn new(id: &str, title: &str) -> Section {
        Section {
            id: id.into(),
            title: title.into(),
            notes: Vec::new(),
            tables: Vec::new(),
            figures: Vec::new(),
        }
    }
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:26px}h2{font-size:20px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:36px}
nav a{margin-right:14px}table{border-collapse:collapse;margin:10px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
figure{display:inline-block;margin:8px 12px 16px 0;vertical-align:top}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#444;max-width:640px}.note{color:#555;font-size:14px}
td.status-pruned,td.status-stale,td.status-interrupted{color:#b36b00}td.status-failed,td.status-crashed,td.status-oom,td.status-diverged{color:#b00020}td.status-finished{color:#006b3c}";

fn table(t: &Table) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in &t.header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    let status = t.header.iter().position(|h| h == "status");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            if Some(i) == status {
                out.push_str(&format!(
                    "<td class=\"status-{}\">{}</td>",
                    escape(cell),
                    escape(cell)
                ));
            } else {
                out.push_str(&format!("<td>{}</td>", escape(cell)));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// Renders the page.
pub fn page(title: &str, subtitle: &str, sections: &[Section]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p class=\"note\">{}</p>\n<nav>",
        escape(title),
        escape(title),
        escape(subtitle)
    );
    for s in sections {
        out.push_str(&format!(
            "<a href=\"#{}\">{}</a>",
            escape(&s.id),
            escape(&s.title)
        ));
    }
    out.push_str("</nav>\n");
    for s in sections {
        out.push_str(&format!(
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            escape(&s.id),
            escape(&s.title)
        ));
        for n in &s.notes {
            out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(n)));
        }
        for t in &s.tables {
            out.push_str(&table(t));
            out.push('\n');
        }
        for f in &s.figures {
            out.push_str(&format!(
                "<figure><img src=\"{}\" alt=\"{}\"><figcaption><b>{}</b> {}</figcaption></figure>\n",
                escape(&f.file),
                escape(&f.title),
                escape(&f.title),
                escape(&f.caption)
            ));
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

//! The report's `index.html`: plain HTML and CSS, relative image paths (works from `file://`),
//! interactive charts inlined ([`super::interactive`]), and every string from a user file
//! escaped.

use super::interactive;

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
    /// Sortable by a click on a header, with a filter box above (a few lines of inline JS).
    pub interactive: bool,
    /// A column whose cells are links: the template with `{}` replaced by the cell
    /// (`#trial-{}`: a trial's view).
    pub link: Option<(usize, String)>,
}

/// Sorting (numbers as numbers, `%` ignored) and filtering for tables marked interactive.
const SCRIPT: &str = "document.querySelectorAll('table.sortable').forEach(function(t){var body=t.tBodies[0];
t.querySelectorAll('th').forEach(function(th,i){th.title='click to sort';th.style.cursor='pointer';th.addEventListener('click',function(){
var asc=th.dataset.dir!=='asc';t.querySelectorAll('th').forEach(function(h){delete h.dataset.dir;});th.dataset.dir=asc?'asc':'desc';
var key=function(r){var v=r.cells[i].textContent.replace('%','').trim();var n=Number(v);return v!==''&&!isNaN(n)?n:v;};
var rows=Array.from(body.rows);rows.sort(function(a,b){var x=key(a),y=key(b);
var c=(typeof x==='number'&&typeof y==='number')?x-y:(typeof x==='number'?-1:(typeof y==='number'?1:String(x).localeCompare(String(y))));return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});});});});
document.querySelectorAll('input.filter').forEach(function(box){var t=document.getElementById(box.dataset.table);
box.addEventListener('input',function(){var q=box.value.toLowerCase();var shown=0;Array.from(t.tBodies[0].rows).forEach(function(r){
var keep=r.textContent.toLowerCase().indexOf(q)>=0;r.style.display=keep?'':'none';if(keep){shown++;}});
document.getElementById(box.dataset.table+'-count').textContent=shown+' of '+t.tBodies[0].rows.length+' rows';});});";

/// An interactive chart's place on the page; its data is in the page's [`interactive::Page`].
#[derive(Debug, Clone)]
pub struct ChartCard {
    /// The [`interactive::Chart`]'s id.
    pub chart: String,
    pub title: String,
    /// Its static renderings (PNG, SVG), linked under it.
    pub files: Vec<String>,
}

/// A section of the page.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: String,
    pub title: String,
    /// Problems shown first, in red (a failed trial's error).
    pub alerts: Vec<String>,
    /// Paragraphs of plain text.
    pub notes: Vec<String>,
    pub tables: Vec<Table>,
    /// Interactive charts, in a grid before the figures.
    pub charts: Vec<ChartCard>,
    pub figures: Vec<Figure>,
}

impl Section {
    pub fn new(id: &str, title: &str) -> Section {
        Section {
            id: id.into(),
            title: title.into(),
            alerts: Vec::new(),
            notes: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
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

fn table(t: &Table, id: &str) -> String {
    let mut out = if t.interactive {
        format!(
            "<p><input class=\"filter\" data-table=\"{id}\" placeholder=\"filter rows…\" size=\"40\"> <span class=\"note\" id=\"{id}-count\">{} rows; click a header to sort</span></p><table class=\"sortable\" id=\"{id}\"><thead><tr>",
            t.rows.len()
        )
    } else {
        String::from("<table><thead><tr>")
    };
    for h in &t.header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    let status = t.header.iter().position(|h| h == "status");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            if let Some((_, template)) = t.link.as_ref().filter(|(column, _)| *column == i) {
                out.push_str(&format!(
                    "<td><a href=\"{}\">{}</a></td>",
                    escape(&template.replace("{}", cell)),
                    escape(cell)
                ));
            } else if Some(i) == status {
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

fn card(c: &ChartCard) -> String {
    let files: Vec<String> = c
        .files
        .iter()
        .map(|f| {
            let kind = f.rsplit('.').next().unwrap_or("file").to_uppercase();
            format!("<a href=\"{}\">{kind}</a>", escape(f))
        })
        .collect();
    format!(
        "<div class=\"vr-card\"><h3>{}</h3><div class=\"vr-chart\" data-chart=\"{}\"></div>{}</div>\n",
        escape(&c.title),
        escape(&c.chart),
        if files.is_empty() {
            String::new()
        } else {
            format!(
                "<p class=\"vr-files\">static: {}</p>",
                files.join(" · ")
            )
        }
    )
}

/// Renders the page; `charts` holds the data of the sections' chart cards and trial views.
pub fn page(
    title: &str,
    subtitle: &str,
    sections: &[Section],
    charts: &interactive::Page,
) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<link rel=\"icon\" href=\"data:,\">\n<title>{}</title>\n<style>{STYLE}\n{}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p class=\"note\">{}</p>\n<nav>",
        escape(title),
        interactive::style(),
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
    if !charts.trials.is_empty() {
        out.push_str("<section id=\"vr-trial\" hidden></section>\n");
    }
    for s in sections {
        out.push_str(&format!(
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            escape(&s.id),
            escape(&s.title)
        ));
        for a in &s.alerts {
            out.push_str(&format!("<p class=\"error\">{}</p>\n", escape(a)));
        }
        for n in &s.notes {
            out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(n)));
        }
        for (i, t) in s.tables.iter().enumerate() {
            out.push_str(&table(t, &format!("{}-table-{i}", escape(&s.id))));
            out.push('\n');
        }
        if !s.charts.is_empty() {
            out.push_str("<div class=\"vr-grid\">\n");
            for c in &s.charts {
                out.push_str(&card(c));
            }
            out.push_str("</div>\n");
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
    if sections
        .iter()
        .flat_map(|s| &s.tables)
        .any(|t| t.interactive)
    {
        out.push_str(&format!("<script>{SCRIPT}</script>\n"));
    }
    if !charts.charts.is_empty() || !charts.trials.is_empty() {
        out.push_str(&interactive::scripts(charts));
    }
    out.push_str("</body>\n</html>\n");
    out
}

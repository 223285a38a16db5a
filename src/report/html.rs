//! `index.html`: a report's Markdown as one self-contained web page, its charts inlined as PNG
//! data URIs, so the page opens anywhere (a CI artefact, a mail attachment) with no network
//! and no files beside it.
//!
//! The page is rendered from `report.md`, the one text every command's report writes, so it
//! says exactly what the Markdown says, verdict first. Only the Markdown that reports use is
//! understood: `#` headings, paragraphs, tables, image lines, `**bold**` and `` `code` ``.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::output;

/// The page's style: system fonts at a readable size, numbers right-aligned in tables.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:1200px;margin:2em auto;\
padding:0 1em;color:#111}p.verdict{font-size:1.2em;border-left:4px solid #0072B2;\
padding:.5em 1em;background:#f2f7fb}table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f4f4f4}td.num{text-align:right;\
font-variant-numeric:tabular-nums}img{max-width:100%;height:auto}code{background:#f4f4f4;\
padding:0 .2em}";

/// Writes `<dir>/index.html` from `<dir>/report.md` and the PNG charts it shows, atomically,
/// returning its path. An image the Markdown names that is missing is an error naming it.
pub fn write_html(dir: &Path) -> Result<PathBuf> {
    let md_path = dir.join("report.md");
    let markdown = std::fs::read_to_string(&md_path).map_err(|e| Error::io(&md_path, e))?;
    let page = render(&markdown, |name| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    })?;
    let html = dir.join("index.html");
    output::write_bytes_atomic(&html, page.as_bytes())?;
    Ok(html)
}

/// A block of the Markdown.
enum Block<'a> {
    Heading(usize, &'a str),
    Paragraph(Vec<&'a str>),
    Table(Vec<&'a str>),
    Image { alt: &'a str, file: &'a str },
}

/// The page for `markdown`, with `image(file)` giving the bytes of each PNG it names. The
/// first paragraph before any second-level heading is the verdict, set apart.
fn render(markdown: &str, image: impl Fn(&str) -> Result<Vec<u8>>) -> Result<String> {
    let blocks = blocks(markdown);
    let title = blocks.iter().find_map(|b| match b {
        Block::Heading(1, text) => Some(*text),
        _ => None,
    });
    let mut body = String::new();
    let mut verdict_pending = true;
    for block in &blocks {
        match block {
            Block::Heading(level, text) => {
                verdict_pending &= *level == 1;
                let _ = writeln!(body, "<h{level}>{}</h{level}>", inline(text));
            }
            Block::Paragraph(lines) => {
                let class = if verdict_pending {
                    " class=\"verdict\""
                } else {
                    ""
                };
                verdict_pending = false;
                let _ = writeln!(body, "<p{class}>{}</p>", inline(&lines.join(" ")));
            }
            Block::Table(rows) => write_table(&mut body, rows),
            Block::Image { alt, file } => {
                let png = image(file)?;
                let _ = writeln!(
                    body,
                    "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"></figure>",
                    escape(alt),
                    base64(&png)
                );
            }
        }
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title.unwrap_or("moesim report"))
    ))
}

/// Splits the Markdown into blocks: a run of `|` lines is a table, a line holding only
/// `![alt](file.png)` an image, `#` lines headings, other runs of lines paragraphs.
fn blocks(markdown: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    for line in markdown.lines().map(str::trim_end) {
        let last = blocks.last_mut();
        if line.is_empty() {
            blocks.push(Block::Paragraph(Vec::new()));
        } else if let Some((level, text)) = heading(line) {
            blocks.push(Block::Heading(level, text));
        } else if let Some((alt, file)) = image_line(line) {
            blocks.push(Block::Image { alt, file });
        } else if line.starts_with('|') {
            match last {
                Some(Block::Table(rows)) => rows.push(line),
                _ => blocks.push(Block::Table(vec![line])),
            }
        } else {
            match last {
                Some(Block::Paragraph(lines)) => lines.push(line),
                _ => blocks.push(Block::Paragraph(vec![line])),
            }
        }
    }
    blocks.retain(|b| !matches!(b, Block::Paragraph(lines) if lines.is_empty()));
    blocks
}

/// `# text` -> (1, text), up to six `#`.
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    let text = line[level..].strip_prefix(' ')?;
    (1..=6).contains(&level).then_some((level, text))
}

/// `![alt](file)` alone on a line -> (alt, file).
fn image_line(line: &str) -> Option<(&str, &str)> {
    let (alt, rest) = line.strip_prefix("![")?.split_once("](")?;
    Some((alt, rest.strip_suffix(')')?))
}

/// A Markdown table: the header row, the alignment row (`---:` right-aligns a column), the
/// body rows.
fn write_table(html: &mut String, rows: &[&str]) {
    let cells = |row: &str| -> Vec<String> {
        let row = row.trim().trim_start_matches('|').trim_end_matches('|');
        row.split('|').map(|cell| inline(cell.trim())).collect()
    };
    let Some((header, rest)) = rows.split_first() else {
        return;
    };
    let (right, body): (Vec<bool>, &[&str]) = match rest.split_first() {
        Some((align, body)) if align.contains("---") => (
            align
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|a| a.trim().ends_with(':'))
                .collect(),
            body,
        ),
        _ => (Vec::new(), rest),
    };
    html.push_str("<table>\n<thead><tr>");
    for cell in cells(header) {
        let _ = write!(html, "<th>{cell}</th>");
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in body {
        html.push_str("<tr>");
        for (column, cell) in cells(row).iter().enumerate() {
            let class = if right.get(column) == Some(&true) {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(html, "<td{class}>{cell}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
}

/// Inline Markdown to HTML: text escaped, `` `code` `` and `**bold**` marked up.
fn inline(text: &str) -> String {
    let mut html = String::new();
    let mut bold = false;
    let mut rest = text;
    while let Some(at) = rest.find(['`', '*']) {
        html.push_str(&escape(&rest[..at]));
        rest = &rest[at..];
        if let Some(code) = rest.strip_prefix('`')
            && let Some((code, after)) = code.split_once('`')
        {
            let _ = write!(html, "<code>{}</code>", escape(code));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("**") {
            html.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = after;
        } else {
            html.push_str(&escape(&rest[..1]));
            rest = &rest[1..];
        }
    }
    html.push_str(&escape(rest));
    if bold {
        html.push_str("</strong>");
    }
    html
}

/// `text` with the characters HTML gives meaning to escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Standard base64 (RFC 4648, padded), for data URIs.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn inline_markup_is_escaped_and_marked_up() {
        assert_eq!(
            inline("**a < b** with `x**y` & 2*3"),
            "<strong>a &lt; b</strong> with <code>x**y</code> &amp; 2*3"
        );
    }

    #[test]
    fn the_page_has_the_verdict_first_tables_and_inlined_images() {
        let md = "# moesim report: q\n\n**Shortest step: eplb.**\n\n| a | n |\n|---|---:|\n| x | 1.5 |\n\n\
                  ## Charts\n\nSome text\non two lines.\n\n![chart](c.png)\n";
        let page = render(md, |file| {
            assert_eq!(file, "c.png");
            Ok(b"foo".to_vec())
        })
        .unwrap();
        assert!(page.contains("<title>moesim report: q</title>"), "{page}");
        let verdict = "<p class=\"verdict\"><strong>Shortest step: eplb.</strong></p>";
        let h2 = page.find("<h2>Charts</h2>").unwrap();
        assert!(page.find(verdict).unwrap() < h2, "{page}");
        assert!(
            page.contains("<thead><tr><th>a</th><th>n</th></tr></thead>"),
            "{page}"
        );
        assert!(
            page.contains("<tr><td>x</td><td class=\"num\">1.5</td></tr>"),
            "{page}"
        );
        assert!(page.contains("<p>Some text on two lines.</p>"), "{page}");
        assert!(page.contains("<img alt=\"chart\" src=\"data:image/png;base64,Zm9v\">"));
        assert!(!page.contains("http"), "no network: {page}");
    }

    #[test]
    fn a_missing_chart_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.md"), "# r\n\n![c](gone.png)\n").unwrap();
        let err = write_html(dir.path()).unwrap_err().to_string();
        assert!(err.contains("gone.png"), "{err}");
        assert!(!dir.path().join("index.html").exists());
    }
}

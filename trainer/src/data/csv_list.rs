//! Generic `path,label` list (AffectNet-style exports): `<root>/<split>.csv`, optional header,
//! paths relative to the CSV's directory, labels given as class names or integer indices.
//! Also the small RFC 4180 record splitter the FER2013 CSV reader shares.

use super::{decode_files, find_class, DataError, DataSpec, Dataset};
use std::path::Path;

/// Splits one CSV line into fields: commas separate, double quotes quote, `""` escapes a quote.
/// Records spanning several lines are not supported (none of the FER formats has them).
pub(super) fn split_record(line: &str) -> Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Non-empty lines of a text file with their 1-based line numbers.
pub(super) fn read_lines(path: &Path) -> Result<Vec<(usize, String)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l.to_string())).collect())
}

/// Header names that mark the first row as a header whatever else it holds.
const HEADER_WORDS: [&str; 7] = ["path", "file", "filename", "image", "img", "image_path", "subdirectory_filepath"];

pub(super) fn load(spec: &DataSpec, split: &str) -> Result<Dataset, DataError> {
    let csv = spec.root.join(format!("{split}.csv"));
    let dir = csv.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new(); // (line, path, label)
    for (line, text) in read_lines(&csv)? {
        let f = split_record(&text).map_err(|m| DataError::parse(&csv, line, m))?;
        if f.len() < 2 {
            return Err(DataError::parse(&csv, line, format!("expected `path,label`, found {} field(s)", f.len())));
        }
        rows.push((line, f[0].trim().to_string(), f[1].trim().to_string()));
    }
    // header: a known column name, or a first row that is neither a file nor a label
    if let Some((_, p, l)) = rows.first() {
        let is_label = l.parse::<i64>().is_ok() || spec.classes.as_deref().is_some_and(|c| find_class(c, l).is_some());
        if HEADER_WORDS.contains(&p.to_lowercase().as_str()) || (!is_label && !dir.join(p).is_file()) {
            rows.remove(0);
        }
    }
    if rows.is_empty() {
        return Err(DataError::EmptySplit { path: csv, split: split.into() });
    }

    let classes: Vec<String> = match &spec.classes {
        Some(c) => c.clone(),
        None if rows.iter().all(|r| r.2.parse::<u32>().is_ok()) => {
            let max = rows.iter().map(|r| r.2.parse::<u32>().unwrap_or(0)).max().unwrap_or(0);
            (0..=max).map(|i| i.to_string()).collect()
        }
        None => {
            let mut names: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
            names.sort();
            names.dedup();
            names
        }
    };
    let mut paths = Vec::with_capacity(rows.len());
    let mut labels = Vec::with_capacity(rows.len());
    for (line, p, l) in &rows {
        let label = match (find_class(&classes, l), l.parse::<usize>()) {
            (Some(i), _) => i,
            (None, Ok(i)) if i < classes.len() => i,
            _ => {
                return Err(DataError::parse(
                    &csv,
                    *line,
                    format!("label `{l}` is neither one of {classes:?} nor an index below {}", classes.len()),
                ))
            }
        };
        paths.push(dir.join(p));
        labels.push(label as i64);
    }
    let source = format!("csv:{}", csv.display());
    let images = decode_files(&paths, spec.color, spec.size, &source)?;
    Dataset::new(images, labels, classes, source)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load_split, Color, DataFormat};
    use super::*;

    #[test]
    fn splits_quoted_records() {
        assert_eq!(split_record("a,\"b,c\",\"d\"\"e\"\r").unwrap(), ["a", "b,c", "d\"e"]);
        assert_eq!(split_record("1,,x").unwrap(), ["1", "", "x"]);
        assert!(split_record("a,\"b").is_err());
    }

    fn fixture() -> TempDir {
        let t = TempDir::new("csvlist");
        for (i, name) in ["imgs/x.png", "imgs/y.png", "z.png"].iter().enumerate() {
            gray_png(&t.path().join(name), 2, 1, |x, _| (i * 50) as u8 + x as u8);
        }
        t
    }

    #[test]
    fn names_with_header() {
        let t = fixture();
        std::fs::write(t.path().join("train.csv"), "path,label\nimgs/x.png,sad\n\"imgs/y.png\",happy\nz.png,sad\n")
            .unwrap();
        let ds = load_split(&DataSpec::new(DataFormat::Csv, t.path()), "train").unwrap();
        assert_eq!(ds.classes, ["happy", "sad"]);
        assert_eq!(ds.labels, [1, 0, 1]);
        assert_eq!(bytes(&ds.images), [0, 1, 50, 51, 100, 101]);

        // configured classes: names mapped through synonyms, indices allowed too
        std::fs::write(t.path().join("val.csv"), "imgs/x.png,Sadness\nimgs/y.png,0\n").unwrap();
        let spec = DataSpec {
            classes: Some(vec!["happy".into(), "sad".into()]),
            color: Color::Rgb,
            ..DataSpec::new(DataFormat::Csv, t.path())
        };
        let ds = load_split(&spec, "val").unwrap();
        assert_eq!(ds.labels, [1, 0]);
        assert_eq!(bytes(&ds.images), [0, 1, 0, 1, 0, 1, 50, 51, 50, 51, 50, 51]);
    }

    #[test]
    fn integer_labels_without_header() {
        let t = fixture();
        std::fs::write(t.path().join("test.csv"), "z.png,2\nimgs/x.png,0\n").unwrap();
        let ds = load_split(&DataSpec::new(DataFormat::Csv, t.path()), "test").unwrap();
        assert_eq!(ds.classes, ["0", "1", "2"]);
        assert_eq!(ds.labels, [2, 0]);
        assert_eq!(bytes(&ds.images), [100, 101, 0, 1]);
    }

    #[test]
    fn bad_rows_and_empty_split() {
        let t = fixture();
        std::fs::write(t.path().join("train.csv"), "path,label\nz.png,angry\nimgs/x.png,7\n").unwrap();
        let spec = DataSpec { classes: Some(vec!["angry".into()]), ..DataSpec::new(DataFormat::Csv, t.path()) };
        let e = load_split(&spec, "train").unwrap_err().to_string();
        assert!(e.contains("train.csv:3: label `7`"), "{e}");
        std::fs::write(t.path().join("val.csv"), "path,label\n").unwrap();
        let e = load_split(&spec, "val").unwrap_err().to_string();
        assert!(e.contains("val.csv") && e.contains("no samples"), "{e}");
        std::fs::write(t.path().join("test.csv"), "path,label\nmissing.png,angry\n").unwrap();
        let e = load_split(&spec, "test").unwrap_err().to_string();
        assert!(e.contains("missing.png"), "{e}");
    }
}

//! How results are written: one JSON object per line (`--json`), or a human-readable table.
//! Both report one row per classified face (or whole image) and one per failed input.

use crate::face::BBox;
use crate::model::Prediction;
use serde::{Serialize, Serializer};
use std::fmt::Display;

/// One classified face or image, as reported.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub file: &'a str,
    /// Index of the face within its file (0 for a whole image).
    pub face: usize,
    pub prediction: &'a Prediction,
    /// Where its CAM overlay was written, if one was.
    pub cam_path: Option<&'a str>,
    /// E.g. "no face found; the whole image was classified".
    pub notice: Option<&'a str>,
}

/// Probabilities as a JSON object in the model's class order (not sorted by name).
struct Probs<'a>(&'a [(String, f32)]);

impl Serialize for Probs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct JsonFace<'a> {
    file: &'a str,
    face: usize,
    /// `null` when the whole image was classified.
    #[serde(rename = "box")]
    bbox: Option<BBox>,
    label: &'a str,
    class_index: usize,
    confidence: f32,
    probs: Probs<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cam: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<&'a str>,
}

impl Record<'_> {
    /// One JSON line (no trailing newline).
    ///
    /// ```
    /// use fer_runtime::{output::Record, Prediction};
    /// let p = Prediction { label: "happy".into(), class_index: 0, confidence: 0.9, cam: None, face_box: None,
    ///     probs: vec![("happy".into(), 0.75), ("sad".into(), 0.25)] };
    /// let line = Record { file: "a.png", face: 0, prediction: &p, cam_path: None, notice: None }.to_json();
    /// assert_eq!(line, r#"{"file":"a.png","face":0,"box":null,"label":"happy","class_index":0,"confidence":0.9,"probs":{"happy":0.75,"sad":0.25}}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let p = self.prediction;
        let j = JsonFace {
            file: self.file,
            face: self.face,
            bbox: p.face_box,
            label: &p.label,
            class_index: p.class_index,
            confidence: p.confidence,
            probs: Probs(&p.probs),
            cam: self.cam_path,
            notice: self.notice,
        };
        serde_json::to_string(&j).expect("plain data serialises")
    }

    /// One table row; `file_width` aligns the first column.
    pub fn to_row(&self, file_width: usize) -> String {
        let p = self.prediction;
        let bbox = match p.face_box {
            Some(b) => format!("{},{} {}x{}", b.x, b.y, b.w, b.h),
            None => "whole image".to_string(),
        };
        let top: Vec<String> = p
            .top(3)
            .iter()
            .map(|(l, v)| format!("{l} {v:.3}"))
            .collect();
        let mut row = format!(
            "{:<fw$}  {:<18}  {:<12}  {:>5.3}  {}",
            self.file,
            bbox,
            p.label,
            p.confidence,
            top.join(", "),
            fw = file_width
        );
        if let Some(c) = self.cam_path {
            row.push_str(&format!("  [cam: {c}]"));
        }
        if let Some(n) = self.notice {
            row.push_str(&format!("  ({n})"));
        }
        row
    }
}

/// The table's header line, aligned with [`Record::to_row`].
pub fn table_header(file_width: usize) -> String {
    format!(
        "{:<fw$}  {:<18}  {:<12}  {:>5}  {}",
        "FILE",
        "FACE BOX",
        "LABEL",
        "CONF",
        "TOP PROBABILITIES",
        fw = file_width
    )
}

/// A failed input as one JSON line: `{"file": ..., "error": ...}`.
///
/// ```
/// let line = fer_runtime::output::error_json("x.png", &"x.png: No such file or directory");
/// assert_eq!(line, r#"{"file":"x.png","error":"x.png: No such file or directory"}"#);
/// ```
pub fn error_json(file: &str, error: &dyn Display) -> String {
    #[derive(Serialize)]
    struct JsonError<'a> {
        file: &'a str,
        error: String,
    }
    serde_json::to_string(&JsonError {
        file,
        error: error.to_string(),
    })
    .expect("plain data serialises")
}

//! Post-processing shared by every backend: the normalised-entropy confidence of GReFEL
//! (reliability balancing, seed 002): `c = 1 − H(p) / ln K`, 1 for a one-hot distribution and 0
//! for a uniform one. Used when the model has no `confidence` output of its own.

/// `1 − H(p) / ln K` for a probability vector `p` of `K` classes, clamped to [0, 1].
///
/// ```
/// use fer_runtime::entropy_confidence;
/// assert!((entropy_confidence(&[1.0, 0.0, 0.0]) - 1.0).abs() < 1e-6);
/// assert!(entropy_confidence(&[0.25; 4]).abs() < 1e-6);
/// ```
pub fn entropy_confidence(p: &[f32]) -> f32 {
    if p.len() < 2 {
        return 1.0;
    }
    let h: f64 = p
        .iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| -(v as f64) * (v as f64).ln())
        .sum();
    (1.0 - h / (p.len() as f64).ln()).clamp(0.0, 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computation() {
        let p = [0.5f32, 0.25, 0.25];
        let h = -(0.5f64 * 0.5f64.ln() + 2.0 * 0.25 * 0.25f64.ln());
        let want = 1.0 - h / 3f64.ln();
        assert!((entropy_confidence(&p) as f64 - want).abs() < 1e-6);
    }
}

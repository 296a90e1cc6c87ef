//! Symmetric label noise as the peer injects it, and epoch orders (plain or class-balanced).
//!
//! The peer (`reference/ref_train.py`) corrupts `floor(rate * n)` training labels chosen by a
//! seeded permutation, adding a random shift in `1..K-1` modulo `K` so that every chosen label
//! changes. [`symmetric_noise`] does exactly that with a self-contained seeded RNG
//! ([`SplitMix64`], no global state); [`symmetric_noise_peer`] draws the same numbers as the
//! peer's `torch.Generator().manual_seed(1234)` (bit-exact, through libtorch's CPU generator).

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed 64-bit generator; enough for
/// permutations and noise, and deterministic across platforms.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// A uniform random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i as u64 + 1) as usize);
        }
        p
    }
}

/// Number of labels the noise changes: `floor(rate * n)` as the peer's `int(noise * n)`.
fn noisy_count(n: usize, rate: f64) -> usize {
    ((rate.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n)
}

/// Replaces `floor(rate * n)` labels, chosen by a permutation seeded with `seed`, with a
/// different class (`(y + s) mod K`, `s` uniform in `1..K-1`). Returns the changed indices in
/// ascending order. Nothing changes when `num_classes < 2`.
pub fn symmetric_noise(labels: &mut [i64], num_classes: usize, rate: f64, seed: u64) -> Vec<usize> {
    if num_classes < 2 {
        return Vec::new();
    }
    let k = num_classes as i64;
    let mut rng = SplitMix64::new(seed);
    let mut idx = rng.permutation(labels.len());
    idx.truncate(noisy_count(labels.len(), rate));
    for &i in &idx {
        let shift = 1 + rng.below(num_classes as u64 - 1) as i64;
        labels[i] = (labels[i] + shift).rem_euclid(k);
    }
    idx.sort_unstable();
    idx
}

/// The peer's exact noise: `g = torch.Generator().manual_seed(seed); idx = randperm(n, g)[:int(rate*n)];
/// y[idx] = (y[idx] + randint(1, K, g)) % K`, reproduced through libtorch's CPU generator so the
/// same labels flip as in a PyTorch 2.11 run (the peer uses `seed = 1234`).
///
/// Caveat: it calls `tch::manual_seed(seed)`, which reseeds torch's *global* generators (CPU and
/// CUDA); call it before seeding the training run. Returns the changed indices in ascending order.
pub fn symmetric_noise_peer(labels: &mut [i64], num_classes: usize, rate: f64, seed: u64) -> Vec<usize> {
    use tch::{Device, Kind, Tensor};
    if num_classes < 2 || labels.is_empty() {
        return Vec::new();
    }
    tch::manual_seed(seed as i64);
    let m = noisy_count(labels.len(), rate) as i64;
    let perm = Tensor::randperm(labels.len() as i64, (Kind::Int64, Device::Cpu)).narrow(0, 0, m);
    let shift = Tensor::randint_low(1, num_classes as i64, [m], (Kind::Int64, Device::Cpu));
    let idx = Vec::<i64>::try_from(&perm).unwrap_or_default();
    let shift = Vec::<i64>::try_from(&shift).unwrap_or_default();
    for (&i, &s) in idx.iter().zip(&shift) {
        labels[i as usize] = (labels[i as usize] + s).rem_euclid(num_classes as i64);
    }
    let mut idx: Vec<usize> = idx.into_iter().map(|i| i as usize).collect();
    idx.sort_unstable();
    idx
}

/// Per-sample weights for class-balanced sampling: `n / (K_present * count[y])`, so every
/// present class gets the same total weight and the weights average to 1.
pub fn balanced_weights(labels: &[i64], num_classes: usize) -> Vec<f64> {
    let mut count = vec![0usize; num_classes];
    for &l in labels {
        if let Some(c) = count.get_mut(l as usize) {
            *c += 1;
        }
    }
    let present = count.iter().filter(|&&c| c > 0).count().max(1) as f64;
    let n = labels.len() as f64;
    labels.iter().map(|&l| count.get(l as usize).map_or(0.0, |&c| n / (present * c as f64))).collect()
}

/// The sample order of one epoch: a random permutation of `0..n`, or, with `balanced`
/// (per-sample weights, e.g. [`balanced_weights`]), `n` draws with replacement proportional to
/// the weights. Deterministic per `seed` (vary it per epoch, e.g. `seed + epoch`).
pub fn epoch_order(n: usize, balanced: Option<&[f64]>, seed: u64) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed);
    let Some(w) = balanced else {
        return rng.permutation(n).into_iter().map(|i| i as i64).collect();
    };
    let mut cum = Vec::with_capacity(w.len());
    let mut total = 0.0;
    for &x in w {
        total += if x.is_finite() && x > 0.0 { x } else { 0.0 };
        cum.push(total);
    }
    if total <= 0.0 {
        return rng.permutation(n).into_iter().map(|i| i as i64).collect();
    }
    (0..n)
        .map(|_| {
            let u = rng.next_f64() * total;
            cum.partition_point(|&c| c <= u).min(w.len() - 1) as i64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_changes_exactly_the_rate() {
        let clean: Vec<i64> = (0..1000).map(|i| i % 7).collect();
        let mut y = clean.clone();
        let idx = symmetric_noise(&mut y, 7, 0.3, 1234);
        assert_eq!(idx.len(), 300);
        let changed: Vec<usize> = (0..1000).filter(|&i| y[i] != clean[i]).collect();
        assert_eq!(changed, idx);
        assert!(y.iter().all(|&l| (0..7).contains(&l)));
        let mut y2 = clean.clone();
        assert_eq!(symmetric_noise(&mut y2, 7, 0.3, 1234), idx);
        assert_eq!(y2, y);
        let mut y3 = clean.clone();
        assert_ne!(symmetric_noise(&mut y3, 7, 0.3, 1235), idx);
        // shifts cover 1..K-1
        let mut seen = [false; 7];
        for &i in &idx {
            seen[((y[i] - clean[i]).rem_euclid(7)) as usize] = true;
        }
        assert_eq!(seen, [false, true, true, true, true, true, true]);
    }

    /// Exact draws from torch's global generator: checked alone (`crate::data::run_alone`).
    #[test]
    fn peer_noise_is_bit_exact() {
        crate::data::run_alone("data::noise::tests::peer_noise_is_bit_exact_alone");
    }

    #[test]
    #[ignore = "run alone, in its own process, by peer_noise_is_bit_exact"]
    fn peer_noise_is_bit_exact_alone() {
        // Generated with torch 2.11.0 (the peer's code, ytr = arange(40) % 7, noise 0.3):
        //   g = torch.Generator().manual_seed(1234); idx = torch.randperm(40, generator=g)[:12]
        //   ytr[idx] = (ytr[idx] + torch.randint(1, 7, (12,), generator=g)) % 7
        let mut y: Vec<i64> = (0..40).map(|i| i % 7).collect();
        let _g = crate::data::TORCH_RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let idx = symmetric_noise_peer(&mut y, 7, 0.3, 1234);
        let mut want_idx = vec![15, 1, 20, 29, 12, 34, 30, 31, 23, 38, 13, 16];
        want_idx.sort();
        assert_eq!(idx, want_idx);
        #[rustfmt::skip]
        let want = [0, 5, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 0, 0, 0, 3, 1, 3, 4, 5, 3, 0, 1, 5, 3, 4, 5, 6, 0, 6, 5, 5, 4, 5, 1, 0, 1, 2, 0, 4];
        assert_eq!(y, want);
    }

    #[test]
    fn epoch_orders() {
        let p = epoch_order(100, None, 3);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<i64>>());
        assert_eq!(p, epoch_order(100, None, 3));
        assert_ne!(p, epoch_order(100, None, 4));

        // 90 of class 0, 10 of class 1: balanced draws split about evenly
        let labels: Vec<i64> = (0..100).map(|i| (i >= 90) as i64).collect();
        let w = balanced_weights(&labels, 2);
        assert!((w.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        assert!((w[0] - 100.0 / 180.0).abs() < 1e-12 && (w[95] - 5.0).abs() < 1e-12);
        let o = epoch_order(10_000, Some(&w), 7);
        let ones = o.iter().filter(|&&i| labels[i as usize] == 1).count();
        assert!((4_700..5_300).contains(&ones), "{ones}");
        assert!(o.iter().all(|&i| (0..100).contains(&i)));
    }
}

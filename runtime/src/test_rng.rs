//! Deterministic pseudo-random numbers for the unit tests (the runtime has no rand dependency):
//! a 64-bit linear congruential generator, one stream per seed.

/// The generator's states after `seed`, one per draw.
pub(crate) fn lcg(seed: u64) -> impl Iterator<Item = u64> {
    let step = |s: u64| {
        s.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    std::iter::successors(Some(step(step(seed))), move |&s| Some(step(s)))
}

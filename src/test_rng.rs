//! A fixed pseudo-random stream for the unit tests that generate inputs (random headers,
//! patterns, keys): xorshift64, so that each test's inputs are the same on every run and a
//! failure can be replayed from its seed.

pub(crate) struct XorShift(pub u64);

impl XorShift {
    /// The next value of the stream (the state after one step).
    pub(crate) fn next(&mut self) -> u64 {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }
}

//! The kernel's taint flags (Documentation/admin-guide/tainted-kernels.rst): the bit in
//! `/proc/sys/kernel/tainted`, the letter in `/sys/module/NAME/taint` and oops reports, and
//! what it means.

/// Bit, letter, meaning, in bit order.
pub const FLAGS: &[(u32, char, &str)] = &[
    (0, 'P', "proprietary module was loaded"),
    (1, 'F', "module was force loaded"),
    (2, 'S', "kernel running on an out of specification system"),
    (3, 'R', "module was force unloaded"),
    (4, 'M', "processor reported a Machine Check Exception"),
    (5, 'B', "bad page referenced or some unexpected page flags"),
    (6, 'U', "taint requested by userspace application"),
    (
        7,
        'D',
        "kernel died recently, i.e. there was an OOPS or BUG",
    ),
    (8, 'A', "an ACPI table was overridden by user"),
    (9, 'W', "kernel issued warning"),
    (10, 'C', "staging driver was loaded"),
    (11, 'I', "workaround for bug in platform firmware applied"),
    (12, 'O', "externally-built (out-of-tree) module was loaded"),
    (13, 'E', "unsigned module was loaded"),
    (14, 'L', "soft lockup occurred"),
    (15, 'K', "kernel has been live patched"),
    (16, 'X', "auxiliary taint, defined for and used by distros"),
    (
        17,
        'T',
        "kernel was built with the struct randomization plugin",
    ),
    (18, 'N', "an in-kernel test has been run"),
];

/// The flags set in `mask`: letter and meaning.
pub fn decode(mask: u64) -> Vec<(char, &'static str)> {
    FLAGS
        .iter()
        .filter(|(bit, _, _)| mask & (1 << bit) != 0)
        .map(|&(_, letter, meaning)| (letter, meaning))
        .collect()
}

/// The meaning of a letter from `/sys/module/NAME/taint`.
pub fn meaning(letter: char) -> Option<&'static str> {
    FLAGS
        .iter()
        .find(|(_, l, _)| *l == letter)
        .map(|&(_, _, meaning)| meaning)
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_bits_in_order() {
        let d = super::decode((1 << 13) | (1 << 12) | 1);
        let letters: String = d.iter().map(|(l, _)| *l).collect();
        assert_eq!(letters, "POE");
        assert_eq!(super::meaning('E'), Some("unsigned module was loaded"));
    }
}

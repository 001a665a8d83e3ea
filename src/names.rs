//! Module-name and alias normalisation, exactly as libkmod does it.

/// The normalised alias could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasError {
    /// A `[` without its `]`, or a `]` outside brackets (libkmod's `alias_normalize` refuses both).
    UnmatchedBracket,
}

impl std::fmt::Display for AliasError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unmatched bracket")
    }
}

/// libkmod's `alias_normalize`: `-` becomes `_` outside `[...]`; bracket contents are copied
/// unchanged; an unbalanced bracket is an error. Applied to lookup keys and, by depmod, to every
/// pattern it writes into `modules.alias.bin`.
///
/// One deliberate difference: libkmod copies into a `PATH_MAX` buffer and silently cuts longer
/// strings at 4,095 bytes; we keep the whole string so the answer is fnmatch's on the real input.
pub fn normalize_alias(alias: &[u8], out: &mut Vec<u8>) -> Result<(), AliasError> {
    out.clear();
    out.reserve(alias.len());
    let mut i = 0;
    // Copy the plain runs wholesale; only `-`, `[` and `]` need a decision.
    while let Some(off) = memchr::memchr3(b'-', b'[', b']', &alias[i..]) {
        out.extend_from_slice(&alias[i..i + off]);
        i += off;
        match alias[i] {
            b'-' => {
                out.push(b'_');
                i += 1;
            }
            b']' => return Err(AliasError::UnmatchedBracket),
            _ => {
                let close =
                    memchr::memchr(b']', &alias[i..]).ok_or(AliasError::UnmatchedBracket)?;
                out.extend_from_slice(&alias[i..=i + close]);
                i += close + 1;
            }
        }
    }
    out.extend_from_slice(&alias[i..]);
    Ok(())
}

/// libkmod's `modname_normalize`: `-` becomes `_` and the name ends at the first `.`.
pub fn normalize_modname(name: &str) -> String {
    name.split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| if c == '-' { '_' } else { c })
        .collect()
}

/// The module name of a path in `modules.dep`, `modules.builtin` or `modules.order`.
pub fn modname_from_path(path: &str) -> String {
    let name: Vec<u8> = modname_bytes(path.as_bytes()).collect();
    // Cut at ASCII bytes and with one ASCII byte replaced by another: still UTF-8.
    String::from_utf8(name).expect("a module name cut from UTF-8 at ASCII bytes")
}

/// [`modname_from_path`] byte by byte, without allocating: the file name up to its first `.`,
/// dashes as underscores.
pub fn modname_bytes(path: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let file = &path[memchr::memrchr(b'/', path).map_or(0, |i| i + 1)..];
    let name = &file[..memchr::memchr(b'.', file).unwrap_or(file.len())];
    name.iter().map(|&b| if b == b'-' { b'_' } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_normalisation() {
        let mut out = Vec::new();
        normalize_alias(b"of:N*T*Cfsl,imx6q-pcie[a-z]-x", &mut out).unwrap();
        assert_eq!(out, b"of:N*T*Cfsl,imx6q_pcie[a-z]_x");
        assert!(normalize_alias(b"a[b", &mut out).is_err());
        assert!(normalize_alias(b"a]b", &mut out).is_err());
        // libkmod stops a bracket at its first `]`, so a leading `]` member leaves one over.
        assert!(normalize_alias(b"[]ab]", &mut out).is_err());
    }

    #[test]
    fn module_names() {
        assert_eq!(
            modname_from_path("kernel/drivers/net/e1000e/e1000e.ko.xz"),
            "e1000e"
        );
        assert_eq!(
            modname_from_path("kernel/sound/snd-hda-intel.ko"),
            "snd_hda_intel"
        );
    }
}

//! Just enough ELF to find a module's sections by name, as libkmod reads them: 32- and 64-bit,
//! either byte order. Module files come from anywhere, so every offset is checked.

/// A parsed ELF object borrowing the file's bytes.
pub struct Elf<'a> {
    data: &'a [u8],
    sections: Vec<Section>,
    pub class64: bool,
    pub big_endian: bool,
    /// `e_machine`: 62 is x86-64, 183 AArch64, 3 i386, ...
    pub machine: u16,
}

struct Section {
    name: Vec<u8>,
    offset: usize,
    size: usize,
}

const SHT_NOBITS: u32 = 8;

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, String> {
        if data.len() < 0x34 || &data[..4] != b"\x7fELF" {
            return Err("not an ELF object".into());
        }
        let class64 = match data[4] {
            1 => false,
            2 => true,
            c => return Err(format!("unknown ELF class {c}")),
        };
        let big_endian = match data[5] {
            1 => false,
            2 => true,
            d => return Err(format!("unknown ELF byte order {d}")),
        };
        let r = Reader { data, big_endian };
        let machine = r.u16(0x12)?;
        let (shoff, shentsize, shnum, shstrndx) = if class64 {
            (r.u64(0x28)?, r.u16(0x3A)?, r.u16(0x3C)?, r.u16(0x3E)?)
        } else {
            (
                r.u32(0x20)? as u64,
                r.u16(0x2E)?,
                r.u16(0x30)?,
                r.u16(0x32)?,
            )
        };
        let min_entsize = if class64 { 64 } else { 40 };
        if shnum > 0 && (shentsize as usize) < min_entsize {
            return Err(format!("section header size {shentsize} is too small"));
        }
        let mut raw = Vec::with_capacity(shnum as usize);
        for i in 0..shnum as u64 {
            let at = shoff
                .checked_add(i * shentsize as u64)
                .and_then(|a| usize::try_from(a).ok())
                .ok_or("section header table out of range")?;
            let (name, kind, offset, size) = if class64 {
                (r.u32(at)?, r.u32(at + 4)?, r.u64(at + 24)?, r.u64(at + 32)?)
            } else {
                let (o, s) = (r.u32(at + 16)? as u64, r.u32(at + 20)? as u64);
                (r.u32(at)?, r.u32(at + 4)?, o, s)
            };
            let (offset, size) = if kind == SHT_NOBITS {
                (0, 0)
            } else {
                let end = offset.checked_add(size).ok_or("section size overflows")?;
                if end > data.len() as u64 {
                    return Err(format!("section {i} extends past the end of the file"));
                }
                (offset as usize, size as usize)
            };
            raw.push((name, offset, size));
        }
        let names = raw
            .get(shstrndx as usize)
            .map(|&(_, o, s)| &data[o..o + s])
            .ok_or("no section name table")?;
        let sections = raw
            .into_iter()
            .map(|(name, offset, size)| Section {
                name: names
                    .get(name as usize..)
                    .map(|n| n.split(|&b| b == 0).next().unwrap_or(b"").to_vec())
                    .unwrap_or_default(),
                offset,
                size,
            })
            .collect();
        Ok(Elf {
            data,
            sections,
            class64,
            big_endian,
            machine,
        })
    }

    /// The contents of the first section called `name`.
    pub fn section(&self, name: &str) -> Option<&'a [u8]> {
        self.sections
            .iter()
            .find(|s| s.name == name.as_bytes())
            .map(|s| &self.data[s.offset..s.offset + s.size])
    }

    fn reader(&self, data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            big_endian: self.big_endian,
        }
    }

    /// The module's `__versions` table (modversions): each imported symbol's CRC as the
    /// module was built against it, in table order.
    pub fn versions(&self) -> Vec<(u32, String)> {
        let Some(table) = self.section("__versions") else {
            return Vec::new();
        };
        let crc_size = if self.class64 { 8 } else { 4 };
        let r = self.reader(table);
        table
            .chunks_exact(64)
            .enumerate()
            .filter_map(|(i, entry)| {
                let crc = r
                    .u32(i * 64 + if self.big_endian { crc_size - 4 } else { 0 })
                    .ok()?;
                let name = entry[crc_size..].split(|&b| b == 0).next()?;
                Some((crc, String::from_utf8_lossy(name).into_owned()))
            })
            .collect()
    }

    /// Symbols the module uses but does not define: the kernel must find each exported by
    /// itself or a loaded module ("Unknown symbol" otherwise).
    pub fn undefined_symbols(&self) -> Vec<String> {
        let (Some(symtab), Some(strtab)) = (self.section(".symtab"), self.section(".strtab"))
        else {
            return Vec::new();
        };
        let r = self.reader(symtab);
        let (size, shndx_at) = if self.class64 { (24, 6) } else { (16, 14) };
        (0..symtab.len() / size)
            .filter_map(|i| {
                let name = r.u32(i * size).ok()? as usize;
                let shndx = r.u16(i * size + shndx_at).ok()?;
                if shndx != 0 || name == 0 {
                    return None;
                }
                let name = strtab.get(name..)?.split(|&b| b == 0).next()?;
                Some(String::from_utf8_lossy(name).into_owned())
            })
            .collect()
    }
}

struct Reader<'a> {
    data: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: impl TryInto<usize>) -> Result<[u8; N], String> {
        let at: usize = at.try_into().map_err(|_| "offset out of range")?;
        let mut b: [u8; N] = self
            .data
            .get(at..at.checked_add(N).ok_or("offset out of range")?)
            .ok_or_else(|| format!("truncated at offset {at}"))?
            .try_into()
            .unwrap();
        if self.big_endian {
            b.reverse();
        }
        Ok(b)
    }
    fn u16(&self, at: impl TryInto<usize>) -> Result<u16, String> {
        self.bytes(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: impl TryInto<usize>) -> Result<u32, String> {
        self.bytes(at).map(u32::from_le_bytes)
    }
    fn u64(&self, at: impl TryInto<usize>) -> Result<u64, String> {
        self.bytes(at).map(u64::from_le_bytes)
    }
}

/// libkmod's `kmod_elf_get_strings`: the NUL-separated strings of a section, runs of NULs
/// (padding) counting as one separator, a missing final NUL tolerated.
pub fn strings(section: &[u8]) -> impl Iterator<Item = &[u8]> {
    section.split(|&b| b == 0).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for data in [&b""[..], b"\x7fELF", &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]] {
            let mut padded = data.to_vec();
            assert!(Elf::parse(&padded).is_err());
            padded.resize(64, 0xff);
            assert!(Elf::parse(&padded).is_err());
        }
    }

    #[test]
    fn random_headers_never_panic() {
        let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next();
        for round in 0..20_000 {
            let len = 64 + (next() % 512) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            data[..4].copy_from_slice(b"\x7fELF");
            data[4] = 1 + (round % 2) as u8;
            data[5] = 1 + (round / 2 % 2) as u8;
            // Small, in-range header values now and then, so parsing gets past the header.
            if round % 3 == 0 {
                data[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
                data[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
                data[0x2E..0x30].copy_from_slice(&64u16.to_le_bytes());
                data[0x30..0x32].copy_from_slice(&3u16.to_le_bytes());
                data[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
                data[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
            }
            if let Ok(elf) = Elf::parse(&data) {
                let _ = elf.section(".modinfo");
                let _ = elf.versions();
                let _ = elf.undefined_symbols();
            }
        }
    }

    #[test]
    fn strings_skip_padding() {
        let s: Vec<&[u8]> = strings(b"\0\0a=1\0\0\0b=2\0c").collect();
        assert_eq!(s, [&b"a=1"[..], b"b=2", b"c"]);
    }
}

//! The message format libudev's monitors read on netlink group 2, where udevd passes on each event
//! once it is handled.
//!
//! A 40-byte header (`"libudev\0"`, magic `0xfeedcafe`, offsets, and the hashes libudev's socket
//! filters compare in the kernel: MurmurHash2 of `SUBSYSTEM` and `DEVTYPE`, a tag bloom filter)
//! followed by the properties as `KEY=VALUE\0` strings. Multi-byte fields are big-endian except the
//! offsets, which libudev reads in host order. Rebroadcasting in this format lets libudev clients
//! (libinput, Xorg, NetworkManager...) see devices on a system where modaliasd replaces udevd.

use super::Event;

/// The group libudev monitors created with the name "udev" listen on.
pub const GROUP_LIBUDEV: u32 = 2;

const MAGIC: u32 = 0xfeed_cafe;
const HEADER_SIZE: usize = 40;

/// Encodes `event` for group 2, adding `USEC_INITIALIZED` (`initialized_usec`, CLOCK_MONOTONIC
/// microseconds, as udevd records) unless the event has it. `None` when the event lacks what
/// libudev requires of every device (`ACTION`, `DEVPATH`, `SUBSYSTEM`, `SEQNUM`): libudev would
/// drop it anyway.
pub fn encode(event: &Event, initialized_usec: u64) -> Option<Vec<u8>> {
    for key in [
        &b"ACTION"[..],
        &b"DEVPATH"[..],
        &b"SUBSYSTEM"[..],
        &b"SEQNUM"[..],
    ] {
        event.get(key)?;
    }
    let mut properties = Vec::with_capacity(512);
    for (key, value) in event.vars() {
        properties.extend_from_slice(key);
        properties.push(b'=');
        properties.extend_from_slice(value);
        properties.push(0);
    }
    if event.get(b"USEC_INITIALIZED").is_none() {
        properties.extend_from_slice(format!("USEC_INITIALIZED={initialized_usec}\0").as_bytes());
    }
    let hash = |key: &[u8]| event.get(key).map_or(0, murmur_hash2);
    let (bloom_hi, bloom_lo) = tag_bloom(event.get(b"TAGS").unwrap_or_default());

    let mut message = Vec::with_capacity(HEADER_SIZE + properties.len());
    message.extend_from_slice(b"libudev\0");
    message.extend_from_slice(&MAGIC.to_be_bytes());
    message.extend_from_slice(&(HEADER_SIZE as u32).to_ne_bytes());
    message.extend_from_slice(&(HEADER_SIZE as u32).to_ne_bytes());
    message.extend_from_slice(&(properties.len() as u32).to_ne_bytes());
    message.extend_from_slice(&hash(b"SUBSYSTEM").to_be_bytes());
    message.extend_from_slice(&hash(b"DEVTYPE").to_be_bytes());
    message.extend_from_slice(&bloom_hi.to_be_bytes());
    message.extend_from_slice(&bloom_lo.to_be_bytes());
    debug_assert_eq!(message.len(), HEADER_SIZE);
    message.extend_from_slice(&properties);
    Some(message)
}

/// MurmurHash2, 32 bits, seed 0, reading four bytes at a time in little-endian order (what
/// libudev computes on the x86 and arm64 machines that run it; it reads in host order).
pub fn murmur_hash2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// libudev's 64-bit bloom filter over the tags in `:tag1:tag2:`: four bits per tag, each chosen
/// by six bits of the tag's hash.
fn tag_bloom(tags: &[u8]) -> (u32, u32) {
    let mut bits = 0u64;
    for tag in tags.split(|&b| b == b':').filter(|t| !t.is_empty()) {
        let hash = murmur_hash2(tag);
        for shift in [0, 6, 12, 18] {
            bits |= 1 << ((hash >> shift) & 63);
        }
    }
    ((bits >> 32) as u32, bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_hash2_of_nothing_is_zero() {
        // The other values are checked where they matter: by libudev's own socket filter, in
        // tests/daemon.rs.
        assert_eq!(murmur_hash2(b""), 0);
    }

    #[test]
    fn header_and_properties() {
        let raw = b"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=pci\0SEQNUM=7\0";
        let event = Event::parse(raw).unwrap();
        let m = encode(&event, 42).unwrap();
        assert_eq!(&m[..8], b"libudev\0");
        assert_eq!(&m[8..12], &[0xfe, 0xed, 0xca, 0xfe]);
        assert_eq!(u32::from_ne_bytes(m[16..20].try_into().unwrap()), 40);
        let properties = &m[40..];
        assert_eq!(
            u32::from_ne_bytes(m[20..24].try_into().unwrap()) as usize,
            properties.len()
        );
        assert_eq!(
            properties,
            b"ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=pci\0SEQNUM=7\0USEC_INITIALIZED=42\0"
        );
        assert_eq!(m[24..28], murmur_hash2(b"pci").to_be_bytes());
        assert_eq!(&m[28..40], &[0; 12]);
        let no_seqnum = Event::parse(b"add@/x\0ACTION=add\0DEVPATH=/x\0SUBSYSTEM=pci\0").unwrap();
        assert!(encode(&no_seqnum, 0).is_none());
    }
}

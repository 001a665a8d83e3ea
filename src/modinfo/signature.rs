//! The signature appended to a module (`scripts/sign-file`): the data, a 12-byte
//! `struct module_signature`, then `~Module signature appended~\n`. Modern signatures are
//! PKCS#7 (CMS) SignedData; from it libkmod reports the issuer's common name as the signer,
//! the certificate serial number as the key id, the digest algorithm and the signature bytes.
//! This reads the same fields with a small DER walker, so no crypto library is linked: nothing
//! is verified here (the kernel does that).

pub const MAGIC: &[u8] = b"~Module signature appended~\n";

/// What `modinfo` shows of a module's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// "PKCS#7", "X509" or "PGP".
    pub id_type: &'static str,
    pub signer: Vec<u8>,
    pub key_id: Vec<u8>,
    pub hash_algo: &'static str,
    pub signature: Vec<u8>,
    /// The module without the signature (what the signature covers).
    pub signed_len: usize,
}

const ID_TYPES: [&str; 3] = ["PGP", "X509", "PKCS#7"];
/// In the kernel's `enum hash_algo` order, as libkmod names them.
const HASH_ALGOS: [&str; 9] = [
    "md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "sm3",
];
const PKEY_ALGOS: usize = 2; // DSA, RSA
const PKEY_ID_PKCS7: u8 = 2;

/// The signature appended to `module` (decompressed), if there is one libkmod would report.
pub fn appended(module: &[u8]) -> Option<Signature> {
    let size = module.len().checked_sub(MAGIC.len())?;
    if &module[size..] != MAGIC {
        return None;
    }
    let size = size.checked_sub(12)?;
    let info = &module[size..size + 12];
    let (algo, hash, id_type, signer_len, key_id_len) = (
        info[0] as usize,
        info[1] as usize,
        info[2],
        info[3] as usize,
        info[4] as usize,
    );
    let sig_len = u32::from_be_bytes(info[8..12].try_into().unwrap()) as usize;
    if algo >= PKEY_ALGOS || hash >= HASH_ALGOS.len() || id_type as usize >= ID_TYPES.len() {
        return None;
    }
    if sig_len == 0 || size < sig_len + signer_len + key_id_len {
        return None;
    }
    let start = size - sig_len;
    let raw = &module[start..size];
    if id_type == PKEY_ID_PKCS7 {
        let mut s = pkcs7(raw)?;
        s.signed_len = start;
        return Some(s);
    }
    let key_start = start - key_id_len;
    let signer_start = key_start - signer_len;
    Some(Signature {
        id_type: ID_TYPES[id_type as usize],
        signer: module[signer_start..key_start].to_vec(),
        key_id: module[key_start..start].to_vec(),
        hash_algo: HASH_ALGOS[hash],
        signature: raw.to_vec(),
        signed_len: signer_start,
    })
}

/// One DER element: its tag and contents.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Splits the first DER element off `data`.
fn next(data: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = data.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers: never in these structures
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None; // indefinite length (BER) or absurd
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            body: &rest[..len],
        },
        &rest[len..],
    ))
}

/// Reads a constructed element's children one by one, each with the tag it must have, and
/// insists that nothing is left over: OpenSSL's template decoder is that strict, and a
/// signature it cannot decode is one libkmod does not show.
struct Children<'a> {
    rest: &'a [u8],
}

impl<'a> Children<'a> {
    fn of(t: Tlv<'a>) -> Children<'a> {
        Children { rest: t.body }
    }
    fn take(&mut self, tag: u8) -> Option<Tlv<'a>> {
        let (t, rest) = next(self.rest)?;
        if !tag_matches(t.tag, tag) {
            return None;
        }
        self.rest = rest;
        Some(t)
    }
    fn optional(&mut self, tag: u8) -> Option<Tlv<'a>> {
        match next(self.rest) {
            Some((t, _)) if tag_matches(t.tag, tag) => self.take(tag),
            _ => None,
        }
    }
    fn any(&mut self) -> Option<Tlv<'a>> {
        let (t, rest) = next(self.rest)?;
        self.rest = rest;
        Some(t)
    }
    fn done(&self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
    /// The remaining children, all with `tag`.
    fn all(mut self, tag: u8) -> Option<Vec<Tlv<'a>>> {
        let mut all = Vec::new();
        while !self.rest.is_empty() {
            all.push(self.take(tag)?);
        }
        Some(all)
    }
}

/// OpenSSL insists on the constructed bit for a SEQUENCE but not for a SET OF.
fn tag_matches(actual: u8, wanted: u8) -> bool {
    actual == wanted || (wanted == SET && actual == SET & !0x20)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_1: u8 = 0xa1;
/// 1.2.840.113549.1.7.2, signedData.
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 2.5.4.3, commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// An OBJECT IDENTIFIER's contents as OpenSSL accepts them: not empty, no sub-identifier
/// padded with 0x80, the last byte ending one.
fn valid_oid(body: &[u8]) -> bool {
    !body.is_empty()
        && body.last().is_some_and(|&b| b & 0x80 == 0)
        && body
            .iter()
            .enumerate()
            .all(|(i, &b)| b != 0x80 || (i > 0 && body[i - 1] & 0x80 != 0))
}

/// An INTEGER's contents as OpenSSL 3 accepts them: not empty, minimally encoded.
fn valid_integer(body: &[u8]) -> bool {
    match body {
        [] => false,
        [0x00, b, ..] => b & 0x80 != 0,
        [0xff, b, ..] => b & 0x80 == 0,
        _ => true,
    }
}

/// AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }
fn algorithm(t: Tlv<'_>) -> Option<&[u8]> {
    let mut c = Children::of(t);
    let algo = c.take(OID)?;
    if !valid_oid(algo.body) {
        return None;
    }
    if let Some(p) = c.any() {
        if p.tag == NULL && !p.body.is_empty() {
            return None;
        }
    }
    c.done()?;
    Some(algo.body)
}

fn hash_algo(oid: &[u8]) -> Option<&'static str> {
    const NIST: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
    const RSADSI_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02];
    let index = match oid {
        [n @ .., 1] if n == NIST => 4,
        [n @ .., 2] if n == NIST => 5,
        [n @ .., 3] if n == NIST => 6,
        [n @ .., 4] if n == NIST => 7,
        [0x2b, 0x0e, 0x03, 0x02, 0x1a] => 2,
        [n @ .., 4] if n == RSADSI_DIGEST => 0,
        [n @ .., 5] if n == RSADSI_DIGEST => 1,
        [0x2b, 0x24, 0x03, 0x02, 0x01] => 3,
        [0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x11] => 8,
        _ => return None,
    };
    Some(HASH_ALGOS[index])
}

/// An X.509 name's attribute value as OpenSSL decodes it, then canonicalises it (converting the
/// Unicode string types, which fails on malformed ones). Its type must be one of
/// ASN1_PRINTABLE's: the string types in that mask, SEQUENCE, and the tags OpenSSL maps to
/// "unknown"; only SEQUENCE may be constructed.
fn valid_name_value(t: Tlv<'_>) -> bool {
    let number = t.tag & 0x1f;
    let accepted = matches!(number, 3 | 7 | 8 | 9 | 11..=16 | 18..=20 | 22 | 28..=30);
    let constructed = t.tag & 0x20 != 0;
    t.tag & 0xc0 == 0
        && accepted
        && (!constructed || t.tag == SEQUENCE)
        && match t.tag {
            0x0c => std::str::from_utf8(t.body).is_ok(),
            0x1e => t.body.len() % 2 == 0,
            0x1c => t.body.len() % 4 == 0,
            _ => true,
        }
}

/// Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }. libkmod shows the common name or,
/// when there is none, the last attribute's value (its loop stops at the common name or runs
/// off the end).
fn issuer_name(t: Tlv<'_>) -> Option<Vec<u8>> {
    let mut shown: Option<&[u8]> = None;
    let mut found_cn = false;
    for rdn in Children::of(t).all(SET)? {
        let atvs = Children::of(rdn).all(SEQUENCE)?;
        if atvs.is_empty() {
            return None;
        }
        for atv in atvs {
            let mut c = Children::of(atv);
            let oid = c.take(OID)?;
            if !valid_oid(oid.body) {
                return None;
            }
            let value = c.any()?;
            c.done()?;
            if !valid_name_value(value) {
                return None;
            }
            if !found_cn {
                shown = Some(value.body);
                found_cn = oid.body == OID_COMMON_NAME;
            }
        }
    }
    // ASN1_STRING_get0_data is read as a C string.
    Some(
        shown
            .map(|v| v.split(|&b| b == 0).next().unwrap_or_default().to_vec())
            .unwrap_or_default(),
    )
}

/// What OpenSSL's `BN_bn2bin` makes of an INTEGER: its absolute value, big-endian, without
/// leading zero bytes (a negative serial number is two's complement).
fn magnitude(integer: &[u8]) -> Vec<u8> {
    let mut bytes = integer.to_vec();
    if integer.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut carry = true;
        for b in bytes.iter_mut().rev() {
            *b = !*b;
            if carry {
                let (v, overflow) = b.overflowing_add(1);
                *b = v;
                carry = overflow;
            }
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// libkmod's `fill_pkcs7`: the first SignerInfo's issuer CN, serial, digest and signature,
/// provided the whole ContentInfo decodes.
fn pkcs7(der: &[u8]) -> Option<Signature> {
    let (content_info, _) = next(der)?;
    if content_info.tag != SEQUENCE {
        return None;
    }
    let mut ci = Children::of(content_info);
    let content_type = ci.take(OID)?;
    if content_type.body != OID_SIGNED_DATA {
        return None;
    }
    let explicit = ci.take(CONTEXT_0)?;
    ci.done()?;
    let mut ex = Children::of(explicit);
    let signed_data = ex.take(SEQUENCE)?;
    ex.done()?;

    let mut sd = Children::of(signed_data);
    let version = sd.take(INTEGER)?;
    if !valid_integer(version.body) {
        return None;
    }
    for a in Children::of(sd.take(SET)?).all(SEQUENCE)? {
        algorithm(a)?;
    }
    // The signed content's ContentInfo: its type, and the content only when attached.
    let mut inner = Children::of(sd.take(SEQUENCE)?);
    if !valid_oid(inner.take(OID)?.body) {
        return None;
    }
    inner.optional(CONTEXT_0);
    inner.done()?;
    sd.optional(CONTEXT_0); // certificates: sign-file leaves them out
    sd.optional(CONTEXT_1); // CRLs
    let signer_infos = Children::of(sd.take(SET)?).all(SEQUENCE)?;
    sd.done()?;

    let mut first = None;
    for info in signer_infos {
        let mut si = Children::of(info);
        let version = si.take(INTEGER)?;
        if !valid_integer(version.body) {
            return None;
        }
        let mut ias = Children::of(si.take(SEQUENCE)?);
        let issuer = issuer_name(ias.take(SEQUENCE)?)?;
        let serial = ias.take(INTEGER)?;
        if !valid_integer(serial.body) {
            return None;
        }
        ias.done()?;
        let digest = algorithm(si.take(SEQUENCE)?)?;
        si.optional(CONTEXT_0); // authenticated attributes
        algorithm(si.take(SEQUENCE)?)?;
        let encrypted_digest = si.take(OCTET_STRING)?;
        si.optional(CONTEXT_1);
        si.done()?;
        first.get_or_insert((issuer, serial.body, digest, encrypted_digest.body));
    }
    let (signer, serial, digest, signature) = first?;
    let key_id = magnitude(serial);
    Some(Signature {
        id_type: ID_TYPES[PKEY_ID_PKCS7 as usize],
        signer,
        key_id,
        hash_algo: hash_algo(digest)?,
        signature: signature.to_vec(),
        signed_len: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_magic_no_signature() {
        assert_eq!(appended(b"\x7fELF plain"), None);
        assert_eq!(appended(MAGIC), None);
    }

    #[test]
    fn random_bytes_never_panic() {
        // A fixed xorshift stream: DER-looking prefixes (SEQUENCE, lengths) and noise.
        let mut rng = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next();
        for round in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut der: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && len > 4 {
                der[0] = SEQUENCE;
                der[1] = 0x82;
            }
            let _ = pkcs7(&der);
            let mut module = der.clone();
            module.extend_from_slice(&[1, 4, 2, 0, 0, 0, 0, 0]);
            module.extend_from_slice(&(len as u32).to_be_bytes());
            module.extend_from_slice(MAGIC);
            let _ = appended(&module);
        }
    }

    #[test]
    fn truncated_der_is_no_signature_not_a_panic() {
        let mut module = vec![0x30, 0x82, 0x10, 0x00, 0x06];
        let sig_len = module.len() as u32;
        module.extend_from_slice(&[1, 4, 2, 0, 0, 0, 0, 0]);
        module.extend_from_slice(&sig_len.to_be_bytes());
        module.extend_from_slice(MAGIC);
        assert_eq!(appended(&module), None);
    }
}

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

/// The elements inside a constructed element's body.
fn children(body: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let (tlv, r) = next(rest)?;
        rest = r;
        Some(tlv)
    })
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
/// 1.2.840.113549.1.7.2, signedData.
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 2.5.4.3, commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

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

/// libkmod's `fill_pkcs7`: the first SignerInfo's issuer CN, serial, digest and signature.
fn pkcs7(der: &[u8]) -> Option<Signature> {
    let (content_info, _) = next(der)?;
    let mut ci = children(content_info.body);
    let oid = ci.next()?;
    if oid.tag != OID || oid.body != OID_SIGNED_DATA {
        return None;
    }
    let explicit = ci.next()?; // [0] EXPLICIT
    let signed_data = children(explicit.body).next()?;
    if signed_data.tag != SEQUENCE {
        return None;
    }
    // version, digestAlgorithms, contentInfo, [0] certificates, [1] crls, signerInfos
    let signer_infos = children(signed_data.body).skip(3).find(|t| t.tag == SET)?;
    let signer_info = children(signer_infos.body).next()?;
    let mut si = children(signer_info.body);
    let _version = si.next()?;
    let issuer_and_serial = si.next()?;
    if issuer_and_serial.tag != SEQUENCE {
        return None; // a subjectKeyIdentifier: libkmod (OpenSSL's PKCS7) reads no signer then
    }
    let mut ias = children(issuer_and_serial.body);
    let issuer = ias.next()?;
    let serial = ias.next()?;
    if serial.tag != INTEGER {
        return None;
    }
    let digest_algorithm = si.next()?;
    let digest_oid = children(digest_algorithm.body).next()?;
    let mut rest = si.filter(|t| t.tag != 0xa0 && t.tag != 0xa1);
    let _signature_algorithm = rest.next()?;
    let encrypted_digest = rest.next()?;
    if encrypted_digest.tag != OCTET_STRING {
        return None;
    }
    let signer = children(issuer.body)
        .flat_map(|rdn| children(rdn.body))
        .find_map(|atv| {
            let mut parts = children(atv.body);
            let oid = parts.next()?;
            (oid.tag == OID && oid.body == OID_COMMON_NAME).then(|| parts.next().map(|v| v.body))?
        })
        .unwrap_or_default();
    // As OpenSSL's BN_bn2bin: the magnitude without leading zero bytes.
    let key_id: Vec<u8> = serial
        .body
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    Some(Signature {
        id_type: ID_TYPES[PKEY_ID_PKCS7 as usize],
        signer: signer.to_vec(),
        key_id,
        hash_algo: hash_algo(digest_oid.body)?,
        signature: encrypted_digest.body.to_vec(),
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
    fn truncated_der_is_no_signature_not_a_panic() {
        let mut module = vec![0x30, 0x82, 0x10, 0x00, 0x06];
        let sig_len = module.len() as u32;
        module.extend_from_slice(&[1, 4, 2, 0, 0, 0, 0, 0]);
        module.extend_from_slice(&sig_len.to_be_bytes());
        module.extend_from_slice(MAGIC);
        assert_eq!(appended(&module), None);
    }
}

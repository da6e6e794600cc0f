//! An EC private key's JWK members (RFC 7518 §6.2) from its PKCS#8 DER (RFC 5208 PrivateKeyInfo holding an
//! RFC 5915 ECPrivateKey), read with the `der` crate: the curve from the algorithm's parameters (or the
//! ECPrivateKey's own), `d` from the private key octets, `x` and `y` from the embedded uncompressed public
//! point. A key without that point is refused: deriving it would need the curve arithmetic here.
#![forbid(unsafe_code)]

use super::Error;
use der::asn1::{BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Reader as _, SliceReader, TagMode, TagNumber};
use zeroize::Zeroizing;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// (OID, JWK name, field size in bytes).
const CURVES: [(ObjectIdentifier, &str, usize); 3] = [
    (
        ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
        "P-256",
        32,
    ),
    (ObjectIdentifier::new_unwrap("1.3.132.0.34"), "P-384", 48),
    (ObjectIdentifier::new_unwrap("1.3.132.0.35"), "P-521", 66),
];

/// An EC key's JWK members: `d` padded to the field size (RFC 7518 §6.2.2.1), `x` and `y` borrowed from
/// the DER.
pub(super) struct Parts<'a> {
    pub crv: &'static str,
    pub d: Zeroizing<Vec<u8>>,
    pub x: &'a [u8],
    pub y: &'a [u8],
}

/// The members of the EC key in `der` (PKCS#8); `kty` names it in errors.
pub(super) fn parts<'a>(kty: &str, der: &'a [u8]) -> Result<Parts<'a>, Error> {
    let malformed = |detail| Error::Malformed {
        kty: kty.to_string(),
        detail,
    };
    let dec = |source| Error::Der {
        kty: kty.to_string(),
        source,
    };
    // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, privateKey OCTET STRING, ... }
    let mut r = SliceReader::new(der).map_err(dec)?;
    let (alg, curve, inner) = r
        .sequence(|r| {
            let _version: u8 = r.decode()?;
            let (alg, curve) = r.sequence(|r| {
                let alg: ObjectIdentifier = r.decode()?;
                // namedCurve; absent or another form is caught below.
                let curve: Option<ObjectIdentifier> = match der::Tag::peek(r)? {
                    der::Tag::ObjectIdentifier => Some(r.decode()?),
                    _ => None,
                };
                // NULL or other parameters we do not read.
                while !r.is_finished() {
                    r.tlv_bytes()?;
                }
                Ok::<_, der::Error>((alg, curve))
            })?;
            let inner: &OctetStringRef = r.decode()?;
            // attributes [0], publicKey [1] (PKCS#8 v2): not needed.
            while !r.is_finished() {
                r.tlv_bytes()?;
            }
            Ok::<_, der::Error>((alg, curve, inner.as_bytes()))
        })
        .map_err(dec)?;
    r.finish().map_err(dec)?;
    if alg != EC_PUBLIC_KEY {
        return Err(malformed("its algorithm is not id-ecPublicKey"));
    }
    // ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING, [0] ECParameters OPTIONAL,
    //                             [1] publicKey BIT STRING OPTIONAL }
    let mut r = SliceReader::new(inner).map_err(dec)?;
    let (d, own_curve, point) = r
        .sequence(|r| {
            let version: u8 = r.decode()?;
            if version != 1 {
                return Err(der::Tag::Integer.value_error().into());
            }
            let d: &OctetStringRef = r.decode()?;
            let params: Option<ObjectIdentifier> =
                r.context_specific(TagNumber(0), TagMode::Explicit)?;
            let point: Option<BitStringRef<'_>> =
                r.context_specific(TagNumber(1), TagMode::Explicit)?;
            Ok::<_, der::Error>((d.as_bytes(), params, point))
        })
        .map_err(dec)?;
    r.finish().map_err(dec)?;
    let oid = match (curve, own_curve) {
        (Some(a), Some(b)) if a != b => {
            return Err(malformed("its two curve parameters disagree"));
        }
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => return Err(malformed("it names no curve")),
    };
    let (_, crv, size) = CURVES
        .iter()
        .find(|(o, _, _)| *o == oid)
        .ok_or_else(|| Error::Curve(oid.to_string()))?;
    let point = point
        .ok_or(Error::NoPublicKey)?
        .as_bytes()
        .ok_or_else(|| malformed("its public key has unused bits"))?;
    let coords = match point.split_first() {
        Some((4, xy)) if xy.len() == 2 * size => xy,
        Some((2 | 3, _)) => return Err(malformed("its public key is compressed")),
        _ => {
            return Err(malformed(
                "its public key is not a point of its curve's size",
            ))
        }
    };
    if d.is_empty() || d.len() > *size {
        return Err(malformed("its private scalar is not of its curve's size"));
    }
    let mut padded = Zeroizing::new(vec![0u8; *size]);
    padded[size - d.len()..].copy_from_slice(d);
    let (x, y) = coords.split_at(*size);
    Ok(Parts {
        crv,
        d: padded,
        x,
        y,
    })
}

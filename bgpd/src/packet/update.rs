//! UPDATE (RFC 4271 §4.3) with RFC 7606 error handling, plus helpers that pack prefixes
//! into as few messages as fit.
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;

use super::error::{DecodeError, UpdateError};
use super::iana::attr_type as ty;
use super::{Afi, DecodeCxt, MpUnreach, PathAttributes, Safi, Update, attributes, nlri};

impl Update {
    /// Decodes an UPDATE body (everything after the 19-octet header).
    pub fn decode(body: &[u8], cxt: &DecodeCxt) -> Result<Update, DecodeError> {
        let [w0, w1, rest @ ..] = body else {
            return Err(
                UpdateError::MalformedAttributeList("UPDATE shorter than its lengths").into(),
            );
        };
        let wlen = usize::from(u16::from_be_bytes([*w0, *w1]));
        let (Some(withdrawn_bytes), Some(rest)) = (rest.get(..wlen), rest.get(wlen..)) else {
            return Err(UpdateError::MalformedAttributeList(
                "withdrawn routes overrun the message",
            )
            .into());
        };
        let [a0, a1, rest @ ..] = rest else {
            return Err(
                UpdateError::MalformedAttributeList("path attribute length missing").into(),
            );
        };
        let alen = usize::from(u16::from_be_bytes([*a0, *a1]));
        let (Some(attr_bytes), Some(nlri_bytes)) = (rest.get(..alen), rest.get(alen..)) else {
            return Err(
                UpdateError::MalformedAttributeList("path attributes overrun the message").into(),
            );
        };

        let mut withdrawn = Vec::new();
        nlri::decode_ipv4(withdrawn_bytes, &mut withdrawn)
            .map_err(|_| UpdateError::InvalidNetworkField)?;
        let decoded = attributes::decode(attr_bytes, cxt)?;
        let mut nlri = Vec::new();
        nlri::decode_ipv4(nlri_bytes, &mut nlri).map_err(|_| UpdateError::InvalidNetworkField)?;

        // RFC 7606 §3 d: a missing well-known mandatory attribute is treat-as-withdraw; it is
        // only required when the UPDATE announces something (NEXT_HOP only for IPv4 NLRI,
        // RFC 4760 §3).
        let announces = !nlri.is_empty()
            || decoded
                .attrs
                .mp_reach
                .as_ref()
                .is_some_and(|m| !m.nlri.is_empty());
        let missing = announces
            && (!decoded.has(ty::ORIGIN)
                || !decoded.has(ty::AS_PATH)
                || (!nlri.is_empty() && !decoded.has(ty::NEXT_HOP)));

        let update = Update {
            withdrawn,
            attrs: decoded.attrs,
            nlri,
        };
        if decoded.treat_as_withdraw || missing {
            return Err(DecodeError::TreatAsWithdraw {
                withdrawn: update.all_prefixes(),
            });
        }
        Ok(update)
    }

    /// Writes the UPDATE body.
    pub fn encode(&self, cxt: &DecodeCxt, buf: &mut BytesMut) {
        let wlen: usize = self.withdrawn.iter().map(nlri::encoded_len).sum();
        buf.put_u16(wlen as u16);
        nlri::encode_all(&self.withdrawn, buf);
        let len_at = buf.len();
        buf.put_u16(0);
        attributes::encode(&self.attrs, cxt, buf);
        let alen = buf.len() - len_at - 2;
        buf[len_at..len_at + 2].copy_from_slice(&(alen as u16).to_be_bytes());
        nlri::encode_all(&self.nlri, buf);
    }

    /// Every prefix the UPDATE mentions, reachable or not: what treat-as-withdraw withdraws.
    pub fn all_prefixes(&self) -> Vec<IpNet> {
        let mut all = self.withdrawn.clone();
        all.extend_from_slice(&self.nlri);
        if let Some(mp) = &self.attrs.mp_reach {
            all.extend_from_slice(&mp.nlri);
        }
        if let Some(mp) = &self.attrs.mp_unreach {
            all.extend_from_slice(&mp.withdrawn);
        }
        all
    }

    /// The End-of-RIB marker for a family (RFC 4724 §2): an empty UPDATE for IPv4 unicast,
    /// an UPDATE with only an empty MP_UNREACH_NLRI otherwise.
    pub fn end_of_rib(afi: Afi, safi: Safi) -> Update {
        let mut update = Update::default();
        if (afi, safi) != (Afi::Ipv4, Safi::Unicast) {
            update.attrs.mp_unreach = Some(MpUnreach {
                afi,
                safi,
                withdrawn: Vec::new(),
            });
        }
        update
    }

    /// The family this UPDATE is the End-of-RIB marker of, if it is one.
    pub fn end_of_rib_family(&self) -> Option<(Afi, Safi)> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        let empty_attrs = PathAttributes::default();
        match &self.attrs.mp_unreach {
            None if self.attrs == empty_attrs => Some((Afi::Ipv4, Safi::Unicast)),
            Some(mp) if mp.withdrawn.is_empty() => {
                let only_unreach = PathAttributes {
                    mp_unreach: Some(mp.clone()),
                    ..PathAttributes::default()
                };
                (self.attrs == only_unreach).then_some((mp.afi, mp.safi))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_with_content_are_not_end_of_rib() {
        let mut u = Update::end_of_rib(Afi::Ipv6, Safi::Unicast);
        u.attrs.origin = Some(super::super::Origin::Igp);
        assert_eq!(u.end_of_rib_family(), None);
        let mut u = Update::end_of_rib(Afi::Ipv4, Safi::Unicast);
        u.withdrawn.push("10.0.0.0/8".parse().unwrap());
        assert_eq!(u.end_of_rib_family(), None);
    }
}

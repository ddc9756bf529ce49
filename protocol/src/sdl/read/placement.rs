//! profiles.placement (attributes, signedBy, pricing) and the deployment section.

use super::*;
use crate::sdl::units::Decimal;
use crate::sdl::{DeploymentEntry, PlacementProfile, Price};
use crate::types::{Attribute, Coin, MAX_REPLICAS};
impl Reader {
    pub(super) fn placement(
        &mut self,
        name: &str,
        line: usize,
        n: &Node,
        path: &str,
    ) -> Result<PlacementProfile, SdlError> {
        let Kind::Map(e) = &n.kind else {
            return Err(wrong(n, path, "a map with pricing (and attributes, signedBy)"));
        };
        self.unknown_keys(e, path, &["attributes", "signedBy", "pricing"]);
        let mut attributes = Vec::new();
        let apath = child(path, "attributes");
        for (k, v) in opt_map(get(e, "attributes"), &apath)?.unwrap_or(&[]) {
            let p = child(&apath, &k.text);
            let value = text(v, &p, "give the attribute's value")?;
            let key_ok = !k.text.is_empty()
                && k.text.len() <= 64
                && k.text.chars().all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c));
            if !key_ok {
                return Err(bad(
                    &p,
                    k.line,
                    &k.text,
                    "an attribute key is 1-64 letters, digits or . _ : / -",
                ));
            }
            if value.chars().count() > 128 || value.chars().any(char::is_control) {
                return Err(bad(
                    &p,
                    v.line,
                    value,
                    "an attribute value is at most 128 printable characters",
                ));
            }
            attributes.push(Attribute::new(k.text.clone(), value));
        }
        attributes.sort();
        if attributes.len() > crate::types::MAX_ATTRIBUTES {
            return Err(bad(
                &apath,
                line,
                "",
                format!("at most {} attributes", crate::types::MAX_ATTRIBUTES),
            ));
        }
        let spath = child(path, "signedBy");
        let mut any_of = Vec::new();
        let mut all_of = Vec::new();
        if let Some(s) = opt_map(get(e, "signedBy"), &spath)? {
            self.unknown_keys(s, &spath, &["anyOf", "allOf"]);
            any_of = strings(
                opt_seq(get(s, "anyOf"), &child(&spath, "anyOf"))?,
                &child(&spath, "anyOf"),
            )?;
            all_of = strings(
                opt_seq(get(s, "allOf"), &child(&spath, "allOf"))?,
                &child(&spath, "allOf"),
            )?;
            if !any_of.is_empty() || !all_of.is_empty() {
                let sline = get(e, "signedBy").map_or(line, |(k, _)| k.line);
                self.warn(&spath, sline, "auditor signatures are not enforced by leasemesh: any provider with the attributes may bid");
            }
        }
        let ppath = child(path, "pricing");
        let (pricing_map, pricing_line) =
            req_map(get(e, "pricing"), &ppath, line, "give a price per compute profile")?;
        let mut pricing = Vec::new();
        for (k, v) in pricing_map {
            let p = child(&ppath, &k.text);
            let Kind::Map(m) = &v.kind else {
                return Err(wrong(v, &p, "a map with denom and amount"));
            };
            self.unknown_keys(m, &p, &["denom", "amount"]);
            let (denom, dline) = req_text(m, "denom", &p, k.line, "give the denom, like uakt")?;
            let denom = denom.trim();
            if crate::validate::coin(&child(&p, "denom"), &Coin::new(denom, 0)).is_err() {
                return Err(bad(
                    &child(&p, "denom"),
                    dline,
                    denom,
                    "a denom is 3-128 characters, a letter first, then letters, digits or /:._-",
                ));
            }
            let (amount, aline) =
                req_text(m, "amount", &p, k.line, "give the amount per block, like 1000")?;
            let dec = Decimal::parse(amount.trim()).ok_or_else(|| {
                bad(
                    &child(&p, "amount"),
                    aline,
                    amount,
                    "an amount is a non-negative number like 1000 or 0.5",
                )
            })?;
            if dec.mantissa == 0 {
                return Err(bad(
                    &child(&p, "amount"),
                    aline,
                    amount,
                    "Akash refuses a zero amount",
                ));
            }
            pricing.push(Price {
                profile: k.text.clone(),
                line: k.line,
                denom: denom.to_owned(),
                amount: dec,
            });
        }
        pricing.sort_by(|a, b| a.profile.cmp(&b.profile));
        Ok(PlacementProfile {
            name: name.to_owned(),
            line,
            attributes,
            signed_by_any_of: any_of,
            signed_by_all_of: all_of,
            pricing,
            pricing_line,
        })
    }

    pub(super) fn deployment_entry(
        &mut self,
        service: &str,
        pk: &Key,
        pv: &Node,
        path: &str,
    ) -> Result<DeploymentEntry, SdlError> {
        let Kind::Map(e) = &pv.kind else {
            return Err(wrong(pv, path, "a map with profile and count"));
        };
        self.unknown_keys(e, path, &["profile", "count"]);
        let (profile, _) = req_text(e, "profile", path, pk.line, "name the compute profile")?;
        let cpath = child(path, "count");
        let count = match get(e, "count") {
            None => return Err(missing(&cpath, pk.line, "give the number of replicas")),
            Some((_, v)) => {
                let c = uint(v, &cpath, "give the number of replicas")?;
                match u32::try_from(c) {
                    Ok(c) if (1..=MAX_REPLICAS).contains(&c) => c,
                    _ => {
                        return Err(bad(
                            &cpath,
                            v.line,
                            &c.to_string(),
                            format!("count is 1 to {MAX_REPLICAS}"),
                        ))
                    }
                }
            }
        };
        Ok(DeploymentEntry {
            service: service.to_owned(),
            placement: pk.text.clone(),
            profile: profile.to_owned(),
            count,
            line: pk.line,
        })
    }
}

//! The registrar (RFC 3261 §10.3): bindings of contacts to an address of record, each with its
//! own expiry and q-value, kept in a store the caller provides.
//!
//! [`plan`] turns a REGISTER into what it asks for, refusing what §10.3 refuses; [`Registrar::apply`]
//! checks it against the stored bindings (Call-ID/CSeq ordering, step 7) and writes it.
//! Authentication (step 3) and deciding who may register which AOR are the caller's.

use rsip::prelude::*;
use rsip::{Header, Response, StatusCode};

use crate::message::InboundRequest;
use crate::name_addr::NameAddr;
use crate::response::{push_header, response_to};

/// Expiry limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// Shorter requested expiries get `423 Interval Too Brief` (§10.3 step 7, §20.23).
    pub min_expires: u32,
    /// Longer requested expiries are shortened to this.
    pub max_expires: u32,
    /// Used when neither the contact nor the request gives an expiry.
    pub default_expires: u32,
    /// Contacts one address of record may have bound at once; a REGISTER that would pass it
    /// is refused (`403 Too Many Contacts`) and changes nothing.
    pub max_bindings: usize,
}

impl Default for RegistrarPolicy {
    fn default() -> RegistrarPolicy {
        RegistrarPolicy { min_expires: 60, max_expires: 3600, default_expires: 3600, max_bindings: 10 }
    }
}

/// One contact a REGISTER asks to bind (expires > 0) or remove (expires = 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactChange {
    /// The contact URI as the phone wrote it.
    pub uri: String,
    pub expires: u32,
    /// q-value in thousandths.
    pub q_milli: u16,
    /// The device's `+sip.instance` (RFC 5626 §4.1), unquoted: a phone that comes back with a
    /// new contact (rebooted, new address) replaces its old binding instead of adding one.
    pub instance: Option<String>,
}

/// What a REGISTER asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterPlan {
    /// The user part of the To URI: the address of record.
    pub aor: String,
    /// `Contact: *` with `Expires: 0`: remove every binding.
    pub remove_all: bool,
    pub changes: Vec<ContactChange>,
    pub call_id: String,
    pub cseq: u32,
}

/// Why a REGISTER is refused, with the response it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("expiry below the minimum of {min_expires} s")]
    IntervalTooBrief { min_expires: u32 },
    #[error("out-of-order REGISTER (Call-ID/CSeq not newer than the binding's)")]
    OutOfOrder,
    #[error("more than {max} contacts for one address of record")]
    TooManyBindings { max: usize },
    #[error("storage failed: {0}")]
    Store(String),
}

impl RegisterError {
    /// The response that reports this error.
    pub fn response(&self, request: &InboundRequest, to_tag: &str, server: Option<&str>) -> Response {
        let (status, extra) = match self {
            RegisterError::BadRequest(reason) => (StatusCode::Other(400, (*reason).into()), None),
            RegisterError::IntervalTooBrief { min_expires } => {
                (StatusCode::IntervalTooBrief, Some(Header::MinExpires(min_expires.to_string().into())))
            }
            RegisterError::OutOfOrder => (StatusCode::Other(500, "Out Of Order Request".into()), None),
            RegisterError::TooManyBindings { .. } => {
                (StatusCode::Other(403, "Too Many Contacts".into()), None)
            }
            RegisterError::Store(_) => (StatusCode::ServerInternalError, None),
        };
        let mut response = response_to(request, status, Some(to_tag), server);
        if let Some(h) = extra {
            push_header(&mut response, h);
        }
        response
    }
}

/// Reads a REGISTER (§10.3 steps 5-7, without the store).
pub fn plan(request: &InboundRequest, policy: &RegistrarPolicy) -> Result<RegisterPlan, RegisterError> {
    let env = &request.envelope;
    let aor = env.to.uri.auth.as_ref().map(|a| a.user.clone()).unwrap_or_default();
    if aor.is_empty() {
        return Err(RegisterError::BadRequest("No User In To URI"));
    }
    let header_expires = match request.request.expires_header() {
        Some(h) => Some(
            h.value().trim().parse::<u32>().map_err(|_| RegisterError::BadRequest("Malformed Expires"))?,
        ),
        None => None,
    };
    let values: Vec<&str> = request
        .request
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Contact(c) => Some(c.value()),
            _ => None,
        })
        .flat_map(split_list)
        .collect();
    let wildcard = values.iter().any(|v| v.trim() == "*");
    if wildcard {
        // §10.3 step 6: `*` only alone and only with Expires: 0.
        if values.len() != 1 || header_expires != Some(0) {
            return Err(RegisterError::BadRequest("Wildcard Contact Needs Expires 0"));
        }
        return Ok(RegisterPlan {
            aor,
            remove_all: true,
            changes: Vec::new(),
            call_id: env.call_id.clone(),
            cseq: env.cseq.seq,
        });
    }
    let mut changes = Vec::with_capacity(values.len());
    for value in values {
        let contact = NameAddr::parse(value).map_err(|_| RegisterError::BadRequest("Malformed Contact"))?;
        let expires = match contact.expires() {
            Some(e) => {
                e.parse::<u32>().map_err(|_| RegisterError::BadRequest("Malformed Contact Expires"))?
            }
            None => header_expires.unwrap_or(policy.default_expires),
        };
        if expires > 0 && expires < policy.min_expires {
            return Err(RegisterError::IntervalTooBrief { min_expires: policy.min_expires });
        }
        let instance = contact.param("+sip.instance").and_then(|p| p.unquoted()).map(|i| i.into_owned());
        changes.push(ContactChange {
            uri: contact.uri.to_string(),
            expires: expires.min(policy.max_expires),
            q_milli: q_milli(&contact)?,
            instance,
        });
    }
    Ok(RegisterPlan { aor, remove_all: false, changes, call_id: env.call_id.clone(), cseq: env.cseq.seq })
}

fn q_milli(contact: &NameAddr) -> Result<u16, RegisterError> {
    let Some(q) = contact.param("q").and_then(|p| p.value.as_deref()) else { return Ok(1000) };
    let value: f64 = q.trim().parse().map_err(|_| RegisterError::BadRequest("Malformed q"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(RegisterError::BadRequest("Malformed q"));
    }
    Ok((value * 1000.0).round() as u16)
}

/// Splits a comma-separated header value, respecting quotes and `<…>`.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_quotes, mut in_angle, mut escaped) = (0, false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// A binding as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    pub contact: String,
    pub q_milli: u16,
    pub expires_at_ms: i64,
    pub call_id: String,
    pub cseq: u32,
    /// The device's `+sip.instance`, when it sent one.
    pub instance: Option<String>,
}

/// What [`Registrar::apply`] changed, for the caller to write to its store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Contacts whose bindings went.
    pub removed: Vec<String>,
    /// Bindings added or refreshed.
    pub upserted: Vec<StoredBinding>,
}

/// Applies plans to an address of record's bindings; the caller reads and writes its store.
#[derive(Debug, Clone, Default)]
pub struct Registrar {
    pub policy: RegistrarPolicy,
}

impl Registrar {
    /// §10.3 step 7: checks Call-ID/CSeq ordering against each of `bindings` (the address of
    /// record's unexpired bindings), then changes them as `plan` asks, leaving the bindings in
    /// force afterwards (highest q first), for the 200 response. A refused plan changes nothing.
    pub fn apply(
        &self,
        bindings: &mut Vec<StoredBinding>,
        plan: &RegisterPlan,
        now_ms: i64,
    ) -> Result<Changes, RegisterError> {
        let stale = |b: &StoredBinding| b.call_id == plan.call_id && plan.cseq <= b.cseq;
        if plan.remove_all {
            if bindings.iter().any(stale) {
                return Err(RegisterError::OutOfOrder);
            }
            let removed = bindings.drain(..).map(|b| b.contact).collect();
            return Ok(Changes { removed, upserted: Vec::new() });
        }
        for change in &plan.changes {
            if bindings.iter().any(|b| b.contact == change.uri && stale(b)) {
                return Err(RegisterError::OutOfOrder);
            }
        }
        // RFC 5626 §6: a device (its +sip.instance) has one binding; a new contact replaces it.
        let replaced = |b: &StoredBinding| {
            plan.changes.iter().any(|c| {
                c.instance.is_some() && c.instance == b.instance && c.uri != b.contact && c.expires > 0
            })
        };
        let mut after: Vec<&str> =
            bindings.iter().filter(|b| !replaced(b)).map(|b| b.contact.as_str()).collect();
        for change in &plan.changes {
            after.retain(|c| *c != change.uri);
            if change.expires > 0 {
                after.push(&change.uri);
            }
        }
        // Refreshing or removing is always allowed; growing past the cap is not.
        if after.len() > self.policy.max_bindings && after.len() > bindings.len() {
            return Err(RegisterError::TooManyBindings { max: self.policy.max_bindings });
        }
        let mut changes = Changes::default();
        bindings.retain(|b| {
            let gone = replaced(b) || plan.changes.iter().any(|c| c.expires == 0 && c.uri == b.contact);
            if gone {
                changes.removed.push(b.contact.clone());
            }
            !gone
        });
        for change in &plan.changes {
            if change.expires == 0 {
                // Removing a contact that is not bound is a no-op, but the store is told:
                // it may hold the binding expired.
                if !changes.removed.contains(&change.uri) {
                    changes.removed.push(change.uri.clone());
                }
                continue;
            }
            let binding = StoredBinding {
                contact: change.uri.clone(),
                q_milli: change.q_milli,
                expires_at_ms: now_ms + i64::from(change.expires) * 1000,
                call_id: plan.call_id.clone(),
                cseq: plan.cseq,
                instance: change.instance.clone(),
            };
            bindings.retain(|b| b.contact != binding.contact);
            bindings.push(binding.clone());
            changes.upserted.push(binding);
        }
        bindings.sort_by(|a, b| b.q_milli.cmp(&a.q_milli).then_with(|| a.contact.cmp(&b.contact)));
        Ok(changes)
    }
}

/// The `200 OK` listing every binding in force with its remaining expiry (§10.3 step 8).
pub fn ok_response(
    request: &InboundRequest,
    bindings: &[StoredBinding],
    now_ms: i64,
    to_tag: &str,
    server: Option<&str>,
) -> Response {
    let mut response = response_to(request, StatusCode::OK, Some(to_tag), server);
    for b in bindings {
        let remaining = ((b.expires_at_ms - now_ms).max(0) + 999) / 1000;
        let value = if b.q_milli == 1000 {
            format!("<{}>;expires={remaining}", b.contact)
        } else {
            format!("<{}>;expires={remaining};q={}", b.contact, format_q(b.q_milli))
        };
        push_header(&mut response, Header::Contact(value.into()));
    }
    response
}

fn format_q(q_milli: u16) -> String {
    let s = format!("{}.{:03}", q_milli / 1000, q_milli % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::message::{parse, Inbound};

    fn register(contacts: &[&str], expires: Option<u32>, call_id: &str, cseq: u32) -> InboundRequest {
        let mut text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}\r\n\
             From: <sip:alice@127.0.0.1>;tag=f\r\nTo: <sip:alice@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
        );
        for c in contacts {
            text += &format!("Contact: {c}\r\n");
        }
        if let Some(e) = expires {
            text += &format!("Expires: {e}\r\n");
        }
        text += "Content-Length: 0\r\n\r\n";
        match parse(text.as_bytes()).unwrap() {
            Inbound::Request(r) => r,
            Inbound::Response(_) => unreachable!("the text is a request"),
        }
    }

    /// Bindings by address of record, as a store would keep them.
    #[derive(Default)]
    struct MemStore(BTreeMap<String, Vec<StoredBinding>>);

    impl MemStore {
        fn apply(
            &mut self,
            reg: &Registrar,
            plan: &RegisterPlan,
            now_ms: i64,
        ) -> Result<Vec<StoredBinding>, RegisterError> {
            let bindings = self.0.entry(plan.aor.clone()).or_default();
            bindings.retain(|b| b.expires_at_ms > now_ms);
            let mut after = bindings.clone();
            reg.apply(&mut after, plan, now_ms)?;
            *bindings = after.clone();
            Ok(after)
        }

        fn bindings(&self, aor: &str) -> &[StoredBinding] {
            self.0.get(aor).map_or(&[], Vec::as_slice)
        }
    }

    #[test]
    fn plan_reads_contacts_expiry_and_q() {
        let policy = RegistrarPolicy::default();
        let r = register(
            &["<sip:alice@10.0.0.1:5070>;q=0.5, <sip:alice@10.0.0.2>;expires=120"],
            Some(600),
            "c",
            1,
        );
        let p = plan(&r, &policy).unwrap();
        assert_eq!(p.aor, "alice");
        assert_eq!(
            p.changes,
            [
                ContactChange {
                    uri: "sip:alice@10.0.0.1:5070".into(),
                    expires: 600,
                    q_milli: 500,
                    instance: None
                },
                ContactChange {
                    uri: "sip:alice@10.0.0.2".into(),
                    expires: 120,
                    q_milli: 1000,
                    instance: None
                },
            ]
        );
        let long = plan(&register(&["<sip:a@h>"], Some(99999), "c", 1), &policy).unwrap();
        assert_eq!(long.changes[0].expires, 3600);
    }

    #[test]
    fn plan_refuses_what_10_3_refuses() {
        let policy = RegistrarPolicy::default();
        assert_eq!(
            plan(&register(&["<sip:a@h>"], Some(30), "c", 1), &policy),
            Err(RegisterError::IntervalTooBrief { min_expires: 60 })
        );
        assert!(matches!(plan(&register(&["*"], None, "c", 1), &policy), Err(RegisterError::BadRequest(_))));
        assert!(matches!(
            plan(&register(&["*", "<sip:a@h>"], Some(0), "c", 1), &policy),
            Err(RegisterError::BadRequest(_))
        ));
        assert!(matches!(
            plan(&register(&["<sip:a@h>;q=2"], None, "c", 1), &policy),
            Err(RegisterError::BadRequest(_))
        ));
        let response = RegisterError::IntervalTooBrief { min_expires: 60 }.response(
            &register(&[], None, "c", 1),
            "t",
            None,
        );
        let text = response.to_string();
        assert!(text.starts_with("SIP/2.0 423") && text.contains("Min-Expires: 60\r\n"), "{text}");
    }

    #[test]
    fn apply_binds_refreshes_orders_and_removes() {
        let mut store = MemStore::default();
        let reg = Registrar::default();
        let policy = RegistrarPolicy::default();
        let first = plan(
            &register(&["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>;q=0.1"], Some(600), "c1", 1),
            &policy,
        )
        .unwrap();
        let bound = store.apply(&reg, &first, 0).unwrap();
        assert_eq!(bound.len(), 2);
        let ok = ok_response(&register(&[], None, "c1", 1), &bound, 1_500, "t", None).to_string();
        assert!(ok.contains("Contact: <sip:alice@10.0.0.1>;expires=599\r\n"), "{ok}");
        assert!(ok.contains("Contact: <sip:alice@10.0.0.2>;expires=599;q=0.1\r\n"), "{ok}");

        // A replayed (same Call-ID, same CSeq) REGISTER is refused and changes nothing.
        let replay = plan(&register(&["<sip:alice@10.0.0.1>"], Some(0), "c1", 1), &policy).unwrap();
        assert_eq!(store.apply(&reg, &replay, 1), Err(RegisterError::OutOfOrder));
        // A later one removes a contact; another Call-ID may remove too.
        let remove = plan(&register(&["<sip:alice@10.0.0.1>"], Some(0), "c1", 2), &policy).unwrap();
        assert_eq!(store.apply(&reg, &remove, 2).unwrap().len(), 1);
        let all = plan(&register(&["*"], Some(0), "c2", 1), &policy).unwrap();
        assert_eq!(store.apply(&reg, &all, 3).unwrap(), []);
        assert!(store.bindings("alice").is_empty());
    }

    #[test]
    fn a_device_that_comes_back_with_a_new_contact_replaces_its_binding() {
        let mut store = MemStore::default();
        let reg = Registrar::default();
        let policy = RegistrarPolicy::default();
        let phone = |host: &str, cseq| {
            let contact = format!(r#"<sip:alice@{host}>;+sip.instance="<urn:uuid:aa-11>";reg-id=1"#);
            plan(&register(&[&contact], Some(600), &format!("boot-{host}"), cseq), &policy).unwrap()
        };
        let first = phone("10.0.0.1", 1);
        assert_eq!(first.changes[0].instance.as_deref(), Some("<urn:uuid:aa-11>"));
        store.apply(&reg, &first, 0).unwrap();
        let other = plan(&register(&["<sip:alice@10.0.0.9>"], Some(600), "desk", 1), &policy).unwrap();
        store.apply(&reg, &other, 0).unwrap();
        // Rebooted with a new address and Call-ID: the old binding goes, the desk phone stays,
        // and the store is told which row to delete.
        let mut bindings = store.bindings("alice").to_vec();
        let changes = reg.apply(&mut bindings, &phone("10.0.0.2", 1), 1).unwrap();
        assert_eq!(changes.removed, ["sip:alice@10.0.0.1"]);
        assert_eq!(
            changes.upserted.iter().map(|b| b.contact.as_str()).collect::<Vec<_>>(),
            ["sip:alice@10.0.0.2"]
        );
        let bound = store.apply(&reg, &phone("10.0.0.2", 1), 1).unwrap();
        let mut contacts: Vec<&str> = bound.iter().map(|b| b.contact.as_str()).collect();
        contacts.sort();
        assert_eq!(contacts, ["sip:alice@10.0.0.2", "sip:alice@10.0.0.9"]);
    }

    #[test]
    fn an_address_of_record_holds_at_most_max_bindings() {
        let mut store = MemStore::default();
        let reg = Registrar { policy: RegistrarPolicy { max_bindings: 2, ..RegistrarPolicy::default() } };
        let policy = reg.policy;
        let add = |host: &str| {
            plan(&register(&[&format!("<sip:alice@{host}>")], Some(600), host, 1), &policy).unwrap()
        };
        store.apply(&reg, &add("10.0.0.1"), 0).unwrap();
        store.apply(&reg, &add("10.0.0.2"), 0).unwrap();
        assert_eq!(store.apply(&reg, &add("10.0.0.3"), 0), Err(RegisterError::TooManyBindings { max: 2 }));
        assert_eq!(store.bindings("alice").len(), 2, "nothing was written");
        // A refresh of a bound contact is still taken.
        let refresh = plan(&register(&["<sip:alice@10.0.0.1>"], Some(600), "10.0.0.1", 2), &policy).unwrap();
        assert_eq!(store.apply(&reg, &refresh, 1).unwrap().len(), 2);
        let text = RegisterError::TooManyBindings { max: 2 }
            .response(&register(&[], None, "c", 1), "t", None)
            .to_string();
        assert!(text.starts_with("SIP/2.0 403 Too Many Contacts"), "{text}");
    }

    #[test]
    fn list_splitting_respects_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""Doe, John" <sip:j@h;a=1,2>;q=1, <sip:k@h>"#),
            [r#""Doe, John" <sip:j@h;a=1,2>;q=1"#, "<sip:k@h>"]
        );
        assert_eq!(split_list(" * "), ["*"]);
    }
}

//! REGISTER from desk phones: digest authentication against the stored HA1 (RFC 3261 §22),
//! then the registrar (§10.3) on the database, both in batches.

use std::collections::HashMap;

use rsip::prelude::*;
use rsip::StatusCode;
use sip_stack::digest::DigestResponse;
use sip_stack::message::InboundRequest;
use sip_stack::registrar::{self, RegisterError, RegisterPlan, Registrar, RegistrarPolicy, StoredBinding};
use sip_stack::response::response_to;
use sip_stack::transaction::ServerTx;
use sip_stack::transport::{Peer, Transport};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::auth::{self, Context};
use super::new_tag;
use crate::storage::{Binding, BindingWrites, SipUser, Storage};

/// Where REGISTERs' answers go: to the transaction each arrived on.
pub type Answers = mpsc::UnboundedSender<(ServerTx, rsip::Response)>;

/// A REGISTER with credentials, from the core, and its place against `[limits]
/// pending_requests` until it is answered.
pub struct Submitted {
    pub tx: ServerTx,
    pub request: InboundRequest,
    pub from: Peer,
    pub permit: OwnedSemaphorePermit,
}

/// Most REGISTERs one batch carries, through each stage.
const BATCH: usize = 512;

/// The registrar, in two stages with a task each and no task per REGISTER. The first takes
/// every REGISTER that is waiting, looks up all their accounts in one query and checks each
/// one's digest. The second takes every REGISTER whose credentials passed, and in one
/// transaction reads their users' bindings, applies each in arrival order (two REGISTERs of
/// one user in one batch see each other's changes, so the binding cap holds), writes the
/// changes, and commits. Each REGISTER is answered after the commit: a `200` means its binding
/// is in the database. While one batch is in the database the next gathers, so a lone
/// REGISTER goes at once and a burst costs two round trips per batch.
pub struct Registrations {
    submitted: mpsc::UnboundedSender<Submitted>,
}

/// A REGISTER whose credentials passed, for the second stage.
struct Job {
    submitted: Submitted,
    asked: Asked,
}

/// What a REGISTER asks of the registrar, and where it came from.
struct Asked {
    plan: RegisterPlan,
    source: String,
    user_agent: Option<String>,
}

impl Registrations {
    /// Starts both stages' tasks; they end when this is dropped. The queues are bounded by the
    /// permits each REGISTER holds.
    pub fn start(ctx: Context, answers: Answers) -> Registrations {
        let limits = &ctx.shared.config.limits;
        let registrar = Registrar {
            policy: RegistrarPolicy { max_bindings: limits.bindings_per_user, ..RegistrarPolicy::default() },
        };
        let (submitted, rx) = mpsc::unbounded_channel();
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        tokio::spawn(write(ctx.clone(), registrar.clone(), jobs_rx, answers.clone()));
        tokio::spawn(authenticate(ctx, registrar, rx, jobs, answers));
        Registrations { submitted }
    }

    pub fn submit(&self, submitted: Submitted) {
        // The tasks only end once this handle is dropped.
        let _ = self.submitted.send(submitted);
    }
}

fn answer(answers: &Answers, submitted: Submitted, response: rsip::Response) {
    // The core only goes away at shutdown, when the answer no longer matters; the permit goes
    // with the request.
    let _ = answers.send((submitted.tx, response));
}

/// The first stage: credentials, accounts, digests, and what each REGISTER asks for.
async fn authenticate(
    ctx: Context,
    registrar: Registrar,
    mut rx: mpsc::UnboundedReceiver<Submitted>,
    jobs: mpsc::UnboundedSender<Job>,
    answers: Answers,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut checked: Vec<(Submitted, DigestResponse)> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for submitted in batch.drain(..) {
            match auth::credentials(&ctx, &submitted.request, submitted.from) {
                Ok(credentials) => checked.push((submitted, credentials)),
                Err(response) => answer(&answers, submitted, response),
            }
        }
        let mut names: Vec<&str> = checked.iter().map(|(_, c)| c.username.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let users = ctx.shared.storage.users_named(&names).await.map(|users| {
            users.into_iter().map(|u| (u.username.clone(), u)).collect::<HashMap<String, SipUser>>()
        });
        let users = users.map_err(std::sync::Arc::new);
        for (submitted, credentials) in checked.drain(..) {
            let user = users.as_ref().map(|u| u.get(&credentials.username).cloned()).map_err(Clone::clone);
            let user = match auth::verify(&ctx, &submitted.request, submitted.from, &credentials, user) {
                Ok(user) => user,
                Err(response) => {
                    answer(&answers, submitted, response);
                    continue;
                }
            };
            let plan = match registrar::plan(&submitted.request, &registrar.policy) {
                Ok(plan) => plan,
                Err(e) => {
                    let response = e.response(&submitted.request, &new_tag(), ctx.server());
                    answer(&answers, submitted, response);
                    continue;
                }
            };
            // §10.3 step 3: a phone registers its own account only.
            if plan.aor != user.username {
                tracing::info!(username = %user.username, aor = %plan.aor, "REGISTER for another user's AOR");
                let response =
                    response_to(&submitted.request, StatusCode::Forbidden, Some(&new_tag()), ctx.server());
                answer(&answers, submitted, response);
                continue;
            }
            let user_agent = submitted.request.request.user_agent_header().map(|h| h.value().to_string());
            let asked = Asked { plan, source: source(submitted.from), user_agent };
            // The second stage ends only after this one.
            let _ = jobs.send(Job { submitted, asked });
        }
    }
}

/// Where requests to a phone's contact go: the address its REGISTER came from (symmetric
/// signalling for phones behind NAT).
fn source(from: Peer) -> String {
    let transport = match from.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    };
    format!("{transport}:{}", from.addr)
}

/// The second stage: the bindings, one transaction per batch.
#[allow(clippy::disallowed_methods)] // the registrar's task, outside the core: it stamps each batch
async fn write(ctx: Context, registrar: Registrar, mut rx: mpsc::UnboundedReceiver<Job>, answers: Answers) {
    let storage: &Storage = &ctx.shared.storage;
    let mut jobs = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        let now_ms = crate::clock::unix_ms();
        let mut users: Vec<&str> = jobs.iter().map(|j| j.asked.plan.aor.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let asked: Vec<&Asked> = jobs.iter().map(|j| &j.asked).collect();
        let outcome = storage
            .update_bindings(&users, now_ms, |current| decide(&registrar, &asked, current, now_ms))
            .await;
        drop(asked);
        let results = match outcome {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, registers = jobs.len(), "bindings not written");
                jobs.iter().map(|_| Err(RegisterError::Store(e.to_string()))).collect()
            }
        };
        // Read after the write, so no expiry shows longer than was granted.
        let now_ms = crate::clock::unix_ms();
        for (Job { submitted, asked }, result) in jobs.drain(..).zip(results) {
            let plan = asked.plan;
            let tag = new_tag();
            let response = match result {
                Ok(bindings) => {
                    tracing::info!(user = %plan.aor, contacts = bindings.len(), src = %submitted.from.addr, "registered");
                    registrar::ok_response(&submitted.request, &bindings, now_ms, &tag, ctx.server())
                }
                Err(e) => {
                    tracing::warn!(user = %plan.aor, error = %e, "REGISTER failed");
                    e.response(&submitted.request, &tag, ctx.server())
                }
            };
            answer(&answers, submitted, response);
        }
    }
}

/// Applies each job in turn to its user's bindings: what to write, and each job's result.
fn decide(
    registrar: &Registrar,
    jobs: &[&Asked],
    current: HashMap<String, Vec<Binding>>,
    now_ms: i64,
) -> (BindingWrites, Vec<Result<Vec<StoredBinding>, RegisterError>>) {
    let mut current: HashMap<String, Vec<StoredBinding>> =
        current.into_iter().map(|(user, rows)| (user, rows.iter().map(stored).collect())).collect();
    let mut writes = BindingWrites::new();
    let results = jobs
        .iter()
        .map(|job| {
            let aor = &job.plan.aor;
            // A refused plan leaves the bindings as they were for the next job.
            let bindings = current.entry(aor.clone()).or_default();
            let changes = registrar.apply(bindings, &job.plan, now_ms)?;
            for contact in changes.removed {
                writes.insert((aor.clone(), contact), None);
            }
            for b in changes.upserted {
                let row = Binding {
                    username: aor.clone(),
                    contact: b.contact,
                    q_milli: b.q_milli,
                    expires_at_ms: b.expires_at_ms,
                    call_id: b.call_id,
                    cseq: b.cseq,
                    source: job.source.clone(),
                    user_agent: job.user_agent.clone(),
                    instance: b.instance,
                };
                writes.insert((aor.clone(), row.contact.clone()), Some(row));
            }
            Ok(bindings.clone())
        })
        .collect();
    (writes, results)
}

fn stored(b: &Binding) -> StoredBinding {
    StoredBinding {
        contact: b.contact.clone(),
        q_milli: b.q_milli,
        expires_at_ms: b.expires_at_ms,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        instance: b.instance.clone(),
    }
}

#[cfg(test)]
mod tests {
    use sip_stack::registrar::ContactChange;

    use super::*;

    fn job(aor: &str, contact: &str, expires: u32, cseq: u32) -> Asked {
        let change = ContactChange { uri: contact.into(), expires, q_milli: 1000, instance: None };
        let plan = RegisterPlan {
            aor: aor.into(),
            remove_all: false,
            changes: vec![change],
            call_id: format!("{aor}-{contact}"),
            cseq,
        };
        Asked { plan, source: "udp:127.0.0.1:5070".into(), user_agent: None }
    }

    #[test]
    fn registers_of_one_user_in_one_batch_see_each_other() {
        let registrar =
            Registrar { policy: RegistrarPolicy { max_bindings: 1, ..RegistrarPolicy::default() } };
        let jobs = [
            job("alice", "sip:alice@10.0.0.1", 600, 1),
            // The cap counts the binding the first job made in this same batch.
            job("alice", "sip:alice@10.0.0.2", 600, 1),
            job("bob", "sip:bob@10.0.0.3", 600, 1),
            // A retransmission-like replay of the first is out of order after it.
            job("alice", "sip:alice@10.0.0.1", 600, 1),
            // And a later CSeq of it removes it.
            job("alice", "sip:alice@10.0.0.1", 0, 2),
        ];
        let (writes, results) = decide(&registrar, &jobs.iter().collect::<Vec<_>>(), HashMap::new(), 0);
        assert_eq!(results[0].as_ref().map(Vec::len), Ok(1));
        assert_eq!(results[1], Err(RegisterError::TooManyBindings { max: 1 }));
        assert_eq!(results[2].as_ref().map(Vec::len), Ok(1));
        assert_eq!(results[3], Err(RegisterError::OutOfOrder));
        assert_eq!(results[4].as_ref().map(Vec::len), Ok(0));
        // One write per binding touched: alice's removed, bob's added with where it came from.
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[&("alice".to_string(), "sip:alice@10.0.0.1".to_string())], None);
        let bob = writes[&("bob".to_string(), "sip:bob@10.0.0.3".to_string())].as_ref().unwrap();
        assert_eq!((bob.source.as_str(), bob.expires_at_ms), ("udp:127.0.0.1:5070", 600_000));
    }

    #[test]
    fn a_batch_starts_from_the_stored_bindings() {
        let registrar = Registrar::default();
        let stored = Binding {
            username: "alice".into(),
            contact: "sip:alice@10.0.0.1".into(),
            q_milli: 1000,
            expires_at_ms: 60_000,
            call_id: "alice-sip:alice@10.0.0.1".into(),
            cseq: 5,
            source: "udp:127.0.0.1:5070".into(),
            user_agent: None,
            instance: None,
        };
        let current = HashMap::from([("alice".to_string(), vec![stored])]);
        let jobs = [job("alice", "sip:alice@10.0.0.1", 600, 5), job("alice", "sip:alice@10.0.0.9", 600, 1)];
        let (writes, results) = decide(&registrar, &jobs.iter().collect::<Vec<_>>(), current, 0);
        assert_eq!(results[0], Err(RegisterError::OutOfOrder), "CSeq 5 is not newer than the stored 5");
        let after: Vec<String> = results[1].as_ref().unwrap().iter().map(|b| b.contact.clone()).collect();
        assert_eq!(after, ["sip:alice@10.0.0.1", "sip:alice@10.0.0.9"]);
        assert_eq!(writes.len(), 1);
    }
}

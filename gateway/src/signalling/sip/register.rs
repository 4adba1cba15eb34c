//! REGISTER from desk phones: digest authentication against the stored HA1 (RFC 3261 §22),
//! then the registrar (§10.3) on the database.

use std::collections::HashMap;

use rsip::prelude::*;
use rsip::StatusCode;
use sip_stack::message::InboundRequest;
use sip_stack::registrar::{self, RegisterError, RegisterPlan, Registrar, RegistrarPolicy, StoredBinding};
use sip_stack::response::response_to;
use sip_stack::transport::{Peer, Transport};
use tokio::sync::{mpsc, oneshot};

use super::auth::{authenticate, Context};
use super::new_tag;
use crate::storage::{Binding, BindingWrites, Storage};

/// The response to a REGISTER from `from`.
#[allow(clippy::disallowed_methods)] // a look-up task, outside the core
pub async fn handle(ctx: &Context, request: &InboundRequest, from: Peer) -> rsip::Response {
    let tag = new_tag();
    let reply = |status: StatusCode| response_to(request, status, Some(&tag), ctx.server());

    let user = match authenticate(ctx, request, from).await {
        Ok(user) => user,
        Err(response) => return response,
    };

    let plan = match registrar::plan(request, &ctx.registrations.policy) {
        Ok(plan) => plan,
        Err(e) => return e.response(request, &tag, ctx.server()),
    };
    // §10.3 step 3: a phone registers its own account only.
    if plan.aor != user.username {
        tracing::info!(username = %user.username, aor = %plan.aor, "REGISTER for another user's AOR");
        return reply(StatusCode::Forbidden);
    }
    let user_agent = request.request.user_agent_header().map(|h| h.value().to_string());
    match ctx.registrations.apply(plan.clone(), source(from), user_agent).await {
        Ok(bindings) => {
            // Read after the write, so no expiry shows longer than was granted.
            let now_ms = crate::clock::unix_ms();
            tracing::info!(user = %plan.aor, contacts = bindings.len(), src = %from.addr, "registered");
            registrar::ok_response(request, &bindings, now_ms, &tag, ctx.server())
        }
        Err(e) => {
            tracing::warn!(user = %plan.aor, error = %e, "REGISTER failed");
            e.response(request, &tag, ctx.server())
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

/// Most REGISTERs one database transaction carries.
const BATCH: usize = 512;

/// The registrar on the database. REGISTERs whose credentials passed queue here; one task
/// takes all that are waiting, reads their users' bindings, applies each in arrival order
/// (two REGISTERs of one user in one batch see each other's changes, so the binding cap
/// holds), writes the changes, and commits, all in one transaction. Each REGISTER is
/// answered after the commit: a `200` means its binding is in the database.
#[derive(Clone)]
pub struct Registrations {
    pub policy: RegistrarPolicy,
    jobs: mpsc::Sender<Job>,
}

struct Job {
    plan: RegisterPlan,
    source: String,
    user_agent: Option<String>,
    done: oneshot::Sender<Result<Vec<StoredBinding>, RegisterError>>,
}

impl Registrations {
    /// Starts the registrar's task; it ends when the last handle is dropped.
    pub fn start(storage: Storage, policy: RegistrarPolicy) -> Registrations {
        let (jobs, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(run(storage, Registrar { policy }, rx));
        Registrations { policy, jobs }
    }

    /// Applies `plan` and returns the bindings in force after it, once written.
    async fn apply(
        &self,
        plan: RegisterPlan,
        source: String,
        user_agent: Option<String>,
    ) -> Result<Vec<StoredBinding>, RegisterError> {
        let (done, answer) = oneshot::channel();
        let stopped = || RegisterError::Store("registrar stopped".into());
        self.jobs.send(Job { plan, source, user_agent, done }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

#[allow(clippy::disallowed_methods)] // the registrar's task, outside the core: it stamps each batch
async fn run(storage: Storage, registrar: Registrar, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        let now_ms = crate::clock::unix_ms();
        let mut users: Vec<&str> = jobs.iter().map(|j| j.plan.aor.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let outcome = storage
            .update_bindings(&users, now_ms, |current| decide(&registrar, &jobs, current, now_ms))
            .await;
        match outcome {
            Ok(results) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    let _ = job.done.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, registers = jobs.len(), "bindings not written");
                for job in jobs.drain(..) {
                    let _ = job.done.send(Err(RegisterError::Store(e.to_string())));
                }
            }
        }
    }
}

/// Applies each job in turn to its user's bindings: what to write, and each job's result.
fn decide(
    registrar: &Registrar,
    jobs: &[Job],
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

    fn job(aor: &str, contact: &str, expires: u32, cseq: u32) -> Job {
        let change = ContactChange { uri: contact.into(), expires, q_milli: 1000, instance: None };
        let plan = RegisterPlan {
            aor: aor.into(),
            remove_all: false,
            changes: vec![change],
            call_id: format!("{aor}-{contact}"),
            cseq,
        };
        Job { plan, source: "udp:127.0.0.1:5070".into(), user_agent: None, done: oneshot::channel().0 }
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
        let (writes, results) = decide(&registrar, &jobs, HashMap::new(), 0);
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
        let (writes, results) = decide(&registrar, &jobs, current, 0);
        assert_eq!(results[0], Err(RegisterError::OutOfOrder), "CSeq 5 is not newer than the stored 5");
        let after: Vec<String> = results[1].as_ref().unwrap().iter().map(|b| b.contact.clone()).collect();
        assert_eq!(after, ["sip:alice@10.0.0.1", "sip:alice@10.0.0.9"]);
        assert_eq!(writes.len(), 1);
    }
}
